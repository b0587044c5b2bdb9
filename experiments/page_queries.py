"""Read-only shaping of data for the pages: leaderboard tables, gallery orderings, pair detail.

Everything here reads objects the caller already fetched through `selectors` (so per-user
filtering has happened) and returns plain dicts and lists for templates and `json_script`.
Page state (sorting, filters, baseline, chosen detectors) is parsed from and written back to the
query string, so a link shows a colleague the same view.
"""

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from experiments import storage
from experiments.models import ImagePair, Run

# Okabe-Ito, colour-blind safe; detectors take colours in the experiment's order.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

# --------------------------------------------------------------------------- leaderboard
# key -> (label, getter path, higher_is_better)
LEADERBOARD_COLUMNS = {
    "pooled_iou": ("IoU (pooled)", ("pooled", "iou"), True),
    "pooled_f1": ("F1 (pooled)", ("pooled", "f1"), True),
    "pooled_precision": ("Precision (pooled)", ("pooled", "precision"), True),
    "pooled_recall": ("Recall (pooled)", ("pooled", "recall"), True),
    "pooled_auroc": ("AUROC (pooled)", ("pooled", "auroc"), True),
    "pair_iou": ("IoU (per-pair mean)", ("per_pair_mean", "iou"), True),
    "pair_f1": ("F1 (per-pair mean)", ("per_pair_mean", "f1"), True),
    "pair_fp_area": ("FP area (per-pair mean)", ("per_pair_mean", "fp_area"), False),
    "latency_p50": ("Latency p50 (ms)", ("latency_ms_p50",), False),
    "latency_p95": ("Latency p95 (ms)", ("latency_ms_p95",), False),
    "memory": ("Peak memory (MB)", ("peak_memory_mb",), False),
    "params": ("Parameters", ("params",), False),
}
DELTA_COLUMNS = ("pooled_iou", "pooled_f1", "pair_iou", "latency_p50")
CI_OF = {"pair_iou": "iou", "pair_f1": "f1", "pair_fp_area": "fp_area"}


def _dig(row: dict, path: tuple):
    value = row
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)) else None


def detector_colours(detectors) -> dict[str, str]:
    return {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(detectors)}


@dataclass
class LeaderboardState:
    sort: str = "pooled_iou"
    descending: bool = True
    baseline: str = ""

    @classmethod
    def from_query(cls, query, detectors, default_baseline: str) -> "LeaderboardState":
        sort = query.get("sort", "")
        if sort not in LEADERBOARD_COLUMNS and sort != "detector":
            sort = "pooled_iou"
        default_desc = LEADERBOARD_COLUMNS[sort][2] if sort in LEADERBOARD_COLUMNS else False
        direction = query.get("dir", "")
        descending = default_desc if direction not in ("asc", "desc") else direction == "desc"
        baseline = query.get("baseline", "")
        if baseline not in detectors:
            baseline = default_baseline if default_baseline in detectors else (detectors[0] if detectors else "")
        return cls(sort=sort, descending=descending, baseline=baseline)

    def query(self, **changes) -> str:
        state = replace(self, **changes)
        return urlencode({"sort": state.sort, "dir": "desc" if state.descending else "asc", "baseline": state.baseline})

    def sort_link(self, key: str) -> str:
        if key == self.sort:
            return self.query(descending=not self.descending)
        default_desc = LEADERBOARD_COLUMNS[key][2] if key in LEADERBOARD_COLUMNS else False
        return self.query(sort=key, descending=default_desc)


def _delta(value, base, higher_is_better: bool) -> dict | None:
    if value is None or base is None:
        return None
    diff = value - base
    if abs(diff) < 1e-9:
        return {"value": diff, "verdict": "same"}
    verdict = "better" if (diff > 0) == higher_is_better else "worse"
    return {"value": diff, "verdict": verdict}


