"""A run's leaderboard as people and programs read it: one set of columns for the page, CSV, JSON,
the API and the command line.

The leaderboard itself is built once when the run ends (`experiments.reporting.aggregation`) and stored
on the run; this module only reads it. `pooled_*` columns come from one confusion matrix over all
pairs, `mean_*` columns average each pair's own value over the pairs whose label has change (with a
95% bootstrap interval where one was computed); `false_alarm_rate` and `no_change_fp_area` describe
the pairs without change. Rows are ranked by pooled F1 (then median latency) unless a `LeaderboardState` sorts
them otherwise; pooled IoU/F1 carry pair-level bootstrap intervals and each row its rank group
(`experiments.reporting.ranking`); deltas compare each detector with the chosen baseline.
"""

from dataclasses import dataclass, replace
from urllib.parse import urlencode

from experiments.claims.selectors import claimed_beside_measured, claims_text
from experiments.models import Run
from experiments.plans.record import made_elsewhere
from experiments.reporting.ranking import rank_key
from experiments.reporting.results import csv_text
from experiments.runs import selectors
from experiments.runs.protocol import protocol_of
from inference.numbers import finite_or_none

# Okabe-Ito, colour-blind safe; detectors take colours in the experiment's order.
MEMORY_KINDS = {
    "cpu_peak_rss": "peak RSS of the whole worker process during inference (CPU)",
    "cuda_peak_allocated": "peak CUDA memory allocated, weights included (GPU)",
}
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    path: tuple
    higher_is_better: bool
    ci: str = ""  # name of the bootstrap interval in the stored row's `ci`, if any
    on_page: bool = False
    delta: bool = False  # shown as a difference to the baseline
    digits: int = 3


COLUMNS = (
    # pooled IoU/F1 intervals: pair-level bootstrap (experiments.reporting.ranking)
    Column("pooled_iou", "IoU (pooled)", ("pooled", "iou"), True, ci="pooled_iou", on_page=True, delta=True),
    Column("pooled_f1", "F1 (pooled)", ("pooled", "f1"), True, ci="pooled_f1", on_page=True, delta=True),
    Column("pooled_precision", "Precision (pooled)", ("pooled", "precision"), True, on_page=True),
    Column("pooled_recall", "Recall (pooled)", ("pooled", "recall"), True, on_page=True),
    Column("pooled_oa", "Overall accuracy (pooled)", ("pooled", "oa"), True),
    Column("pooled_kappa", "Kappa (pooled)", ("pooled", "kappa"), True),
    Column("pooled_auroc", "AUROC (pooled)", ("pooled", "auroc"), True, on_page=True),
    Column("pooled_ap", "AP (pooled)", ("pooled", "ap"), True),
    # proven bounds on |pooled value - exact value| (histogram grouping; inference.metrics.ranking_from_histograms)
    Column("pooled_auroc_bound", "AUROC (pooled): error bound", ("pooled", "auroc_bound"), False, digits=5),
    Column("pooled_ap_bound", "AP (pooled): error bound", ("pooled", "ap_bound"), False, digits=5),
    Column("pooled_oracle_f1", "Oracle F1 (pooled, threshold tuned on these pairs)", ("pooled", "best_f1"), True),
    Column("pooled_oracle_threshold", "Oracle threshold (tuned on these pairs)", ("pooled", "best_f1_threshold"), True),
    Column("mean_iou", "IoU (per-pair mean)", ("per_pair_mean", "iou"), True, ci="iou", on_page=True, delta=True),
    Column("mean_f1", "F1 (per-pair mean)", ("per_pair_mean", "f1"), True, ci="f1", on_page=True),
    Column("mean_precision", "Precision (per-pair mean)", ("per_pair_mean", "precision"), True, ci="precision"),
    Column("mean_recall", "Recall (per-pair mean)", ("per_pair_mean", "recall"), True, ci="recall"),
    Column("mean_auroc", "AUROC (per-pair mean)", ("per_pair_mean", "auroc"), True),
    Column("mean_object_f1", "Object F1 (per-pair mean)", ("per_pair_mean", "object_f1"), True),
    Column("mean_fp_area", "FP area (per-pair mean)", ("per_pair_mean", "fp_area"), False, ci="fp_area", on_page=True),
    # pairs whose label has no change (the mean_* columns leave them out)
    Column(
        "false_alarm_rate",
        "False-alarm rate (no-change pairs)",
        ("no_change", "false_alarm_rate"),
        False,
        ci="false_alarm_rate",
        on_page=True,
    ),
    Column(
        "no_change_fp_area",
        "FP area (no-change pairs, mean)",
        ("no_change", "fp_area"),
        False,
        ci="no_change_fp_area",
        on_page=True,
    ),
    # speed and memory: measured on the pairs computed in this run, never on cached results (n_timed)
    Column(
        "latency_ms_p50", "Latency p50 (ms, batch 1)", ("latency_ms_p50",), False, on_page=True, delta=True, digits=1
    ),
    Column("latency_ms_p95", "Latency p95 (ms, batch 1)", ("latency_ms_p95",), False, on_page=True, digits=1),
    Column("n_timed", "Pairs timed (not from cache)", ("n_timed",), True, digits=0),
    Column("throughput_pairs_per_s", "Throughput (pairs/s)", ("throughput_pairs_per_s",), True, on_page=True, digits=1),
    Column("throughput_batch_size", "Throughput batch size", ("throughput_batch_size",), True, digits=0),
    # the model's own memory (weights + one batch-1 prediction, fresh process) and the whole worker's peak
    Column("model_memory_mib", "Model memory (MiB)", ("model_memory_mib",), False, on_page=True, digits=1),
    Column("peak_memory_mb", "Worker peak RSS (MiB)", ("peak_memory_mb",), False, on_page=True, digits=1),
    Column("params", "Parameters", ("params",), False, on_page=True, digits=0),
)
BY_KEY = {c.key: c for c in COLUMNS}
# Uploaded predictions (family "external") were made elsewhere: their speed and memory cells say so.
NOT_MEASURED = "not measured here"
UNMEASURED_COLUMNS = ("latency_ms_p50", "latency_ms_p95", "throughput_pairs_per_s", "throughput_batch_size",
                      "peak_memory_mb", "model_memory_mib")  # fmt: skip
