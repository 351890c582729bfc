"""Lifecycle services that refuse what they cannot do instead of killing the node.

rclpy's LifecycleNode (jazzy) handles ``~/change_state`` by transition id without
checking that the transition exists in the current state: rcl raises RCLError
inside the service callback, the executor re-raises it and the process exits.
It also turns an exception in a transition callback into ERROR without a word:
``report_errors`` logs it first.
"""
from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lifecycle_msgs.srv import ChangeState
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from deer_vla.core.log_text import quoted

L = TypeVar("L", bound=LifecycleNode)


def report_errors(
    callback: Callable[[L, LifecycleState], TransitionCallbackReturn],
) -> Callable[[L, LifecycleState], TransitionCallbackReturn]:
    """A transition callback whose exception is logged (type, message, where) and answered with ERROR, which
    sends the node through on_error as rclpy would, but with the cause on /rosout instead of nowhere (and given to
    the node's ``note_transition_error``, where it has one, for its status)."""

    @functools.wraps(callback)
    def wrapped(node: L, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return callback(node, state)
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            said = (f"{callback.__name__.removeprefix('on_')} failed (from state '{state.label}'): "
                    f"{type(exc).__name__}: {exc}")
            node.get_logger().error(f"{said} (at {Path(where.filename).name}:{where.lineno})")
            noted = getattr(node, "note_transition_error", None)
            if callable(noted):  # the node's status says it too, not only /rosout
                noted(said)
            return TransitionCallbackReturn.ERROR

    return wrapped


def guard_change_state(node: LifecycleNode) -> None:
    """Make ``node``'s ``~/change_state`` answer success=false for a transition not valid now (by id or
    label) and keep the node alive; valid requests go to rclpy's own handler unchanged."""
    service: Any = getattr(node, "_service_change_state", None)
    if service is None:  # enable_communication_interface=False: no service to guard
        return
    original = service.callback
    machine = node._state_machine

    def change_state(request: ChangeState.Request, response: ChangeState.Response) -> ChangeState.Response:
        transition = request.transition
        state = machine.current_state[1]
        available = {t[0]: t[1] for t in machine.available_transitions}
        valid = transition.label in available.values() if transition.label else transition.id in available
        if not valid:
            # the label is the caller's text: escaped and cut, so it cannot forge or flood the log
            asked = quoted(transition.label, 40) if transition.label else f"id {transition.id}"
            node.get_logger().warning(
                f"change_state refused: transition {asked} is not valid in state '{state}'; "
                f"valid: {', '.join(f'{label} ({tid})' for tid, label in sorted(available.items())) or 'none'}"
            )
            response.success = False
            return response
        try:
            return original(request, response)
        except _rclpy.RCLError as exc:  # e.g. the state changed between the check and the transition
            node.get_logger().error(f"change_state failed in state '{state}': {exc}")
            response.success = False
            return response

    service.callback = change_state
