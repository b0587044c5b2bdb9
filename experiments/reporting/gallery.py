"""Looking closely at a run: the pair gallery (orderings, filters) and one pair across all detectors.

Page state (sorting, filters, chosen detectors) is parsed from and written back to the query
string, so a link shows a colleague the same view.
"""

from collections import defaultdict
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from experiments import storage
from experiments.models import ImagePair, Run
from experiments.reporting.leaderboard import detector_colours
from experiments.runs import selectors
from experiments.runs.result_pictures import consensus_key
from inference.numbers import finite_or_none

GALLERY_SORTS = {
    "worst_iou": "worst IoU first",
    "disagreement": "largest disagreement between two detectors first",
    "fp_area": "largest false-positive area first",
    "name": "pair name",
}
GALLERY_METRICS = ("iou", "f1", "fp_area", "changed_fraction")
GALLERY_PAGE_SIZE = 48


def _number(text):
    try:
        return finite_or_none(float(text))
    except (TypeError, ValueError):
        return None


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
        low, high = _number(query.get("min")), _number(query.get("max"))
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
    return _number((result.metrics or {}).get(name))


def gallery_items(run: Run, state: GalleryState) -> list[dict]:
    """Every pair of the run with its results per detector, filtered and ordered per `state`."""
    detectors = run.experiment.detectors
    by_pair: dict[int, dict] = defaultdict(dict)
    pairs: dict[int, ImagePair] = {}
    for result in selectors.run_results(run):
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
    return selectors.run_categories(run)


def neighbours(items: list[dict], pair_id: int) -> tuple[ImagePair | None, ImagePair | None, int | None]:
    """Previous and next pair around `pair_id` in a gallery ordering, and its 1-based position."""
    ids = [i["pair"].pk for i in items]
    if pair_id not in ids:
        return None, None, None
    index = ids.index(pair_id)
    previous = items[index - 1]["pair"] if index > 0 else None
    following = items[index + 1]["pair"] if index + 1 < len(items) else None
    return previous, following, index + 1


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
    results = selectors.pair_results(run, pair)
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
    return selectors.pair_alignment(run, pair)


def consensus_url(run: Run, pair: ImagePair) -> str:
    """The pair's consensus map (share of the finished detectors calling each pixel changed, drawn when
    first shown) when the run has one: two or more detectors finished and computed the pair."""
    if len(selectors.consensus_mask_keys(run, pair.pk)) < 2:
        return ""
    return storage.media_url(consensus_key(run.pk, pair.pk))