IDENTITY_FIELDS = ("rank", "rank_group", "detector", "family", "weights", "n_pairs", "n_changed_pairs",
                   "n_no_change_pairs")  # fmt: skip
TRAILING_FIELDS = (
    "threshold", "threshold_source", "input_size", "input_size_source", "precision", "memory_kind", "memory_device",
    "model_memory_kind", "weights_mib", "claimed", "from_cache",
    "trained_on_pairs", "is_baseline", "failed",
)  # fmt: skip
# The paired comparison of per-pair IoU with the baseline (see `inference.statistics.paired_comparison`).
COMPARISON_FIELDS = ("n", "wins", "ties", "losses", "mean_difference", "wilcoxon_p", "wilcoxon_p_holm")
DEFAULT_SORT = "rank"


def _dig(row: dict, path: tuple):
    value = row
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return finite_or_none(value)


def detector_colours(detectors) -> dict[str, str]:
    return {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(detectors)}


@dataclass
class LeaderboardState:
    """How a leaderboard is sorted and which detector is the baseline, read from and written to a query string."""

    sort: str = DEFAULT_SORT
    descending: bool = False
    baseline: str = ""

    @classmethod
    def from_query(cls, query, detectors, default_baseline: str) -> "LeaderboardState":
        sort = query.get("sort", "")
        if sort not in BY_KEY and sort not in ("detector", "rank"):
            sort = DEFAULT_SORT
        default_desc = BY_KEY[sort].higher_is_better if sort in BY_KEY else False
        direction = query.get("dir", "")
        descending = default_desc if direction not in ("asc", "desc") else direction == "desc"
        baseline = query.get("baseline", "")
        if baseline not in detectors:
            baseline = default_baseline if default_baseline in detectors else (detectors[0] if detectors else "")
        return cls(sort=sort, descending=descending, baseline=baseline)

    @classmethod
    def default(cls, run: Run) -> "LeaderboardState":
        return cls.from_query({}, run.experiment.detectors, default_baseline_of(run))

    def query(self, **changes) -> str:
        state = replace(self, **changes)
        return urlencode({"sort": state.sort, "dir": "desc" if state.descending else "asc", "baseline": state.baseline})

    def sort_link(self, key: str) -> str:
        if key == self.sort:
            return self.query(descending=not self.descending)
        return self.query(sort=key, descending=BY_KEY[key].higher_is_better if key in BY_KEY else False)


