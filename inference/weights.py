"""The one place that finds, reads, checks and writes model weights.

``weights="auto"`` resolves, in this order:

1. an explicit checkpoint path (a ``str`` or ``Path`` passed as ``weights``);
2. a checkpoint from the resolver a library user registered (``set_checkpoint_resolver(fn)``,
   ``fn(detector_name) -> path | None``). The platform registers none: it decides what ``auto``
   means in its detector plan (``experiments.plans``) and passes the checkpoint's path;
3. torchvision ImageNet weights for the detector's backbone when the file is already in the
   torch cache (``torch.hub.get_dir()/checkpoints/<torchvision file name>``): provenance
   ``"imagenet"``, the layers after the backbone stay randomly initialised;
4. otherwise ``WeightsUnavailable``, whose message says how to train or where to put a file.

``weights=None`` (or ``"random"``) is random initialisation. Nothing here downloads.
Files are read only with ``torch.load(path, map_location="cpu", weights_only=True)``, or with
``safetensors`` for ``.safetensors`` files, and the SHA-256 of every file read is recorded.

Checkpoint format: ``{"state_dict": {name: tensor}, "meta": {"detector": name, ...json-safe}}``.
A ``.safetensors`` checkpoint holds the tensors and stores ``meta`` as JSON under the
``"meta"`` metadata key. The weights may be fp16 (``convert_checkpoint``, half the file size);
loading casts them to the model's fp32 parameters.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: importing this module stays light
    import torch
    from torch import nn


CheckpointResolver = Callable[[str], "str | os.PathLike | None"]

SAFETENSORS_SUFFIX = ".safetensors"
EXPORT_DTYPES = ("fp32", "fp16")
KEEP_PRECISION_SUFFIXES = (".running_mean", ".running_var")  # what convert_checkpoint leaves in fp32
TRAIN_HINT = "python manage.py train_detector {name} --dataset D"


class WeightsUnavailable(LookupError):
    """No weights could be found for a learned detector under ``weights="auto"``."""


class WeightsError(ValueError):
    """A weights file exists but cannot be used: unsafe, malformed, or for another model."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a detector's weights come from. ``kind``: checkpoint | imagenet | random | none."""

    kind: str
    path: Path | None = None
    sha256: str | None = None

    @property
    def provenance(self) -> str:
        if self.kind == "checkpoint":
            return f"checkpoint:{self.sha256}"
        return self.kind


NO_WEIGHTS = WeightsSource("none")
RANDOM_WEIGHTS = WeightsSource("random")

_checkpoint_resolver: CheckpointResolver | None = None


def set_checkpoint_resolver(resolver: CheckpointResolver | None) -> None:
    """Register ``resolver(detector_name) -> path | None`` (``None`` unregisters)."""
    global _checkpoint_resolver
    _checkpoint_resolver = resolver


def get_checkpoint_resolver() -> CheckpointResolver | None:
    return _checkpoint_resolver


# --- ImageNet backbone files in the torch cache -------------------------------------------


def _torchvision_weight_enums() -> dict[str, type]:
    from torchvision import models

    return {
        "resnet50": models.ResNet50_Weights,
        "vgg16": models.VGG16_Weights,
        "mobilenet_v3_large": models.MobileNet_V3_Large_Weights,
        "mobilenet_v3_small": models.MobileNet_V3_Small_Weights,
    }


def imagenet_filenames(backbone: str) -> list[str]:
    """torchvision's file names for ``backbone``'s ImageNet weights, the default first.

    Taken from the weights enums' ``url`` (reading an enum downloads nothing).
    """
    enums = _torchvision_weight_enums()
    if backbone not in enums:
        raise KeyError(f"no ImageNet weights known for backbone {backbone!r}; known: {sorted(enums)}")
    weight_enum = enums[backbone]
    # Only the classification weights trained with the standard ImageNet normalisation
    # (not e.g. VGG16's IMAGENET1K_FEATURES, which expects 0-255 inputs).
    standard = [w for w in weight_enum if w.name.startswith("IMAGENET1K_V")]
    ordered = [weight_enum.DEFAULT, *[w for w in standard if w is not weight_enum.DEFAULT]]
    names = [w.url.rsplit("/", 1)[-1] for w in ordered]
    return list(dict.fromkeys(names))


