"""Input validation and output shapes of the API. No queries, no writes: views call selectors/services.

One module per domain; everything is importable from here (`from experiments.api import serializers as s`).
"""

from experiments.api.serializers.batches import (
    BatchInput,
    BatchOutput,
    DiffInput,
    DiffOutput,
)
from experiments.api.serializers.claims import ClaimInput, ClaimOutput
from experiments.api.serializers.common import (
    DetectorOutput,
    ImageUpload,
    InputSize,
    Threshold,
    TokenInput,
    TokenOutput,
    absolute_media_url,
    max_upload_bytes,
    page_url,
)
from experiments.api.serializers.datasets import (
    DatasetInput,
    DatasetOutput,
    ImportInput,
    ImportReportOutput,
    PairInput,
    PairOutput,
)
from experiments.api.serializers.onnx_models import UploadedModelInput, UploadedModelOutput
from experiments.api.serializers.predictions import (
    PredictionSetInput,
    PredictionSetOutput,
    PredictionsReportOutput,
)
from experiments.api.serializers.runs import (
    ExperimentInput,
    ExperimentOutput,
    LeaderboardOutput,
    ResultFilterInput,
    ResultOutput,
    RunOutput,
    ThesisTableOutput,
    WsTicketOutput,
)
from experiments.api.serializers.training import (
    CheckpointInput,
    CheckpointOutput,
    TrainingInput,
    TrainingOutput,
)
from experiments.api.serializers.webhooks import WebhookDeliveryOutput, WebhookSecretOutput

__all__ = [
    "BatchInput",
    "BatchOutput",
    "CheckpointInput",
    "CheckpointOutput",
    "ClaimInput",
    "ClaimOutput",
    "DatasetInput",
    "DatasetOutput",
    "DetectorOutput",
    "DiffInput",
    "DiffOutput",
    "ExperimentInput",
    "ExperimentOutput",
    "ImageUpload",
    "ImportInput",
    "ImportReportOutput",
    "InputSize",
    "LeaderboardOutput",
    "PairInput",
    "PairOutput",
    "PredictionSetInput",
    "PredictionSetOutput",
    "PredictionsReportOutput",
    "ResultFilterInput",
    "ResultOutput",
    "RunOutput",
    "ThesisTableOutput",
    "Threshold",
    "TokenInput",
    "TokenOutput",
    "TrainingInput",
    "TrainingOutput",
    "UploadedModelInput",
    "UploadedModelOutput",
    "WebhookDeliveryOutput",
    "WebhookSecretOutput",
    "WsTicketOutput",
    "absolute_media_url",
    "max_upload_bytes",
    "page_url",
]