def default_baseline_of(run: Run) -> str:
    """The baseline a run's leaderboard was built with (the experiment's, else the best classical detector)."""
    return (run.leaderboard or {}).get("baseline") or run.experiment.baseline_detector


def _delta(value, base, higher_is_better: bool) -> dict | None:
    if value is None or base is None:
        return None
    diff = value - base
    if abs(diff) < 1e-9:
        return {"value": diff, "verdict": "same"}
    return {"value": diff, "verdict": "better" if (diff > 0) == higher_is_better else "worse"}


def _paired_to_baseline(run: Run, baseline: str, seed: int) -> dict[str, dict]:
    """Paired IoU comparison of each detector against `baseline` on the pairs whose label has change
    (stored when it is the run's own)."""
    leaderboard = run.leaderboard or {}
    if baseline == leaderboard.get("baseline"):
        return {r["detector"]: r.get("comparison") for r in leaderboard.get("detectors", []) if r.get("comparison")}
    from inference.statistics import compare_with_baseline

    return compare_with_baseline(selectors.pair_ious(run, changed_only=True), baseline, seed=seed)


def leaderboard_table(run: Run, state: LeaderboardState | None = None) -> dict:
    """Rows (one per detector, every column with its value, interval and delta to the baseline), sorted per `state`."""
    state = state or LeaderboardState.default(run)
    leaderboard = run.leaderboard or {}
    stored = leaderboard.get("detectors", [])
    # A detector that failed in a partial run: a row with its reason, no figures, after the ranked ones.
    failed_rows = [r for r in stored if r.get("failed")]
    source_rows = sorted((r for r in stored if not r.get("failed")), key=rank_key)
    colours = detector_colours(run.experiment.detectors)
    base_row = next((r for r in source_rows if r["detector"] == state.baseline), {})
    comparisons = _paired_to_baseline(run, state.baseline, run.experiment.seed) if source_rows else {}
    rows = []
    for rank, source in enumerate(source_rows, start=1):
        is_baseline = source["detector"] == state.baseline
        cells = {}
        for column in COLUMNS:
            value = _dig(source, column.path)
            ci = (source.get("ci") or {}).get(column.ci) if column.ci else None
            delta = _delta(value, _dig(base_row, column.path), column.higher_is_better)
            cells[column.key] = {"value": value, "ci": ci, "delta": None if is_baseline or not column.delta else delta}
            if made_elsewhere(source) and column.key in UNMEASURED_COLUMNS:
                cells[column.key]["not_measured"] = True
        rows.append(
            {
                "rank": rank,
                "rank_group": source.get("rank_group"),
                "rank_tied_with": source.get("rank_tied_with") or [],
                "detector": source["detector"],
                "colour": colours.get(source["detector"], OKABE_ITO[-1]),
                "family": source.get("family"),
                "weights": source.get("weights") or "",
                "weights_sha256": source.get("weights_sha256") or "",
                "n_pairs": source.get("n_pairs"),
                "n_changed_pairs": source.get("n_changed_pairs"),
                "n_no_change_pairs": source.get("n_no_change_pairs"),
                "from_cache": source.get("from_cache", 0),
                "memory_kind": source.get("memory_kind"),
                "memory_device": source.get("memory_device"),
                "memory_label": MEMORY_KINDS.get(source.get("memory_kind"), source.get("memory_kind") or ""),
                "model_memory_kind": source.get("model_memory_kind"),
                "weights_mib": source.get("weights_mib"),
                "n_timed": source.get("n_timed"),
                **row_threshold(run, source),
                "input_size": source.get("input_size"),
                "input_size_source": source.get("input_size_source"),
                "precision": source.get("precision"),
                "trained_on_pairs": source.get("trained_on_pairs"),
                "worker": source.get("worker"),
                "members": source.get("members"),
                "flops": source.get("flops"),
                "cells": cells,
                "comparison": comparisons.get(source["detector"]),
                "is_baseline": is_baseline,
                "failed": None,
            }
        )
    for row in rows:  # claimed figures beside the measured ones (experiments.claims)
        row["claims"] = claimed_beside_measured(run, row)
        row["claimed"] = claims_text(row["claims"])
    rows = _sorted(rows, state) + [_failed_row(source, state, colours) for source in failed_rows]
    columns = [
        {"key": c.key, "label": c.label, "higher_is_better": c.higher_is_better, "digits": c.digits,
         "link": state.sort_link(c.key), "active": c.key == state.sort}
        for c in COLUMNS if c.on_page
    ]  # fmt: skip
    return {
        "rows": rows,
        "columns": columns,
        "labelled": leaderboard.get("labelled", False),
        "ranking": leaderboard.get("ranking"),
        "min_false_alarm_area": next(
            ((r.get("no_change") or {}).get("min_false_alarm_area") for r in source_rows if r.get("no_change")), None
        ),
        "baseline": state.baseline,
        "detector_link": state.sort_link("detector"),
        "rank_link": state.sort_link("rank"),
    }


