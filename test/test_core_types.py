"""Shared types: action layout conversions, cost profile and step record round trips."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from deer_vla.core import ActionSpec, CostProfile, LatencyStats, Observation, StepRecord


def test_action_spec_layout_and_clip():
    spec = ActionSpec(axes=("x", "y", "z"), low=(-1, -1, -0.5), high=(1, 1, 0.5))
    assert spec.dim == 4
    clipped = spec.clip(np.array([2.0, -3.0, 0.9, 5.0]))
    np.testing.assert_allclose(clipped, [1.0, -1.0, 0.5, 1.0])
    full = spec.to_standard7(np.array([0.1, 0.2, 0.3, -1.0]))
    np.testing.assert_allclose(full, [0.1, 0.2, 0.3, 0, 0, 0, -1.0])
    np.testing.assert_allclose(spec.from_standard7(full), [0.1, 0.2, 0.3, -1.0])
    np.testing.assert_allclose(spec.to_metric(np.array([1.0, 0.0, -1.0, 1.0])), [0.01, 0.0, -0.01])
    assert ActionSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"axes": ("x", "q")}, "subset"),
        ({"axes": ("x",), "low": (1.0,), "high": (0.0,)}, "below high"),
        ({"axes": ("x", "y"), "scale": (0.1,)}, "1 values for 2 axes"),
        ({"axes": ("x",), "scale": (-1.0,)}, "positive"),
    ],
)
def test_action_spec_rejects_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ActionSpec(**kwargs)


def test_action_spec_rejects_nan_and_wrong_length():
    spec = ActionSpec()
    with pytest.raises(ValueError, match="NaN"):
        spec.clip(np.array([np.nan] * 7))
    with pytest.raises(ValueError, match="needs 7"):
        spec.clip(np.zeros(4))


def _profile() -> CostProfile:
    lat = [LatencyStats(1.0, 2.0, 3.0, 10) for _ in range(3)]
    return CostProfile(
        llm_gflops=[1.0, 2.0, 3.0],
        total_gflops=[1.5, 2.5, 3.5],
        params=[10, 20, 30],
        weight_bytes=[40, 80, 120],
        segment_latency=lat,
        encode_latency=LatencyStats(0.5, 0.6, 0.7, 10),
        head_latency=LatencyStats(0.1, 0.1, 0.1, 10),
    )


def test_cost_profile_round_trip_and_worst_case(tmp_path):
    profile = _profile()
    path = tmp_path / "profile.json"
    profile.save(path)
    loaded = CostProfile.load(path)
    assert loaded == profile
    assert loaded.cost(2) == 2.0 and loaded.cost(3, "total_gflops") == 3.5
    # encode p99 0.7 + 2 x (segment p99 3.0 + head 0.1)
    assert loaded.worst_case_ms(2) == pytest.approx(0.7 + 2 * 3.1)
    assert loaded.truncated(2).num_exits == 2
    with pytest.raises(IndexError):
        loaded.cost(4)


def test_cost_profile_validation():
    with pytest.raises(ValueError, match="non-decreasing"):
        CostProfile(llm_gflops=[2.0, 1.0], total_gflops=[2, 3], params=[1, 2], weight_bytes=[1, 2])
    with pytest.raises(ValueError, match="entries"):
        CostProfile(llm_gflops=[1.0], total_gflops=[1.0, 2.0], params=[1], weight_bytes=[1])
    with pytest.raises(FileNotFoundError, match="not found"):
        CostProfile.load("/nonexistent/profile.json")


def test_step_record_json_round_trip():
    rec = StepRecord(step=3, episode=1, exit_used=2, max_exit=4, stop_reason="threshold", llm_gflops=0.5,
                     total_gflops=0.7, segment_ms=[1.0, 1.1], distances=[0.01], thresholds=[0.02, 0.03])
    assert StepRecord.from_json(rec.to_json()) == rec
    with pytest.raises(ValueError, match="unknown keys"):
        StepRecord.from_json('{"step": 1, "bogus": 2}')
    with pytest.raises(ValueError, match="stop_reason 'tired'"):
        StepRecord.from_json(rec.to_json().replace('"threshold"', '"tired"'))



@pytest.mark.parametrize(("change", "match"), [
    ({"llm_gflops": float("nan")}, "'llm_gflops' nan"),
    ({"total_ms": float("inf")}, "'total_ms' inf"),
    ({"total_gflops": "1.0"}, "'total_gflops' '1.0'"),
    ({"exit_used": "abc"}, "'exit_used' 'abc'"),
    ({"exit_used": 1.5}, "'exit_used' 1.5"),
    ({"exit_used": 0}, "'exit_used' 0"),
    ({"exit_used": True}, "'exit_used' True"),
    ({"exit_used": 3, "max_exit": 2}, "above 'max_exit'"),
    ({"max_exit": 10**9}, "1..1024"),
    ({"step": -1}, "'step' -1"),
    ({"stamp_ns": -5}, "'stamp_ns' -5"),
    ({"stamp_ns": 2**70}, "'stamp_ns'"),
    ({"budget_average_gflops": "x"}, "'budget_average_gflops'"),
    ({"obs_age_ms": [1]}, "'obs_age_ms'"),
    ({"distances": ["x"]}, "'distances'"),
    ({"action": 7}, "'action'"),
    ({"risk_eps": 0.1}, "'risk_delta' None"),
    ({"risk_eps": 0.1, "risk_delta": 0.05, "risk_metric": "max"}, "'risk_metric'"),
    ({"risk_eps": 0.1, "risk_delta": 0.05, "risk_metric": "exceed"}, "'risk_tau' None"),  # a reader prints tau
    # JSON integers are unbounded; float() of these raises OverflowError, which a reader's handler misses
    ({"step": 10**400}, "'step'"),
    ({"episode": 2**63}, "'episode'"),
    ({"llm_gflops": 10**400}, "'llm_gflops'"),
    ({"obs_age_ms": 10**400}, "'obs_age_ms'"),
    ({"budget_average_gflops": -(10**400)}, "'budget_average_gflops'"),
    ({"risk_eps": 0.1, "risk_delta": 0.05, "risk_metric": "exceed", "risk_tau": 10**400}, "'risk_tau'"),
    ({"action": [0.1, 10**400]}, "'action'"),
    # checked without risk_eps too: a 500-deep list here passed, and writing the record back (asdict) overflowed
    # the stack, which killed the monitor and the demo around it
    ({"risk_metric": [[[]]]}, "'risk_metric'"),
    ({"risk_delta": {"a": 1}}, "'risk_delta'"),
    ({"obs_age_ms": float("inf")}, "'obs_age_ms' inf"),  # JSON has no Infinity: the log line would not be JSON
    # the lists too (an audit's forged records put NaN/Infinity in 80 of 1808 steps.jsonl lines): times and
    # actions finite, times >= 0; scores and eta_k may be +inf but never NaN, scores never negative
    ({"segment_ms": [1.0, float("nan")]}, "'segment_ms' [1.0, nan] (must be a list of numbers in 0..1e+09)"),
    ({"segment_ms": [float("inf"), -1e308]}, "'segment_ms'"),
    ({"segment_ms": [-0.5]}, "'segment_ms' [-0.5]"),
    ({"action": [0.1, float("nan")]}, "'action' [0.1, nan] (must be a list of numbers in -1e+09..1e+09)"),
    ({"action": [float("-inf")]}, "'action'"),
    # finite but beyond any robot's: two of 1e308 made the monitor's running mean inf for the rest of the run
    ({"llm_gflops": 1e308}, "'llm_gflops' 1e+308 (must be a number in 0..1e+09)"),
    ({"total_ms": 2e9}, "'total_ms'"),
    ({"obs_age_ms": 1e300}, "'obs_age_ms'"),
    ({"segment_ms": [1e308]}, "'segment_ms'"),
    ({"action": [-1e12]}, "'action'"),
    ({"distances": [float("nan")]}, "'distances' [nan]"),
    ({"distances": [-1.0]}, "'distances' [-1.0]"),
    ({"thresholds": [float("nan")]}, "'thresholds' [nan]"),
])
def test_step_record_from_json_refuses_what_a_reader_cannot_aggregate(change, match):
    """A monitor sums, plots and writes these: NaN, strings or out-of-range ints must not get in."""
    good = {"step": 3, "episode": 1, "exit_used": 2, "max_exit": 4, "stop_reason": "threshold",
            "llm_gflops": 0.5, "total_gflops": 0.7, "distances": [float("inf")], "thresholds": [float("inf")]}
    assert StepRecord.from_json(json.dumps(good)).distances == [float("inf")]  # scores and eta_k may be inf
    with pytest.raises(ValueError, match=re.escape(match)):
        StepRecord.from_json(json.dumps({**good, **change}))


def test_step_record_from_json_refuses_missing_fields_and_deep_nesting():
    with pytest.raises(ValueError, match=r"missing \['step'\]"):
        StepRecord.from_json('{"episode": 0, "exit_used": 1, "max_exit": 1, "stop_reason": "fixed", '
                             '"llm_gflops": 1, "total_gflops": 1}')
    with pytest.raises(ValueError, match="step record: JSON nested too deeply"):
        StepRecord.from_json("[" * 100_000)
    good = {"step": 3, "episode": 1, "exit_used": 2, "max_exit": 4, "stop_reason": "threshold",
            "llm_gflops": 0.5, "total_gflops": 0.7}
    deep = json.dumps({**good, "risk_metric": None})[:-1] + ', "segment_ms": ' + "[" * 600 + "]" * 600 + "}"
    with pytest.raises(ValueError, match="'segment_ms'"):  # a list of lists is no list of numbers, at any depth
        StepRecord.from_json(deep)

def test_observation_validation():
    img = np.zeros((32, 32, 3), np.uint8)
    Observation({"static": img}, "open the drawer").validate(("static",))
    with pytest.raises(ValueError, match="lacks camera"):
        Observation({"static": img}, "x").validate(("static", "wrist"))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        Observation({"static": img.astype(np.float32)}, "x").validate(("static",))
    with pytest.raises(ValueError, match="empty instruction"):
        Observation({"static": img}, "  ").validate(("static",))
