"""Detection quality of the learned detectors against the classical baselines.

Synthetic part: generate the synthetic benchmark (``inference.synthetic``), train each learned
detector from scratch on its train split (or load ``<checkpoint-dir>/<name>-synthetic-<size>.pt``
when it exists; newly trained weights are saved there), then score every detector on the test
split, per category: F1 of the change class and the false-positive pixel rate FP / (FP + TN),
both from one confusion matrix pooled over the category's pairs. Shipped checkpoints are used
too: ``--checkpoint-dir weights`` loads ``weights/<name>.pt`` (trained by ``manage.py
train_detector`` on the same generated benchmark, see docs/weights.md). Pairs are scored as
generated: ``misaligned`` pairs are not aligned first, for learned and classical detectors alike.

Thresholds: every detector (learned and classical) is thresholded at the probability that gives
the best pooled F1 on the *validation* split; the chosen thresholds are printed.

Goals checked (printed as PASS/FAIL):

1. the best learned detector reaches F1 >= 0.90 pooled over the categories with real change
   (the per-category minimum is printed too);
2. on ``misaligned`` it beats the best classical baseline (absdiff, ssim) by >= 0.15 F1;
3. on the no-change categories its FP pixel rate is at most half the best classical one's.

LEVIR part (``--skip-levir`` to leave out): train on random 256 crops of the three 1024x1024
LEVIR-CD tiles in ``shared/data/levir_cd_scm_samples`` and report F1 on the 256x256 crops in
``shared/data/levir_cd_bit_samples``, except the two cut from those tiles. Every detector's
threshold (learned and classical) is the best pooled F1 on the 48 non-overlapping 256 tiles of
the three *training* tiles, never on the test crops.

Run from the repository root, e.g.::

    python -m bench.quality --pairs 480 --size 128 --skip-levir \
        --detectors siamese-unet,siamese-mobilenetv3 --checkpoint-dir weights

(results and the LEVIR commands: docs/weights.md).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: bench/ itself would shadow the `inference` package on sys.path.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np

from inference import metrics
from inference.registry import create_detector
from inference.synthetic import CATEGORIES, NO_CHANGE_CATEGORIES, generate_benchmark
from inference.training import describe_init, save_training_checkpoint, train_detector

CLASSICAL = ("absdiff", "ssim")
CHANGE_CATEGORIES = tuple(c for c in CATEGORIES if c not in NO_CHANGE_CATEGORIES)
F1_GOAL = 0.90
MISALIGNED_MARGIN_GOAL = 0.15
FP_RATIO_GOAL = 0.5
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
LEVIR_TILES = DATA / "levir_cd_scm_samples"
LEVIR_CROPS = DATA / "levir_cd_bit_samples"
LEVIR_OVERLAP = {"test_102_0512_0000", "test_7_0256_0512"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=480, help="synthetic pairs (all splits)")
    parser.add_argument("--size", type=int, default=128, help="synthetic image size in pixels")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--patience", type=int, default=8, help="0 disables early stopping")
    parser.add_argument("--detectors", default="siamese-unet", help="comma-separated learned")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--skip-levir", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true", help="only the LEVIR part")
    parser.add_argument("--levir-epochs", type=int, default=10)
    parser.add_argument(
        "--levir-init", type=Path, default=None, help="fine-tune from <dir>/<name>.pt instead of random initialisation"
    )
    parser.add_argument("--levir-crops", type=int, default=48, help="random crops per epoch")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


# --- scoring -----------------------------------------------------------------------------------


def predict_all(detector, pairs) -> list[np.ndarray]:
    return detector.predict_batch([(p.a, p.b) for p in pairs])


def best_threshold(probs, pairs) -> float:
    """Threshold with the best F1 pooled over ``pairs`` (histograms of 256 levels)."""
    positive = np.zeros(256, np.int64)
    negative = np.zeros(256, np.int64)
    for prob, pair in zip(probs, pairs, strict=True):
        pos, neg = metrics.score_histogram(prob, pair.label, bins=256)
        positive += pos
        negative += neg
    return metrics.best_f1_from_histograms(positive, negative)[0]


def category_scores(probs, pairs, threshold: float) -> dict[str, dict]:
    """Pooled confusion per category, plus the pooled groups ``changed`` and ``no-change``."""
    pooled: dict[str, metrics.Confusion] = {}
    for prob, pair in zip(probs, pairs, strict=True):
        conf = metrics.confusion(prob >= threshold, pair.label)
        group = "no-change" if pair.category in NO_CHANGE_CATEGORIES else "changed"
        for key in (pair.category, group):
            pooled[key] = pooled.get(key, metrics.Confusion.zero()) + conf
    return {key: summarise(conf) for key, conf in pooled.items()}


def summarise(conf: metrics.Confusion) -> dict:
    negatives = conf.fp + conf.tn
    return {
        "f1": metrics.scores(conf)["f1"] if conf.tp + conf.fn else math.nan,
        "fp_rate": conf.fp / negatives if negatives else math.nan,
        **conf.as_dict(),
    }


# --- synthetic part ----------------------------------------------------------------------------


def learned_detector(name: str, train, val, args) -> tuple[object, str]:
    """Load a saved checkpoint, or train one (and save it when a directory is given)."""
    checkpoint = args.checkpoint_dir / f"{name}-synthetic-{args.size}.pt" if args.checkpoint_dir else None
    shipped = args.checkpoint_dir / f"{name}.pt" if args.checkpoint_dir else None
    for path in (checkpoint, shipped):
        if path is not None and path.is_file():
            detector = create_detector(name, weights=path, device=args.device)
            return detector, f"loaded {path} ({detector.info.weights[:23]}, {checkpoint_summary(path)})"
    print(f"[{name}] {describe_init(name)}", flush=True)
    result = train_detector(
        name,
        train,
        val,
        epochs=args.epochs,
        size=args.size,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        device=args.device,
        init_weights="auto",
        on_progress=print_epoch,
    )
    summary = (
        f"trained {result.config['epochs_run']}/{args.epochs} epochs in {result.seconds:.0f}s, "
        f"best epoch {result.best_epoch} (val F1 at 0.5: {result.val_metrics.get('f1', math.nan):.3f})"
    )
    detector = create_detector(name, weights=None, device=args.device, input_size=args.size)
    detector.model.load_state_dict(result.state_dict)
    if checkpoint is not None:
        sha = save_training_checkpoint(
            result, checkpoint, detector=name, dataset_name=f"synthetic-{args.seed}-{args.pairs}"
        )
        summary += f"; saved {checkpoint} ({sha[:12]})"
    return detector, summary


def checkpoint_summary(path: Path) -> str:
    from inference.weights import load_checkpoint

    meta = load_checkpoint(path)[1]
    return f"dataset {meta.get('dataset')}, size {meta.get('input_size')}, best epoch {meta.get('best_epoch')}"


def print_epoch(event: dict) -> None:
    if event["stage"] != "epoch":
        return
    f1 = event["val_f1"]
    print(
        f"  epoch {event['epoch']:>2}/{event['epochs']}  train loss {event['train_loss']:.3f}  "
        f"val loss {event['val_loss']:.3f}  val F1 {f1:.3f}  {event['seconds']:.0f}s",
        flush=True,
    )


def synthetic_part(args) -> dict:
    started = time.perf_counter()
    pairs = generate_benchmark(args.pairs, size=args.size, seed=args.seed)
    split = {s: [p for p in pairs if p.split == s] for s in ("train", "val", "test")}
    print(
        f"synthetic benchmark: {args.pairs} pairs at {args.size}px, seed {args.seed} "
        f"(train {len(split['train'])}, val {len(split['val'])}, test {len(split['test'])}), "
        f"generated in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    results: dict[str, dict] = {}
    learned = [n.strip() for n in args.detectors.split(",") if n.strip()]
    for name in [*learned, *CLASSICAL]:
        if name in CLASSICAL:
            detector, how = create_detector(name), "classical"
        else:
            detector, how = learned_detector(name, split["train"], split["val"], args)
        threshold = best_threshold(predict_all(detector, split["val"]), split["val"])
        scores = category_scores(predict_all(detector, split["test"]), split["test"], threshold)
        results[name] = {"how": how, "threshold": threshold, "scores": scores}
        print(f"[{name}] {how}; threshold {threshold:.3f} (best pooled F1 on val)", flush=True)
    print_table(results)
    return {"detectors": results, "goals": check_goals(results, learned)}


def print_table(results: dict) -> None:
    columns = [*CATEGORIES, "changed", "no-change"]
    header = f"{'detector':<22}{'metric':<9}" + "".join(f"{c[:12]:>13}" for c in columns)
    print("\nsynthetic test split (F1 on categories with change, FP pixel rate everywhere)")
    print(header)
    for name, result in results.items():
        for metric in ("f1", "fp_rate"):
            cells = []
            for column in columns:
                value = result["scores"].get(column, {}).get(metric, math.nan)
                cells.append(f"{'-':>13}" if math.isnan(value) else f"{value:>13.4f}")
            print(f"{name:<22}{metric:<9}" + "".join(cells))


def check_goals(results: dict, learned: list[str]) -> dict:
    best = max(learned, key=lambda n: results[n]["scores"]["changed"]["f1"])
    best_scores = results[best]["scores"]
    classical = {n: results[n]["scores"] for n in CLASSICAL}
    pooled_f1 = best_scores["changed"]["f1"]
    min_f1 = min(best_scores[c]["f1"] for c in CHANGE_CATEGORIES)
    classical_misaligned = max(s["misaligned"]["f1"] for s in classical.values())
    margin = best_scores["misaligned"]["f1"] - classical_misaligned
    classical_fp = min(s["no-change"]["fp_rate"] for s in classical.values())
    learned_fp = best_scores["no-change"]["fp_rate"]
    goals = {
        "best_learned": best,
        "changed_f1": pooled_f1,
        "min_category_f1": min_f1,
        "goal_f1": pooled_f1 >= F1_GOAL,
        "misaligned_margin": margin,
        "goal_misaligned": margin >= MISALIGNED_MARGIN_GOAL,
        "no_change_fp_rate": learned_fp,
        "classical_no_change_fp_rate": classical_fp,
        "goal_no_change_fp": learned_fp <= FP_RATIO_GOAL * classical_fp,
    }
    verdict = {True: "PASS", False: "FAIL"}
    print(f"\ngoals (best learned detector: {best})")
    print(
        f"  {verdict[goals['goal_f1']]}  F1 pooled over changed categories {pooled_f1:.4f} "
        f">= {F1_GOAL} (lowest single category {min_f1:.4f})"
    )
    print(
        f"  {verdict[goals['goal_misaligned']]}  misaligned F1 {best_scores['misaligned']['f1']:.4f}"
        f" - best classical {classical_misaligned:.4f} = {margin:+.4f} >= {MISALIGNED_MARGIN_GOAL}"
    )
    print(
        f"  {verdict[goals['goal_no_change_fp']]}  no-change FP rate {learned_fp:.5f} <= "
        f"{FP_RATIO_GOAL} x best classical {classical_fp:.5f}"
    )
    return goals


# --- LEVIR part --------------------------------------------------------------------------------


def load_triples(root: Path, names: list[str]) -> list[tuple]:
    from inference.images import load_image, load_mask

    return [
        (
            load_image(root / "A" / f"{n}.png"),
            load_image(root / "B" / f"{n}.png"),
            load_mask(root / "label" / f"{n}.png")[0],
        )
        for n in names
    ]


def levir_part(args, learned: list[str]) -> dict:
    if not LEVIR_TILES.is_dir() or not LEVIR_CROPS.is_dir():
        print(f"\nLEVIR part skipped: {LEVIR_TILES} or {LEVIR_CROPS} is missing")
        return {}
    tiles = load_triples(LEVIR_TILES, sorted(p.stem for p in (LEVIR_TILES / "label").glob("*.png")))
    test_names = sorted(p.stem for p in (LEVIR_CROPS / "label").glob("*.png") if p.stem not in LEVIR_OVERLAP)
    test = load_triples(LEVIR_CROPS, test_names)
    repeats = max(1, args.levir_crops // len(tiles))
    print(
        f"\nLEVIR-CD: train on random 256 crops of {len(tiles)} tiles ({repeats * len(tiles)} "
        f"crops/epoch, {args.levir_epochs} epochs, no validation split: last-best train loss); "
        f"test on {len(test)} crops",
        flush=True,
    )
    results = {}
    for name in learned:
        init = args.levir_init / f"{name}.pt" if args.levir_init else "auto"
        print(f"[{name}] LEVIR init: {init}", flush=True)
        result = train_detector(
            name,
            tiles * repeats,
            [],
            init_weights=init,
            epochs=args.levir_epochs,
            size=256,
            seed=args.seed,
            batch_size=args.batch_size,
            lr=args.lr,
            patience=0,
            device=args.device,
            on_progress=print_epoch_without_val,
        )
        detector = create_detector(name, weights=None, device=args.device, input_size=256)
        detector.model.load_state_dict(result.state_dict)
        results[name] = levir_detector_scores(name, detector, tiles, test)
    for name in CLASSICAL:
        results[name] = levir_detector_scores(name, create_detector(name), tiles, test)
    return results


def levir_detector_scores(name: str, detector, tiles, test) -> dict:
    """F1 on the test crops at the threshold that is best on the training tiles' 256 tiles."""
    pieces = [piece for tile in tiles for piece in tiles_of(tile, 256)]
    threshold = best_threshold(predict_all(detector, [_Triple(*p) for p in pieces]), [_Triple(*p) for p in pieces])
    scores = {**levir_scores(detector, test, threshold), "f1_at_0.5": levir_scores(detector, test, 0.5)["f1"]}
    print(
        f"[{name}] LEVIR test F1 {scores['f1']:.4f} at threshold {threshold:.3f} (best on the "
        f"{len(pieces)} training 256-tiles); F1 at 0.5: {scores['f1_at_0.5']:.4f}",
        flush=True,
    )
    return scores


