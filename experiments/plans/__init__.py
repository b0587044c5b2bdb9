"""The detector plan: a detector name resolved once, for one owner (and experiment), into one frozen
record that validation, queueing, the lists, the engine and the reports read (`DetectorPlan`)."""

from experiments.plans.kinds import plan, plans_for, run_plan
from experiments.plans.record import EXTERNAL_PREFIX, ONNX_PREFIX, Availability, DetectorPlan, WeightsPlan

__all__ = [
    "EXTERNAL_PREFIX",
    "ONNX_PREFIX",
    "Availability",
    "DetectorPlan",
    "WeightsPlan",
    "plan",
    "plans_for",
    "run_plan",
]