def _failed_row(source: dict, state: LeaderboardState, colours: dict) -> dict:
    """The table row of a detector that failed: its name and reason, every figure empty."""
    name = source["detector"]
    row = dict.fromkeys((
        "threshold", "threshold_source", "rank", "rank_group", "family", "n_pairs", "n_changed_pairs", "n_no_change_pairs", "memory_kind", "memory_device",
        "n_timed", "input_size", "input_size_source", "precision", "trained_on_pairs", "worker", "members",
        "flops", "comparison", "model_memory_kind", "weights_mib",
    ))  # fmt: skip
    row |= {"claims": [], "claimed": ""}
    cells = {column.key: {"value": None, "ci": None, "delta": None} for column in COLUMNS}
    return row | {
        "detector": name,
        "colour": colours.get(name, OKABE_ITO[-1]),
        "weights": "",
        "weights_sha256": "",
        "from_cache": 0,
        "memory_label": "",
        "rank_tied_with": [],
        "cells": cells,
        "is_baseline": name == state.baseline,
        "failed": source["failed"],
    }


def row_threshold(run: Run, source: dict) -> dict:
    """The threshold a stored row's masks were cut at and where it came from: `fixed`, `validation (N pairs)`,
    or the page's slider (`threshold_rules`, `rethreshold`); rows stored before the rule existed: fixed."""
    if source.get("threshold") is None:
        return {"threshold": run.experiment.threshold, "threshold_source": "fixed"}
    return {"threshold": source["threshold"], "threshold_source": source.get("threshold_source") or "fixed"}


def _sorted(rows: list[dict], state: LeaderboardState) -> list[dict]:
    if state.sort in ("detector", "rank"):
        return sorted(rows, key=lambda r: r[state.sort], reverse=state.descending)
    present = [r for r in rows if r["cells"][state.sort]["value"] is not None]
    missing = [r for r in rows if r["cells"][state.sort]["value"] is None]
    return sorted(present, key=lambda r: r["cells"][state.sort]["value"], reverse=state.descending) + missing


def record_fields() -> list[str]:
    """The flat columns of CSV and JSON rows, in order."""
    fields = list(IDENTITY_FIELDS)
    for column in COLUMNS:
        fields.append(column.key)
        if column.ci:
            fields += [f"{column.key}_ci_low", f"{column.key}_ci_high"]
        if column.delta:
            fields.append(f"{column.key}_delta_vs_baseline")
    fields += [f"vs_baseline_{name}" for name in COMPARISON_FIELDS]
    fields += ["vs_baseline_mean_difference_ci_low", "vs_baseline_mean_difference_ci_high"]
    return [*fields, *TRAILING_FIELDS]


def leaderboard_records(run: Run, state: LeaderboardState | None = None) -> list[dict]:
    """The table as flat rows (CSV, JSON, API, command line), in the table's order."""
    records = []
    for row in leaderboard_table(run, state)["rows"]:
        record = {name: row[name] for name in IDENTITY_FIELDS}
        for column in COLUMNS:
            cell = row["cells"][column.key]
            record[column.key] = cell["value"]
            if column.ci:
                record[f"{column.key}_ci_low"], record[f"{column.key}_ci_high"] = cell["ci"] or (None, None)
            if column.delta:
                record[f"{column.key}_delta_vs_baseline"] = cell["delta"]["value"] if cell["delta"] else None
        comparison = row["comparison"] or {}
        for name in COMPARISON_FIELDS:
            record[f"vs_baseline_{name}"] = comparison.get(name)
        low, high = comparison.get("ci") or (None, None)
        record["vs_baseline_mean_difference_ci_low"], record["vs_baseline_mean_difference_ci_high"] = low, high
        records.append(record | {name: row[name] for name in TRAILING_FIELDS})
    return records


