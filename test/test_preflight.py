"""What the policy node would refuse at configure, checked before ROS starts (deer_vla/ros/preflight.py)."""
from __future__ import annotations

import pytest

from deer_vla.ros import preflight
from deer_vla.ros.graph import load_graph
from deer_vla.ros.preflight import PreflightError, check_policy_before_ros


def _robot(**policy):
    return load_graph("robot", None, {"policy": policy})


def test_the_shipped_settings_pass_and_a_budget_the_model_cannot_meet_does_not() -> None:
    check_policy_before_ros(_robot())
    check_policy_before_ros(load_graph("sim", None, {}))
    with pytest.raises(PreflightError, match="smallest feasible average budget"):
        check_policy_before_ros(_robot(**{"budget.average_gflops": 1e-4}))
    with pytest.raises(PreflightError, match="smallest feasible peak budget"):
        check_policy_before_ros(_robot(**{"budget.peak_gflops": 1e-4}))


def test_a_device_this_machine_lacks_is_said_before_ros_starts() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(PreflightError, match="parameter 'device'"):
        check_policy_before_ros(_robot(device="cuda"))


def test_a_misspelt_parameter_is_refused_as_configure_refuses_it() -> None:
    with pytest.raises(PreflightError, match="unknown parameter.*'budget.averge_gflops'.*did you mean"):
        check_policy_before_ros(_robot(**{"budget.averge_gflops": 0.05}))
    check_policy_before_ros(_robot(use_sim_time=True, **{"qos_overrides./cmd_twist.publisher.depth": 5}))


def test_a_time_budget_is_left_to_the_node_which_times_the_steps_on_its_own_device() -> None:
    check_policy_before_ros(_robot(**{"budget.peak_ms": 1e-3, "budget.deadline_ms": 1e-3}))


def test_parameters_given_after_ros_args_leave_the_rest_to_the_node(tmp_path) -> None:
    """-p of a parameter no file sets reaches the node and is not seen here: no verdict on what it may change."""
    graph = _robot(thresholds_file=str(tmp_path / "none.json"))
    with pytest.raises(PreflightError, match="thresholds file not found"):
        check_policy_before_ros(graph)
    check_policy_before_ros(graph, ["--ros-args", "-p", "deer_vla_policy:fixed_exit:=3"])


def test_a_large_model_is_not_loaded_twice_but_its_thresholds_file_is_checked(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(preflight, "MAX_PREFLIGHT_WEIGHTS_BYTES", 0)
    import deer_vla.ros.policy_backend as backend

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(backend, "load_stack", never)
    check_policy_before_ros(_robot(**{"budget.average_gflops": 1e-4}))  # the node judges it at configure
    with pytest.raises(PreflightError, match="thresholds file not found"):
        check_policy_before_ros(_robot(thresholds_file=str(tmp_path / "none.json")))