def imagenet_cache_dir() -> Path:
    """Where torchvision keeps downloaded weights, ``torch.hub.get_dir()/checkpoints``, computed
    without torch (follows ``TORCH_HOME`` and ``XDG_CACHE_HOME`` at call time)."""
    if os.environ.get("TORCH_HOME"):
        base = Path(os.environ["TORCH_HOME"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return base / "hub" / "checkpoints"


def cached_imagenet_file(filenames: Iterable[str]) -> Path | None:
    """The first of ``filenames`` present in the torch cache (torch-free), or None."""
    folder = imagenet_cache_dir()
    return next((folder / name for name in filenames if (folder / name).is_file()), None)


def find_imagenet_file(backbone: str) -> Path | None:
    return cached_imagenet_file(imagenet_filenames(backbone))


def load_imagenet_state_dict(source: WeightsSource) -> dict[str, torch.Tensor]:
    """Read a torchvision ImageNet file found by ``resolve_weights`` (a bare state dict)."""
    payload = _safe_torch_load(source.path)
    if not _is_state_dict(payload):
        raise WeightsError(f"{source.path} is not a torchvision state dict (name -> tensor)")
    return dict(payload)


# --- resolution ---------------------------------------------------------------------------


def resolve_weights(
    detector_name: str,
    weights: str | os.PathLike | None = "auto",
    *,
    backbone: str | None = None,
) -> WeightsSource:
    """Decide where a learned detector's weights come from (see the module docstring).

    ``weights`` is ``"auto"``, ``"imagenet"``, ``None``/``"random"``, a checkpoint path, or a
    `WeightsSource` already resolved (the platform's: an uploaded checkpoint's safetensors copy under
    the provenance of the file its owner uploaded). ``backbone`` names the torchvision backbone whose
    ImageNet file may be used.
    """
    if isinstance(weights, WeightsSource):
        return weights
    if weights is None or weights == "random":
        return RANDOM_WEIGHTS
    if weights == "imagenet":
        return _imagenet_source(detector_name, backbone, required=True)
    if weights == "auto":
        return _auto_source(detector_name, backbone)
    return checkpoint_source(weights)


def checkpoint_source(path: str | os.PathLike) -> WeightsSource:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist or is not a file")
    return WeightsSource("checkpoint", path, file_sha256(path))


def _auto_source(detector_name: str, backbone: str | None) -> WeightsSource:
    if _checkpoint_resolver is not None:
        resolved = _checkpoint_resolver(detector_name)
        if resolved is not None:
            return checkpoint_source(resolved)
    return _imagenet_source(detector_name, backbone, required=False)


def _imagenet_source(detector_name: str, backbone: str | None, *, required: bool) -> WeightsSource:
    found = find_imagenet_file(backbone) if backbone else None
    if found is not None:
        return WeightsSource("imagenet", found, file_sha256(found))
    raise WeightsUnavailable(unavailable_message(detector_name, backbone, imagenet_asked=required))


def unavailable_message(detector_name: str, backbone: str | None, *, imagenet_asked: bool) -> str:
    lines = [f"no weights for detector {detector_name!r}."]
    if not imagenet_asked:
        lines.append(
            f"Train a checkpoint: `{TRAIN_HINT.format(name=detector_name)}`, or pass weights=PATH to a checkpoint file."
        )
    if backbone:
        paths = " or ".join(str(imagenet_cache_dir() / name) for name in imagenet_filenames(backbone))
        lines.append(f"For ImageNet backbone weights put torchvision's {backbone} file at {paths}.")
    elif imagenet_asked:
        lines.append("This detector has no ImageNet backbone: train it or pass a checkpoint.")
    lines.append("weights=None gives random initialisation (useful only for tests).")
    return " ".join(lines)


# --- checkpoints ----------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], meta: Mapping) -> str:
    """Write a checkpoint atomically and return its SHA-256.

    ``meta`` must be JSON-safe and name the detector (``meta["detector"]``). A path ending in
    ``.safetensors`` is written in that format (needs the ``safetensors`` package).
    """
    meta = _checked_meta(meta)
    tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=path.suffix, delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        _write_payload(tmp_path, tensors, meta, safetensors=path.suffix == SAFETENSORS_SUFFIX)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return file_sha256(path)


def convert_checkpoint(source: str | os.PathLike, path: str | os.PathLike, dtype: str) -> str:
    """Write the checkpoint at ``source`` to ``path`` with its floating-point tensors in ``dtype``
    (``"fp32"`` or ``"fp16"``) and return the new file's SHA-256.

    Integer buffers and BatchNorm running statistics (``*.running_mean``, ``*.running_var``: one
    value per channel, and without BatchNorm before them the variances exceed fp16's 65504) stay
    as they are. ``meta`` gains ``"dtype"`` and ``"converted_from"`` (the source file's SHA-256), so
    the smaller file still names the checkpoint it was made from. ``WeightsError`` if a converted
    value overflows."""
    import torch

    if dtype not in EXPORT_DTYPES:
        raise WeightsError(f"unknown export dtype {dtype!r}; choose one of {', '.join(EXPORT_DTYPES)}")
    state_dict, meta, sha256 = load_checkpoint(source)
    target = torch.float16 if dtype == "fp16" else torch.float32
    converted = {}
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and not key.endswith(KEEP_PRECISION_SUFFIXES):
            tensor = tensor.to(target)
            if not torch.isfinite(tensor).all():
                raise WeightsError(f"{source}: {key} does not fit in {dtype} (values overflow)")
        converted[key] = tensor
    return save_checkpoint(path, converted, {**meta, "dtype": dtype, "converted_from": sha256})


def _checked_meta(meta: Mapping) -> dict:
    if not isinstance(meta.get("detector"), str):
        raise WeightsError("checkpoint meta must name the detector: meta['detector'] = '<name>'")
    try:
        return json.loads(json.dumps(dict(meta)))
    except (TypeError, ValueError) as error:
        raise WeightsError(f"checkpoint meta must be JSON-safe: {error}") from error


def _write_payload(path: Path, tensors: dict, meta: dict, *, safetensors: bool) -> None:
    if safetensors:
        from safetensors.torch import save_file

        save_file(tensors, str(path), metadata={"meta": json.dumps(meta)})
    else:
        # Through a buffer: torch.save names the archive after the file, and the temporary
        # name would make the bytes (and so the sha256) differ for the same weights.
        import torch

        buffer = io.BytesIO()
        torch.save({"state_dict": tensors, "meta": meta}, buffer)
        path.write_bytes(buffer.getvalue())


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict, str]:
    """Read a checkpoint safely: ``(state_dict, meta, sha256)``; ``WeightsError`` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist or is not a file")
    sha256 = file_sha256(path)
    if path.suffix == SAFETENSORS_SUFFIX:
        state_dict, meta = _read_safetensors(path)
    else:
        state_dict, meta = _split_payload(path, _safe_torch_load(path))
    return state_dict, meta, sha256


def _safe_torch_load(path: Path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(
            f"refusing to load {path}: it is not a plain tensor checkpoint readable with "
            f"torch.load(weights_only=True) ({type(error).__name__}: {error})"
        ) from error


SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit
SAFETENSORS_ITEM_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                          "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}  # fmt: skip


def check_safetensors_layout(path: Path) -> None:
    """Refuse a safetensors file whose header does not account for it exactly: every tensor's declared
    dtype and shape fill its byte range, the ranges follow each other from 0, and the last ends at the
    end of the file. Reading it then allocates nothing the file does not hold."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
        if not 2 <= length <= min(SAFETENSORS_MAX_HEADER, size - 8):
            raise WeightsError(f"{path} is not a safetensors file (its header does not fit in it)")
        try:
            header = json.loads(handle.read(length))
        except ValueError as error:
            raise WeightsError(f"{path}: the safetensors header is not JSON ({error})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: the safetensors header is not a JSON object")
    at = 0
    for begin, end in sorted(
        _declared_range(path, name, entry) for name, entry in header.items() if name != "__metadata__"
    ):
        if begin != at:
            raise WeightsError(f"{path}: the tensors' byte ranges overlap or leave gaps")
        at = end
    if 8 + length + at != size:
        raise WeightsError(f"{path}: the tensors' sizes add up to {8 + length + at} bytes, but the file has {size}")


def _declared_range(path: Path, name: str, entry) -> tuple[int, int]:
    """A tensor's byte range, refused unless its dtype and shape fill it exactly."""
    shape, offsets = (entry.get("shape"), entry.get("data_offsets")) if isinstance(entry, dict) else (None, None)
    valid = isinstance(shape, list) and isinstance(offsets, list) and len(offsets) == 2
    if (
        not valid
        or entry.get("dtype") not in SAFETENSORS_ITEM_BYTES
        or not all(type(number) is int and number >= 0 for number in [*shape, *offsets])
    ):
        raise WeightsError(f"{path}: tensor {name!r} has no valid dtype, shape and offsets")
    declared = math.prod(shape) * SAFETENSORS_ITEM_BYTES[entry["dtype"]]
    if offsets[1] - offsets[0] != declared:
        raise WeightsError(f"{path}: tensor {name!r} declares {declared} bytes but spans {offsets[1] - offsets[0]}")
    return offsets[0], offsets[1]


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    try:
        from safetensors import safe_open
    except ImportError as error:
        raise WeightsError(f"{path} is a .safetensors file: pip install safetensors") from error
    check_safetensors_layout(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = json.loads((handle.metadata() or {}).get("meta", "{}"))
            names = handle.keys()
            state_dict = {key: handle.get_tensor(key) for key in names}
    except Exception as error:
        raise WeightsError(f"cannot read safetensors file {path}: {error}") from error
    return state_dict, meta


def _split_payload(path: Path, payload) -> tuple[dict, dict]:
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise WeightsError(
            f"{path} is not a diffplatform checkpoint: expected "
            "{'state_dict': {...}, 'meta': {'detector': name, ...}} (see save_checkpoint)"
        )
    state_dict, meta = payload["state_dict"], payload.get("meta", {})
    if not _is_state_dict(state_dict) or not isinstance(meta, dict):
        raise WeightsError(f"{path}: 'state_dict' must map names to tensors and 'meta' be a dict")
    return dict(state_dict), meta


def _is_state_dict(value) -> bool:
    import torch

    return isinstance(value, Mapping) and all(
        isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items()
    )


def apply_checkpoint(model: nn.Module, source: WeightsSource, *, detector_name: str) -> dict:
    """Load a checkpoint into ``model`` after checking it is for ``detector_name``.

    Returns the checkpoint's meta. Raises ``WeightsError`` naming the mismatch.
    """
    state_dict, meta, _ = load_checkpoint(source.path)
    saved_for = meta.get("detector")
    if saved_for != detector_name:
        raise WeightsError(f"checkpoint {source.path} was saved for detector {saved_for!r}, not {detector_name!r}")
    load_state_dict_checked(model, state_dict, origin=str(source.path))
    return meta


def load_state_dict_checked(model: nn.Module, state_dict: Mapping, *, origin: str) -> None:
    """``model.load_state_dict(strict=True)`` with an error that lists what does not match."""
    problems = state_dict_mismatches(model.state_dict(), state_dict)
    if problems:
        raise WeightsError(f"weights from {origin} do not fit the model: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)


def state_dict_mismatches(expected: Mapping, state_dict: Mapping) -> list[str]:
    """Missing keys, unexpected keys and shape mismatches of ``state_dict`` against ``expected``."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = [
        f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_first(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatches {_first(wrong_shape)}")
    return problems


def _first(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