def leaderboard_csv(run: Run, state: LeaderboardState | None = None) -> str:
    return csv_text(record_fields(), [_said_not_measured(r) for r in leaderboard_records(run, state)])


def _said_not_measured(record: dict) -> dict:
    """A CSV row of uploaded predictions says "not measured here" where its speed and memory would be."""
    if not made_elsewhere(record):
        return record
    return record | dict.fromkeys(UNMEASURED_COLUMNS, NOT_MEASURED)


def run_identity(run: Run) -> dict:
    """What a run was, as its exports and comparisons name it: state, experiment, dataset, settings."""
    experiment = run.experiment
    return {
        "state": run.state,
        "experiment": experiment.pk,
        "experiment_name": experiment.name,
        "dataset": experiment.dataset_id,
        "dataset_name": experiment.dataset.name,
        "settings": experiment.settings_record(),
    }


def leaderboard_json(run: Run, state: LeaderboardState | None = None) -> dict:
    """The flat rows, what the run was and the full stored leaderboard (CIs, comparisons, categories)."""
    state = state or LeaderboardState.default(run)
    return {
        "run": run.pk,
        **run_identity(run),
        "environment": run.environment,
        "protocol": protocol_of(run),
        "baseline": state.baseline,
        "columns": record_fields(),
        "rows": leaderboard_records(run, state),
        "leaderboard": run.leaderboard or {},
    }


TEXT_COLUMNS = ("pooled_iou", "pooled_f1", "mean_iou", "latency_ms_p50", "latency_ms_p95", "peak_memory_mb")


def _text(value, digits: int) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(record: dict, key: str) -> str:
    low, high = record[f"{key}_ci_low"], record[f"{key}_ci_high"]
    return f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""


def leaderboard_text(run: Run) -> str:
    """The command line's table: the same rows and column names, a few columns wide."""
    records = leaderboard_records(run)
    header = f"{'detector':<24}{'group':>6}" + "".join(f"{key:>16}" for key in TEXT_COLUMNS)
    header += "  pooled_f1 95% CI   mean_iou 95% CI    threshold (source)            weights"
    lines = [header, "-" * len(header)]
    for r in records:
        if r["failed"]:
            lines.append(f"{r['detector']:<24}  failed: {r['failed']}")
            continue
        cells = "".join(f"{_text(r[key], BY_KEY[key].digits):>16}" for key in TEXT_COLUMNS)
        intervals = f"{_interval(r, 'pooled_f1'):<19}{_interval(r, 'mean_iou'):<19}"
        threshold = f"{_text(r['threshold'], 4)} ({r['threshold_source']})"
        lines.append(
            f"{r['detector']:<24}{r['rank_group'] or '':>6}{cells}  {intervals}{threshold:<30}{r['weights'] or ''}"
        )
    leaderboard = run.leaderboard or {}
    if not leaderboard.get("labelled"):
        lines.append("No labels: IoU/F1 are not defined; see agreement between detectors:")
        lines += [
            f"  {a['a']} vs {a['b']}: mean mask IoU {_text(a['mean_iou'], 3)}" for a in leaderboard.get("agreement", [])
        ]
    return "\n".join(lines)


def category_table(run: Run) -> dict:
    """Per category: pooled and per-pair-mean IoU of each detector."""
    categories = (run.leaderboard or {}).get("categories", {})
    detectors = run.experiment.detectors
    rows = []
    for category, per_detector in categories.items():
        cells = [
            {
                "detector": name,
                "pooled_iou": _dig(per_detector.get(name) or {}, ("pooled", "iou")),
                "mean_iou": _dig(per_detector.get(name) or {}, ("per_pair_mean", "iou")),
                "n_pairs": (per_detector.get(name) or {}).get("n_pairs", 0),
                "n_changed_pairs": (per_detector.get(name) or {}).get("n_changed_pairs"),
            }
            for name in detectors
        ]
        rows.append({"category": category, "cells": cells})
    return {"detectors": detectors, "rows": rows}
