"""Types shared by the model, the controller, the evaluator and the ROS nodes."""
from deer_vla.core.action_spec import STANDARD_AXES, ActionSpec
from deer_vla.core.cost_profile import CostMetric, CostProfile, LatencyStats
from deer_vla.core.observation import Observation
from deer_vla.core.proprio_spec import ProprioError, ProprioSpec
from deer_vla.core.segmented import NonFiniteActionError, ScoredPolicy, SegmentedPolicy, has_exit_gates
from deer_vla.core.step_record import STOP_REASONS, StepRecord, StopReason

__all__ = [
    "STANDARD_AXES",
    "STOP_REASONS",
    "ActionSpec",
    "CostMetric",
    "CostProfile",
    "LatencyStats",
    "NonFiniteActionError",
    "Observation",
    "ProprioError",
    "ProprioSpec",
    "ScoredPolicy",
    "SegmentedPolicy",
    "StepRecord",
    "StopReason",
    "has_exit_gates",
]