def _pair_ious(run: Run) -> dict[str, dict[int, float]]:
    ious: dict[str, dict[int, float]] = defaultdict(dict)
    for detector, pair_id, iou in run.results.exclude(iou=None).values_list("detector", "pair_id", "iou"):
        ious[detector][pair_id] = iou
    return ious


def _paired_to_baseline(run: Run, baseline: str, seed: int) -> dict[str, dict]:
    """Paired IoU comparison of each detector against `baseline` (stored when it is the run's own)."""
    leaderboard = run.leaderboard or {}
    if baseline == leaderboard.get("baseline"):
        return {r["detector"]: r.get("comparison") for r in leaderboard.get("detectors", []) if r.get("comparison")}
    from inference.comparison import paired_comparison

    ious = _pair_ious(run)
    base = ious.get(baseline, {})
    comparisons = {}
    for name, values in ious.items():
        shared = sorted(values.keys() & base.keys())
        if name != baseline and shared:
            comparisons[name] = paired_comparison([values[p] for p in shared], [base[p] for p in shared], seed=seed)
    return comparisons


def leaderboard_table(run: Run, state: LeaderboardState) -> dict:
    """Rows for the leaderboard table, sorted per `state`, with deltas to `state.baseline`."""
    leaderboard = run.leaderboard or {}
    source_rows = leaderboard.get("detectors", [])
    colours = detector_colours(run.experiment.detectors)
    by_name = {r["detector"]: r for r in source_rows}
    base_row = by_name.get(state.baseline, {})
    comparisons = _paired_to_baseline(run, state.baseline, run.experiment.seed) if source_rows else {}
    rows = []
    for source in source_rows:
        cells = {}
        for key, (_, path, higher) in LEADERBOARD_COLUMNS.items():
            value = _dig(source, path)
            ci = (source.get("ci") or {}).get(CI_OF[key]) if key in CI_OF else None
            delta = None
            if key in DELTA_COLUMNS and source["detector"] != state.baseline:
                delta = _delta(value, _dig(base_row, path), higher)
            cells[key] = {"value": value, "ci": ci, "delta": delta}
        rows.append(
            {
                "detector": source["detector"],
                "colour": colours.get(source["detector"], OKABE_ITO[-1]),
                "family": source.get("family"),
                "weights": source.get("weights") or "",
                "weights_sha256": source.get("weights_sha256") or "",
                "n_pairs": source.get("n_pairs"),
                "from_cache": source.get("from_cache", 0),
                "memory_kind": source.get("memory_kind"),
                "flops": source.get("flops"),
                "cells": cells,
                "comparison": comparisons.get(source["detector"]),
                "is_baseline": source["detector"] == state.baseline,
            }
        )
    if state.sort == "detector":
        rows.sort(key=lambda r: r["detector"], reverse=state.descending)
    else:
        present = [r for r in rows if r["cells"][state.sort]["value"] is not None]
        missing = [r for r in rows if r["cells"][state.sort]["value"] is None]
        present.sort(key=lambda r: r["cells"][state.sort]["value"], reverse=state.descending)
        rows = present + missing
    columns = [
        {
            "key": key,
            "label": label,
            "higher_is_better": higher,
            "link": state.sort_link(key),
            "active": key == state.sort,
        }
        for key, (label, _, higher) in LEADERBOARD_COLUMNS.items()
    ]
    return {
        "rows": rows,
        "columns": columns,
        "labelled": leaderboard.get("labelled", False),
        "baseline": state.baseline,
        "detector_link": state.sort_link("detector"),
    }


def category_table(run: Run) -> dict:
    """Per category: pooled and per-pair-mean IoU of each detector."""
    categories = (run.leaderboard or {}).get("categories", {})
    detectors = run.experiment.detectors
    rows = []
    for category, per_detector in categories.items():
        cells = []
        for name in detectors:
            summary = per_detector.get(name) or {}
            cells.append(
                {
                    "detector": name,
                    "pooled_iou": _dig(summary, ("pooled", "iou")),
                    "pair_iou": _dig(summary, ("per_pair_mean", "iou")),
                    "n_pairs": summary.get("n_pairs", 0),
                }
            )
        rows.append({"category": category, "cells": cells})
    return {"detectors": detectors, "rows": rows}


