"""What a loaded detector is (its record, FLOPs, precision) and the records of its device, runtime and
alignment that go into the result-cache key. What it loads, at which size and where is its plan's
(`experiments.plans`)."""

import logging

from experiments.models import PairAlignment

logger = logging.getLogger(__name__)

# per worker process: FLOP counts per (detector, input size)
_flop_counts: dict[tuple[str, int | None], int | None] = {}


def loaded_record(detector, plan, seed: int) -> tuple[dict, str, list[dict] | None]:
    """`(record, precision, members)` of a detector loaded by its `plan`: the run's record of what it
    ran as (its info, FLOPs at its input size; an ensemble's members with where each size comes from
    and their FLOPs), the precision it computes in, and an ensemble's members as its identity."""
    info = detector.info.as_dict()
    if info["weights"] == "random":
        info["weights_sha256"] = f"seed={seed}"  # seeded init: the seed identifies the weights
    precision = precision_of(detector)
    members = _member_records(detector, seed) if plan.members else None
    if members is None:
        info["flops"] = flops_of(detector, plan.input_size)
        return info, precision, None
    info["members"] = [
        {**record, "input_size_source": planned.input_size_source,
         "flops": flops_of(member, member.info.input_size if member.info.learned else None)}
        for member, record, planned in zip(detector.members, members, plan.members, strict=True)
    ]  # fmt: skip
    info["extra"] = {k: v for k, v in info["extra"].items() if k != "members"}  # said in info["members"]
    flops = [m["flops"] for m in info["members"] if m["flops"] is not None]
    info["flops"] = sum(flops) if flops else None
    return info, precision, members


def _member_records(ensemble, seed: int) -> list[dict]:
    """An ensemble's members as its identity: name, mixing weight, weights, input size, precision."""
    records = []
    for member, weight in zip(ensemble.members, ensemble.member_weights, strict=True):
        info = member.info
        records.append({
            "name": info.name,
            "weight": weight,
            "weights": info.weights,
            "weights_sha256": info.weights_sha256 if info.weights != "random" else f"seed={seed}",
            "input_size": info.input_size,
            "device": info.device,
            "precision": precision_of(member),
        })  # fmt: skip
    return records


def flops_of(detector, input_size: int | None) -> int | None:
    """FLOPs of one forward at the detector's input size (learned detectors only; counted once per process)."""
    if getattr(detector, "model", None) is None or input_size is None:
        return None
    key = (detector.info.name, input_size)
    if key not in _flop_counts:
        from inference.profiling import count_flops

        try:
            _flop_counts[key] = count_flops(detector.model, input_size)
        except Exception:
            logger.warning("could not count FLOPs of %s", detector.info.name, exc_info=True)
            _flop_counts[key] = None
    return _flop_counts[key]


def precision_of(detector) -> str:
    """The precision a loaded detector actually computes in (an ensemble: its members', joined by "+")."""
    members = getattr(detector, "members", None)
    if members:
        return "+".join(sorted({precision_of(member) for member in members}))
    options, device = getattr(detector, "options", None), getattr(detector, "device", None)
    if options is None or device is None or not hasattr(options, "amp_enabled"):
        return "fp32"
    import torch

    from inference.runtime import autocast_dtype

    if not options.amp_enabled(device):
        return "fp32"
    return "bf16" if autocast_dtype(device) == torch.bfloat16 else "fp16"


def device_record(device: str) -> dict:
    """The device part of the result-cache key: the CPU, or the GPU with CUDA and cuDNN versions."""
    if not (device.startswith("cuda") or device == "mixed"):
        return {"type": "cpu"}
    import torch

    if not torch.cuda.is_available():
        return {"type": device}
    return {
        "type": "cuda" if device.startswith("cuda") else device,
        "gpu": torch.cuda.get_device_name(torch.device(device) if device.startswith("cuda") else None),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def alignment_record(align: bool, alignment: PairAlignment | None) -> dict:
    """The warp applied to A before detection (its method and homography), as the cache key sees it."""
    if not align:
        return {"align": False}
    if alignment is None:
        return {"align": True, "method": None}
    return {"align": True, "method": alignment.method, "ok": alignment.ok, "homography": alignment.homography}


def runtime_options(learned: bool) -> dict:
    if not learned:
        return {}
    from dataclasses import asdict

    from inference.runtime import RuntimeOptions

    return asdict(RuntimeOptions())
