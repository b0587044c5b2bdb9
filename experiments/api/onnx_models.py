"""Your own models as ONNX files: upload with their contract, list, read (state), delete."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from experiments.api import serializers as s
from experiments.api.base import MULTIPART_OVERHEAD, PAGE_PARAMETERS, ApiView, paged
from experiments.api.errors import PayloadTooLarge, error_responses
from experiments.onnx_models import services as model_services
from experiments.onnx_models.selectors import models_visible_to

UPLOAD_DESCRIPTION = (
    "Multipart: `file` (the `.onnx` file) and its contract: `name` (detector `onnx:<name>`), `input_size` "
    "(pixels, or `any` for a fully convolutional model run at B's size), `mean` and `std` (three "
    "comma-separated numbers applied to RGB scaled to [0, 1]), `inputs` (`two`: tensors A and B; `concat6`: "
    "one 6-channel tensor, A then B) and `output` (`logits` or `probability`, 1xHxW or 1x1xHxW). The model "
    "answers `validating`; a worker then checks it (onnx.checker, standard operators only, inputs as declared, "
    "a probe run under a time limit, output shape and range) and it becomes `ready` (choosable as a detector) "
    "or `rejected` with the reason. Not an ONNX protobuf (e.g. a PyTorch `.pt` file): 422, nothing stored. "
    "See docs/models.md."
)


def _model(request, pk):
    return get_object_or_404(models_visible_to(request.user), pk=pk)


class ModelListView(ApiView):
    parser_classes = [MultiPartParser, FormParser]
    throttle_scope = "uploads"

    def initial(self, request, *args, **kwargs):
        """ONNX files have their own size limit (`ONNX_MAX_MB`), checked before the body is parsed."""
        super().initial(request, *args, **kwargs)
        if request.method == "POST":
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > model_services.max_model_bytes() + MULTIPART_OVERHEAD:
                raise PayloadTooLarge(
                    f"ONNX files up to {model_services.max_model_bytes() // 2**20} MB are accepted.", field="file"
                )

    @extend_schema(
        tags=["models"],
        operation_id="models_list",
        summary="Your uploaded ONNX models",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.UploadedModelOutput), **error_responses(404)},
    )
    def get(self, request):
        return self.paginate(models_visible_to(request.user), s.UploadedModelOutput, "-created_at")

    @extend_schema(
        tags=["models"],
        summary="Upload an ONNX model",
        description=UPLOAD_DESCRIPTION,
        request={"multipart/form-data": s.UploadedModelInput},
        responses={201: s.UploadedModelOutput, **error_responses(400, 403, 409, 413, 415, 422, 503)},
    )
    def post(self, request):
        data = self.valid(s.UploadedModelInput).validated_data
        model = model_services.model_upload(
            owner=request.user,
            data=data["file"].read(),
            name=data["name"],
            input_size=data["input_size"],
            mean=data["mean"],
            std=data["std"],
            inputs=data["inputs"],
            output=data["output"],
        )
        return self.out(s.UploadedModelOutput, model, 201)


class ModelDetailView(ApiView):
    @extend_schema(
        tags=["models"],
        summary="Read an uploaded model (its state: validating, ready or rejected with the reason)",
        responses={200: s.UploadedModelOutput, **error_responses(404)},
    )
    def get(self, request, pk):
        return self.out(s.UploadedModelOutput, _model(request, pk))

    @extend_schema(
        tags=["models"],
        summary="Delete an uploaded model and its file",
        description="Results already computed with it stay in their runs; new experiments can no longer choose it.",
        responses={204: None, **error_responses(403, 404)},
    )
    def delete(self, request, pk):
        model_services.model_delete(model=_model(request, pk))
        return Response(status=204)
