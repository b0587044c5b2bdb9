"""Checkpoints: the ones you can use, and uploading your own (checked by the checkpoint service)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.parsers import FormParser, MultiPartParser

from experiments.api import serializers as s
from experiments.api.base import PAGE_PARAMETERS, ApiView, api_datasets, paged, read_upload
from experiments.api.errors import ApiError, error_responses
from experiments.checkpoints import selectors as checkpoint_selectors
from experiments.checkpoints import services as checkpoint_services


class CheckpointListView(ApiView):
    parser_classes = [MultiPartParser, FormParser]
    takes_uploads = True
    throttle_scope = "uploads"

    @extend_schema(
        tags=["checkpoints"],
        operation_id="checkpoints_list",
        summary="Checkpoints you can use (yours and public ones)",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.CheckpointOutput), **error_responses(404)},
    )
    def get(self, request):
        return self.paginate(
            checkpoint_selectors.checkpoints_visible_to(request.user), s.CheckpointOutput, "-created_at"
        )

    @extend_schema(
        tags=["checkpoints"],
        summary="Upload a checkpoint",
        description=(
            "A `.pt` file written by `inference.weights.save_checkpoint` (`{'state_dict': ..., 'meta': {'detector': "
            "name, ...}}`) or a `.safetensors` file with `meta` in its metadata. A `.pt` file's zip members must be "
            "stored uncompressed (as `torch.save` writes them; checked from the central directory, nothing is "
            "decompressed by the web server). Read with `torch.load(weights_only=True)` in a sandbox process with "
            "limited memory and time: a pickle of arbitrary objects is refused (422), and so is a `state_dict` "
            "that does not fit the named detector's network (missing or unexpected keys, other shapes)."
        ),
        request={"multipart/form-data": s.CheckpointInput},
        responses={
            200: OpenApiResponse(s.CheckpointOutput, description="you had uploaded these exact bytes before"),
            201: s.CheckpointOutput,
            **error_responses(400, 403, 404, 409, 413, 415, 422, 503),
        },
    )
    def post(self, request):
        data = self.valid(s.CheckpointInput).validated_data
        upload = data["file"]
        dataset = None
        if data.get("dataset") is not None:
            dataset = api_datasets(request.user).filter(pk=data["dataset"]).first()
            if dataset is None:
                raise ApiError("Dataset not found.", status_code=404, field="dataset")
        checkpoint, created = checkpoint_services.checkpoint_upload(
            owner=request.user,
            filename=upload.name,
            data=read_upload(upload, "file"),
            detector=data.get("detector"),
            dataset=dataset,
        )
        return self.out(s.CheckpointOutput, checkpoint, 201 if created else 200)