def pareto_front(points: list[dict]) -> list[str]:
    """Names of the points no other point beats on both lower latency and higher IoU."""
    front = []
    for p in points:
        dominated = any(
            q is not p
            and q["latency"] <= p["latency"]
            and q["iou"] >= p["iou"]
            and (q["latency"] < p["latency"] or q["iou"] > p["iou"])
            for q in points
        )
        if not dominated:
            front.append(p["detector"])
    return front


def chart_data(run: Run) -> dict:
    """JSON for the scatter (IoU against latency, size = memory, Pareto front) and PR curves."""
    leaderboard = run.leaderboard or {}
    colours = detector_colours(run.experiment.detectors)
    points, curves = [], []
    for row in leaderboard.get("detectors", []):
        iou = _dig(row, ("pooled", "iou"))
        iou_kind = "pooled"
        if iou is None:
            iou, iou_kind = _dig(row, ("per_pair_mean", "iou")), "per-pair mean"
        latency = _dig(row, ("latency_ms_p50",))
        if iou is not None and latency is not None:
            points.append(
                {
                    "detector": row["detector"],
                    "iou": iou,
                    "iou_kind": iou_kind,
                    "latency": latency,
                    "memory": _dig(row, ("peak_memory_mb",)),
                    "colour": colours.get(row["detector"]),
                }
            )
        curve = (row.get("pooled") or {}).get("pr_curve") or {}
        if curve.get("recall"):
            curves.append(
                {
                    "detector": row["detector"],
                    "recall": curve["recall"],
                    "precision": curve["precision"],
                    "colour": colours.get(row["detector"]),
                }
            )
    front = set(pareto_front(points))
    for p in points:
        p["pareto"] = p["detector"] in front
    return {"scatter": points, "pr_curves": curves}


def leaderboard_csv_rows(table: dict) -> list[list]:
    """The leaderboard as shown (sorted, with deltas), as CSV rows with a header."""
    columns = table["columns"]
    header = ["detector", "family", "weights", "n_pairs"]
    for column in columns:
        header.append(column["key"])
        if column["key"] in CI_OF:
            header += [f"{column['key']}_ci_low", f"{column['key']}_ci_high"]
        if column["key"] in DELTA_COLUMNS:
            header.append(f"{column['key']}_delta_vs_{table['baseline']}")
    rows = [header]
    for row in table["rows"]:
        line = [row["detector"], row["family"] or "", row["weights"], row["n_pairs"]]
        for column in columns:
            cell = row["cells"][column["key"]]
            line.append("" if cell["value"] is None else cell["value"])
            if column["key"] in CI_OF:
                line += list(cell["ci"]) if cell["ci"] else ["", ""]
            if column["key"] in DELTA_COLUMNS:
                line.append("" if cell["delta"] is None else cell["delta"]["value"])
        rows.append(line)
    return rows


# --------------------------------------------------------------------------- gallery
GALLERY_SORTS = {
    "worst_iou": "worst IoU first",
    "disagreement": "largest disagreement between two detectors first",
    "fp_area": "largest false-positive area first",
    "name": "pair name",
}
GALLERY_METRICS = ("iou", "f1", "fp_area", "changed_fraction")
GALLERY_PAGE_SIZE = 48


