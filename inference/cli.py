"""Command line: ``python -m inference list`` and ``python -m inference diff A B ...``.

``diff`` runs one detector on one pair and writes heatmap.png, mask.png, overlay.png (and
error_map.png when a label is given) into ``--out``; it prints a JSON summary with the
detector's metadata, the latency, whether a learned detector tiled the pair (``--scaling``) and,
with ``--label``, the metrics.

Detector plug-ins listed in ``DIFFPLATFORM_DETECTOR_MODULES`` (comma-separated modules) are
listed and usable like the built-ins.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from inference.numbers import json_safe
from inference.tiling import AUTO_TILE_FACTOR, SCALING_MODES

EXIT_USAGE = 2


WARM_CALLS = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="list registered detectors with their metadata")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    diff = commands.add_parser("diff", help="change map for one image pair (A before, B after)")
    diff.add_argument("a", type=Path, help="image A (before)")
    diff.add_argument("b", type=Path, help="image B (after); maps are in B's frame")
    diff.add_argument("--detector", default="absdiff", help="registry name (see `list`)")
    diff.add_argument(
        "--weights",
        default="auto",
        help="auto | imagenet | random | PATH to a checkpoint (default: auto)",
    )
    diff.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    diff.add_argument(
        "--scaling",
        choices=SCALING_MODES,
        default="auto",
        help="learned detectors: resize the pair to the input size, or tile B's frame at it "
        f"(auto, the default: tile when B's longer side is more than {AUTO_TILE_FACTOR}x the input size)",
    )
    diff.add_argument("--align", action="store_true", help="warp A onto B before comparing")
    diff.add_argument("--label", type=Path, help="change mask in B's frame (255/1 = changed)")
    diff.add_argument("--threshold", type=float, default=0.5, help="mask = probability >= this")
    diff.add_argument("--out", type=Path, required=True, help="folder for the PNG outputs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return list_command(as_json=args.json)
    return diff_command(args)


def list_command(*, as_json: bool) -> int:
    from inference.registry import detector_info, list_detectors

    try:
        infos = [detector_info(name).as_dict() for name in list_detectors()]
    except ImportError as err:  # a plug-in module named in DIFFPLATFORM_DETECTOR_MODULES
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if as_json:
        print(json.dumps(infos, indent=2))
        return 0
    columns = ("name", "family", "learned", "params", "input_size", "weights")
    rows = [[str(info[c]) for c in columns] for info in infos]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    for row in [list(columns), *rows]:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())
    return 0


def weights_argument(value: str):
    """``random`` -> None (random init); ``auto``/``imagenet`` as is; anything else a path."""
    if value == "random":
        return None
    if value in ("auto", "imagenet"):
        return value
    return Path(value)


def diff_command(args: argparse.Namespace) -> int:
    from inference.images import ImageError, load_image
    from inference.registry import UnknownDetectorError, create_detector
    from inference.weights import WeightsError, WeightsUnavailable

    try:
        a, b = load_image(args.a), load_image(args.b)
        detector = create_detector(
            args.detector, weights=weights_argument(args.weights), device=args.device, scaling=args.scaling
        )
        label = _load_label(args.label, b) if args.label else None
    except (ImageError, UnknownDetectorError, WeightsUnavailable, WeightsError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    summary = run_diff(detector, a, b, label=label, align=args.align, threshold=args.threshold)
    summary["outputs"] = write_pictures(args.out, summary.pop("_pictures"))
    print(json.dumps(json_safe(summary), indent=2))
    return 0


def _load_label(path: Path, b):
    from inference.images import load_mask

    mask, warnings = load_mask(path, size=(b.shape[1], b.shape[0]))
    for warning in warnings:
        print(f"warning: label {path}: {warning}", file=sys.stderr)
    return mask


def run_diff(detector, a, b, *, label, align: bool, threshold: float) -> dict:
    """Predict, threshold, score and render; returns the summary and the pictures to write."""
    from inference import render

    summary: dict = {"detector": detector.info.as_dict(), "threshold": threshold}
    valid = None
    if align:
        from inference.alignment import align_pair

        alignment = align_pair(a, b)
        a, valid = alignment.warped_a, alignment.valid_mask
        summary["alignment"] = alignment.as_dict()
    scaling = getattr(detector, "scaling", None)  # learned detectors: was this pair tiled or resized?
    if scaling is not None:
        summary["tiled"] = scaling.tiles(b.shape[0], b.shape[1], detector.input_size)
    started = time.perf_counter()
    prob = detector.predict(a, b)  # the first call pays for lazy set-up (threads, caches, allocations)
    summary["cold_latency_ms"] = (time.perf_counter() - started) * 1000.0
    warm = []
    for _ in range(WARM_CALLS):
        started = time.perf_counter()
        detector.predict(a, b)
        warm.append((time.perf_counter() - started) * 1000.0)
    summary["latency_ms"] = statistics.median(warm)  # warm, median of WARM_CALLS calls
    mask = prob >= threshold
    summary["changed_fraction"] = float(mask.mean())
    pictures = {
        "heatmap.png": render.heatmap_png(prob),
        "mask.png": render.mask_png(mask),
        "overlay.png": render.overlay_png(prob, b),
    }
    if label is not None:
        summary["metrics"] = pair_metrics(prob, mask, label, valid)
        pictures["error_map.png"] = render.error_map_png(mask, label, valid)
    summary["_pictures"] = pictures
    return summary


def pair_metrics(prob, mask, label, valid) -> dict:
    from inference import metrics, object_metrics

    conf = metrics.confusion(mask, label, valid)
    threshold, f1 = metrics.best_f1_threshold(prob, label)
    return {
        **metrics.scores(conf),
        "confusion": conf.as_dict(),
        "auroc": metrics.auroc(prob, label),
        "average_precision": metrics.average_precision(prob, label),
        "oracle_threshold": threshold,  # tuned on this very pair: an upper bound, not a result
        "oracle_best_f1": f1,
        "objects": object_metrics.object_scores(mask, label),
    }


def write_pictures(out_dir: Path, pictures: dict[str, bytes]) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, data in pictures.items():
        path = out_dir / filename
        path.write_bytes(data)
        written.append(str(path))
    return written