def tiles_of(triple, size: int) -> list[tuple]:
    a, b, label = triple
    height, width = label.shape
    return [
        (a[y : y + size, x : x + size], b[y : y + size, x : x + size], label[y : y + size, x : x + size])
        for y in range(0, height - size + 1, size)
        for x in range(0, width - size + 1, size)
    ]


class _Triple:
    def __init__(self, a, b, label):
        self.a, self.b, self.label = a, b, label


def levir_scores(detector, test, threshold: float) -> dict:
    probs = detector.predict_batch([(a, b) for a, b, _ in test])
    total = metrics.Confusion.zero()
    for prob, (_, _, label) in zip(probs, test, strict=True):
        total = total + metrics.confusion(prob >= threshold, label)
    return {"threshold": threshold, **metrics.scores(total), **total.as_dict()}


def print_epoch_without_val(event: dict) -> None:
    if event["stage"] == "epoch":
        print(
            f"  epoch {event['epoch']:>2}/{event['epochs']}  train loss {event['train_loss']:.3f}"
            f"  {event['seconds']:.0f}s",
            flush=True,
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    report = {"args": {k: str(v) for k, v in vars(args).items()}}
    if not args.skip_synthetic:
        report["synthetic"] = synthetic_part(args)
    if not args.skip_levir:
        learned = [n.strip() for n in args.detectors.split(",") if n.strip()]
        report["levir"] = levir_part(args, learned)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
