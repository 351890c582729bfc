"""Shared starts: both tasks of a same-scene pair start from one state that looks the same (headless MuJoCo)."""
from __future__ import annotations

import numpy as np
import pytest

mw = pytest.importorskip("deer_vla.sim.metaworld_env")

from deer_vla.sim.tasks import SHARED_TASKS, get_task, shared_partner  # noqa: E402

PAIRS = [("drawer-open-shared", "drawer-close-shared"), ("window-open-shared", "window-close-shared"),
         ("faucet-open-shared", "faucet-close-shared")]


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p[0].split("-")[0])
def test_both_instructions_see_the_same_first_frame(pair: tuple[str, str]) -> None:
    a, b = (mw.MetaWorldAdapter(t, image_size=64) for t in pair)
    orig = [mw.MetaWorldAdapter(t.removesuffix("-shared"), image_size=64) for t in pair]
    try:
        for seed in (3, 11):
            oa, ob = a.reset(seed=seed), b.reset(seed=seed)
            for cam in ("static", "wrist"):
                assert np.array_equal(oa.images[cam], ob.images[cam]), f"{pair} seed {seed}: {cam} frames differ"
            np.testing.assert_array_equal(oa.proprio, ob.proprio)
            assert oa.instruction != ob.instruction  # only the instruction tells the two apart
            # ...whereas Meta-World's own pair starts from visibly different states
            first = [o.reset(seed=seed).images["static"].astype(int) for o in orig]
            assert np.abs(first[0] - first[1]).max() > 30
        assert not np.array_equal(a.reset(seed=3).images["static"], a.reset(seed=11).images["static"])
    finally:
        for x in (a, b, *orig):
            x.close()


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p[0].split("-")[0])
def test_shared_start_is_neither_task_done_and_between_the_original_starts(pair: tuple[str, str]) -> None:
    start = mw.shared_start_for(get_task(pair[0]))
    assert start is not None and start is mw.shared_start_for(get_task(pair[1]))
    originals = []
    for env_name in start.tasks:  # Meta-World's own start value of the pair's joint, (open task, close task)
        with mw.MetaWorldAdapter(env_name.removesuffix("-v3"), cameras=()) as orig:
            orig.reset(seed=0)
            originals.append(float(orig._env.data.joint(start.joint).qpos[0]))
    lo, hi = sorted(originals)
    if lo != hi:  # drawer, window: strictly between closed and open
        assert lo + 0.03 < start.qpos < hi - 0.03
    else:  # faucet: both originals start centred; the shared start keeps it and unifies the placement
        assert start.qpos == lo == 0.0
    for name in pair:
        with mw.MetaWorldAdapter(name, cameras=(), track_partner=True) as adapter:
            adapter.reset(seed=0)
            assert adapter._env.data.joint(start.joint).qpos[0] == pytest.approx(start.qpos)
            result = adapter.step(np.zeros(4))  # standing still completes neither task
            assert not result.success and not result.info["partner_success"]
            assert adapter.partner_env == shared_partner(name).env_name


@pytest.mark.parametrize("task", list(SHARED_TASKS))
def test_scripted_expert_succeeds_from_the_shared_start(task: str) -> None:
    from deer_vla.data.collect import rollout_episode

    with mw.MetaWorldAdapter(task, cameras=()) as adapter:
        for seed in (0, 1):
            ep = rollout_episode(adapter, seed, 0.1)  # the collector's own rollout, action noise 0.1
            assert ep.success, f"{task} seed {seed}: expert failed after {ep.length} steps"
            assert ep.length < adapter.max_steps


def test_other_experts_complete_the_partner_task_not_their_own() -> None:
    # The drawer-close expert, run under drawer-open-shared, closes the drawer: a partner completion, no success.
    with mw.MetaWorldAdapter("drawer-open-shared", cameras=(), track_partner=True) as adapter:
        adapter.reset(seed=2)
        result = None
        for _ in range(60):
            result = adapter.step(adapter.partner_expert_action())
            if result.done:
                break
        assert result is not None and result.info["partner_success"] and not result.success


def test_track_partner_needs_a_shared_task() -> None:
    with pytest.raises(ValueError, match="track_partner needs a shared-start task"):
        mw.MetaWorldAdapter("drawer-open", cameras=(), track_partner=True)
