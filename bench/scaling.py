"""F1 of a learned detector on real LEVIR-CD pairs, resized to its input size vs tiled at it.

For each folder of ``A/``, ``B/``, ``label/`` PNG triples, every pair is predicted with
``scaling="resize"`` and ``scaling="tile"`` at each ``--overlaps`` value; the change-class F1 at
``--threshold`` is reported pooled (one confusion matrix over the folder's pairs) and as the
mean of the per-pair F1, with the seconds each setting took. See docs/engine.md ("Scaling").

Run from the repository root, e.g.::

    python -m bench.scaling --detector siamese-unet --weights weights/siamese-unet.pt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from inference import metrics
from inference.registry import create_detector
from inference.tiling import Scaling

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FOLDERS = ("levir_cd_scm_samples", "levir_cd_bit_samples")


def load_folder(root: Path) -> list[tuple[str, tuple]]:
    from inference.images import load_image, load_mask

    return [
        (path.stem, (load_image(root / "A" / path.name), load_image(path), load_mask(root / "label" / path.name)[0]))
        for path in sorted((root / "B").glob("*.png"))
    ]


def score(detector, triples, threshold: float) -> dict:
    pooled, per_pair = metrics.Confusion.zero(), []
    started = time.perf_counter()
    for _, (a, b, label) in triples:
        conf = metrics.confusion(detector.predict(a, b) >= threshold, label)
        pooled = pooled + conf
        per_pair.append(metrics.scores(conf)["f1"])
    return {
        "f1_pooled": round(metrics.scores(pooled)["f1"], 3),
        "f1_mean": round(sum(per_pair) / len(per_pair), 3),
        "seconds": round(time.perf_counter() - started, 1),
    }


def settings(overlaps: list[float]) -> dict[str, Scaling]:
    chosen = {"resize": Scaling("resize")}
    for overlap in overlaps:
        chosen[f"tile, overlap {overlap:g}"] = Scaling("tile", overlap=overlap)
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", default="siamese-unet")
    parser.add_argument("--weights", default="weights/siamese-unet.pt")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--overlaps", default="0,0.25", help="comma-separated tile overlaps")
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding the sample folders")
    parser.add_argument("--folders", default=",".join(FOLDERS))
    args = parser.parse_args(argv)
    detector = create_detector(args.detector, weights=args.weights, device=args.device)
    report = {"detector": args.detector, "input_size": detector.info.input_size, "threshold": args.threshold}
    for folder in args.folders.split(","):
        triples = load_folder(args.data / folder)
        rows = {}
        for label, scaling in settings([float(v) for v in args.overlaps.split(",")]).items():
            rows[label] = score(detector.set_scaling(scaling), triples, args.threshold)
        size = triples[0][1][1].shape[:2] if triples else None
        report[folder] = {"pairs": len(triples), "size": size, "scores": rows}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
