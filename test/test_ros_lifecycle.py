"""Policy node against hostile parameter changes and every lifecycle path (real rclpy, tiny checkpoint).

A parameter callback or a transition that raises ends the executor's spin (the process dies); one that
half-applies leaves the node in a state nobody asked for. These tests drive the node the way `ros2 param
set` and `ros2 lifecycle set` do and check what is left afterwards.
"""
from __future__ import annotations

import math

import pytest
from fixtures import Driver

pytestmark = pytest.mark.ros


def _policy(executor, checkpoint, **params):
    from rclpy.parameter import Parameter

    from deer_vla.ros.policy_node import PolicyNode

    overrides = {"checkpoint_dir": str(checkpoint), **params}
    node = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    executor.add_node(node)
    return node


HOSTILE = [True, -1, 2**62, math.nan, -math.inf, "", "x" * 300, "1.5", ["a"], ["a", "a"], [1, 2], [1.5]]


def test_hostile_parameter_values_are_refused_with_a_reason_and_change_nothing(executor, tiny_checkpoint):
    """`ros2 param set` with wrong types, non-finite, huge or absurd values, unconfigured and active."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    from deer_vla.ros.params import POLICY_DEFAULTS

    node = _policy(executor, tiny_checkpoint)
    for state in ("unconfigured", "active"):
        if state == "active":
            assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
        for name in POLICY_DEFAULTS:
            for value in HOSTILE:
                before = node.get_parameter(name).value
                result = node.set_parameters([Parameter(name, value=value)])[0]  # must not raise
                if result.successful:
                    node.set_parameters([Parameter(name, value=before)])
                    continue
                assert result.reason, (state, name, value)
                after = node.get_parameter(name).value
                assert type(after) is type(before) and (after == before or after != after), (state, name, value)
    assert node.active and node.stack is not None  # still running


def test_a_parameter_check_that_raises_refuses_the_change(executor, tiny_checkpoint, monkeypatch):
    """An unexpected exception in the check is a refusal with its reason, not an exception out of the callback."""
    from rclpy.parameter import Parameter

    import deer_vla.ros.policy_node as policy_node

    node = _policy(executor, tiny_checkpoint)

    def broken(values):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(policy_node, "parse_params", broken)
    result = node.set_parameters([Parameter("rate_hz", value=20.0)])[0]
    assert not result.successful and "RuntimeError: disk on fire" in result.reason
    assert node.get_parameter("rate_hz").value == 10.0


def test_halt_closes_the_gate_even_while_other_parameters_are_invalid(executor, tiny_checkpoint, spin_until):
    """Launched with enabled:=true and a bad value, configure fails; ~/halt must still leave enabled false, or
    fixing the bad value and configuring again would actuate the robot the operator halted."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    node = _policy(executor, tiny_checkpoint, enabled=True, rate_hz=-1.0)
    assert node.trigger_configure() == R.FAILURE
    drv = Driver(executor)
    halt = drv.node.create_client(Trigger, "/deer_vla_policy/halt")
    assert halt.wait_for_service(timeout_sec=5.0)
    future = halt.call_async(Trigger.Request())
    assert spin_until(executor, future.done) and future.result().success
    assert node.get_parameter("enabled").value is False and not node.enabled
    assert node.set_parameters([Parameter("rate_hz", value=10.0)])[0].successful
    assert node.trigger_configure() == R.SUCCESS and not node.enabled
    # enabling still validates everything
    assert not node.set_parameters([Parameter("enabled", value="yes")])[0].successful