def _float_or_none(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass
class GalleryState:
    sort: str = "worst_iou"
    a: str = ""
    b: str = ""
    category: str = ""
    metric: str = "iou"
    low: float | None = None
    high: float | None = None
    page: int = 1
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_query(cls, query, detectors) -> "GalleryState":
        errors = []
        sort = query.get("sort") or "worst_iou"
        if sort not in GALLERY_SORTS:
            errors.append(f"Unknown sort {sort!r}; showing worst IoU first.")
            sort = "worst_iou"
        a = query.get("a") or (detectors[0] if detectors else "")
        b = query.get("b") or (detectors[1] if len(detectors) > 1 else a)
        for name in (a, b):
            if name and name not in detectors:
                errors.append(f"{name!r} is not a detector of this run.")
        a = a if a in detectors else (detectors[0] if detectors else "")
        b = b if b in detectors else a
        metric = query.get("metric") or "iou"
        if metric not in GALLERY_METRICS:
            errors.append(f"Cannot filter on {metric!r}; use one of {', '.join(GALLERY_METRICS)}.")
            metric = "iou"
        low, high = _float_or_none(query.get("min")), _float_or_none(query.get("max"))
        if (query.get("min") and low is None) or (query.get("max") and high is None):
            errors.append("Metric range bounds must be numbers.")
        try:
            page = max(1, int(query.get("page") or 1))
        except ValueError:
            page = 1
        return cls(sort, a, b, (query.get("category") or "").strip(), metric, low, high, page, errors)

    def params(self, **changes) -> dict:
        state = replace(self, **changes)
        params = {"sort": state.sort, "a": state.a, "b": state.b, "metric": state.metric}
        if state.category:
            params["category"] = state.category
        if state.low is not None:
            params["min"] = state.low
        if state.high is not None:
            params["max"] = state.high
        if state.page > 1:
            params["page"] = state.page
        return params

    def query(self, **changes) -> str:
        return urlencode(self.params(**changes))


def _metric(result, name):
    if result is None:
        return None
    if name in ("iou", "f1"):
        return getattr(result, name)
    return _float_or_none((result.metrics or {}).get(name))


def gallery_items(run: Run, state: GalleryState) -> list[dict]:
    """Every pair of the run with its results per detector, filtered and ordered per `state`."""
    detectors = run.experiment.detectors
    by_pair: dict[int, dict] = defaultdict(dict)
    pairs: dict[int, ImagePair] = {}
    for result in run.results.select_related("pair"):
        by_pair[result.pair_id][result.detector] = result
        pairs[result.pair_id] = result.pair
    items = []
    for pair_id, results in by_pair.items():
        pair = pairs[pair_id]
        if state.category and pair.category != state.category:
            continue
        ious = [r.iou for r in results.values() if r.iou is not None]
        a, b = results.get(state.a), results.get(state.b)
        items.append(
            {
                "pair": pair,
                "results": [results.get(name) for name in detectors],
                "worst_iou": min(ious) if ious else None,
                "disagreement": _disagreement(run.leaderboard, pair_id, a, b),
                "fp_area": max((_metric(r, "fp_area") or 0.0 for r in results.values()), default=None),
                "filter_value": _filter_value(results, state),
            }
        )
    items = [i for i in items if _in_range(i["filter_value"], state)]
    return _ordered(items, state.sort)


def _disagreement(leaderboard: dict, pair_id: int, a, b) -> float | None:
    """1 - IoU of the two detectors' predicted masks on this pair (stored with the leaderboard);
    for runs stored before that, |IoU_a - IoU_b| or the difference in predicted changed area."""
    if a is None or b is None:
        return None
    by_pair = (leaderboard or {}).get("agreement_by_pair", {})
    for key in (f"{a.detector}|{b.detector}", f"{b.detector}|{a.detector}"):
        if str(pair_id) in by_pair.get(key, {}):
            return 1.0 - by_pair[key][str(pair_id)]
    if a.iou is not None and b.iou is not None:
        return abs(a.iou - b.iou)
    fa, fb = _metric(a, "changed_fraction"), _metric(b, "changed_fraction")
    return abs(fa - fb) if fa is not None and fb is not None else None


def _filter_value(results: dict, state: GalleryState):
    """The metric the range filter applies to: detector A's value."""
    return _metric(results.get(state.a), state.metric)


def _in_range(value, state: GalleryState) -> bool:
    if state.low is None and state.high is None:
        return True
    if value is None:
        return False
    return (state.low is None or value >= state.low) and (state.high is None or value <= state.high)


def _ordered(items: list[dict], sort: str) -> list[dict]:
    name = lambda i: i["pair"].name  # noqa: E731
    if sort == "name":
        return sorted(items, key=name)
    if sort == "worst_iou":
        key = lambda i: (i["worst_iou"] is None, i["worst_iou"] or 0.0, name(i))  # noqa: E731
        return sorted(items, key=key)
    field_name = "disagreement" if sort == "disagreement" else "fp_area"
    return sorted(items, key=lambda i: (i[field_name] is None, -(i[field_name] or 0.0), name(i)))


def gallery_categories(run: Run) -> list[str]:
    return sorted(set(run.experiment.dataset.pairs.exclude(category="").values_list("category", flat=True)))


def neighbours(items: list[dict], pair_id: int) -> tuple[ImagePair | None, ImagePair | None, int | None]:
    """Previous and next pair around `pair_id` in a gallery ordering, and its 1-based position."""
    ids = [i["pair"].pk for i in items]
    if pair_id not in ids:
        return None, None, None
    index = ids.index(pair_id)
    previous = items[index - 1]["pair"] if index > 0 else None
    following = items[index + 1]["pair"] if index + 1 < len(items) else None
    return previous, following, index + 1


# --------------------------------------------------------------------------- pair detail
ERROR_LEGEND = (
    ("tp", "change found (true positive)", "#009E73"),
    ("fp", "false alarm (false positive)", "#D55E00"),
    ("fn", "change missed (false negative)", "#56B4E9"),
    ("tn", "no change, none predicted", "#404040"),
    ("ignored", "outside the aligned area, not scored", "#FFFFFF"),
)
PAIR_METRICS = ("iou", "f1", "precision", "recall", "fp_area", "changed_fraction", "auroc", "ap", "object_f1")


def pair_panels(run: Run, pair: ImagePair) -> list[dict]:
    """One panel per detector (experiment order): media URLs and the pair's metrics."""
    colours = detector_colours(run.experiment.detectors)
    results = {r.detector: r for r in run.results.filter(pair=pair)}
    panels = []
    for name in run.experiment.detectors:
        result = results.get(name)
        metrics = (result.metrics or {}) if result else {}
        panels.append(
            {
                "detector": name,
                "colour": colours[name],
                "result": result,
                "heatmap_url": storage.media_url(result.heatmap_key) if result else "",
                "mask_url": storage.media_url(result.mask_key) if result else "",
                "error_map_url": storage.media_url(result.error_map_key) if result else "",
                "metrics": [(m, metrics.get(m)) for m in PAIR_METRICS if isinstance(metrics.get(m), int | float)],
                "latency_ms": result.latency_ms if result else None,
            }
        )
    return panels


def pair_alignment(run: Run, pair: ImagePair):
    return run.alignments.filter(pair=pair).first()


# --------------------------------------------------------------------------- datasets
def dataset_categories(dataset) -> list[dict]:
    from django.db.models import Count

    return list(dataset.pairs.values("category").annotate(n=Count("pk")).order_by("category"))


def estimated_cost_ms(relative_cost: float, pairs: int, input_size: int) -> float:
    """Rough CPU time of one detector over a dataset, scaling the catalogue's 256² figure by area."""
    return relative_cost * pairs * (input_size / 256) ** 2


def consensus_url(run: Run, pair: ImagePair) -> str:
    """The pair's consensus map (share of detectors calling each pixel changed), when the run has one."""
    from experiments.runs.aggregation import consensus_key

    key = consensus_key(run.pk, pair.pk)
    return storage.media_url(key) if len(run.experiment.detectors) > 1 and storage.exists(key) else ""
