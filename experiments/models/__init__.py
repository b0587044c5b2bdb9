"""The app's tables (app label `experiments`), one module per domain; every name is importable from here."""

from experiments.models.batches import BatchJob
from experiments.models.brought_in import PairPrediction, PredictionSet, UploadedModel
from experiments.models.claims import ClaimedFigure, ClaimedMetric
from experiments.models.datasets import Dataset, ImagePair, LeakageFinding, LeakageKind, Split, pair_fingerprint
from experiments.models.leases import TaskLease
from experiments.models.notifications import WebhookDelivery, WebhookSecret
from experiments.models.runs import (
    ACTIVE_RUN_STATES,
    FINISHED_RUN_STATES,
    LEADERBOARD_RUN_STATES,
    RETRYABLE_RUN_STATES,
    Experiment,
    PairAlignment,
    QueuedWork,
    Result,
    Run,
    RunState,
    Scaling,
    ThresholdRule,
)
from experiments.models.training import ModelCheckpoint, TrainingJob

__all__ = [
    "ACTIVE_RUN_STATES",
    "FINISHED_RUN_STATES",
    "LEADERBOARD_RUN_STATES",
    "RETRYABLE_RUN_STATES",
    "BatchJob",
    "ClaimedFigure",
    "ClaimedMetric",
    "Dataset",
    "Experiment",
    "ImagePair",
    "LeakageFinding",
    "LeakageKind",
    "ModelCheckpoint",
    "PairAlignment",
    "PairPrediction",
    "PredictionSet",
    "QueuedWork",
    "Result",
    "Run",
    "RunState",
    "Scaling",
    "Split",
    "TaskLease",
    "ThresholdRule",
    "TrainingJob",
    "UploadedModel",
    "WebhookDelivery",
    "WebhookSecret",
    "pair_fingerprint",
]
