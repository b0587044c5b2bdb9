"""A run's publication export: the thesis's table (extended with F1 and 95% intervals) as Markdown and
LaTeX, and a self-contained HTML report (tables, charts as inline SVG, a few pair panels as inline
PNGs, the reproducibility record) that opens offline: no external URL, no script.

Every figure comes from the leaderboard of the run it is given; pass the view from
`experiments.reporting.rethreshold.run_at_threshold` to report at another threshold (the threshold is
printed in every format).
"""

import base64
import io
import json

from django.template.loader import render_to_string

from experiments.models import Run
from experiments.reporting import figures
from experiments.reporting.leaderboard import category_table, leaderboard_table
from experiments.reporting.thesis_table import NOT_MEASURED, thesis_records
from experiments.runs import result_pictures
from experiments.runs.protocol import protocol_of
from experiments.runs.threshold_rules import validation_source

FORMATS = {"md": "text/markdown; charset=utf-8", "tex": "application/x-tex; charset=utf-8",
           "html": "text/html; charset=utf-8"}  # fmt: skip
COLUMNS = (
    ("detector", "Model"),
    ("rank_group", "Rank group"),
    ("iou", "IoU (pooled)"),
    ("f1", "F1 (pooled)"),
    ("mean_iou", "IoU (per-pair mean, 95% CI)"),
    ("mean_f1", "F1 (per-pair mean, 95% CI)"),
    ("time_ms", "Time per pair (ms, median, batch 1)"),
    ("memory_mib", "Model memory (MiB)"),
    ("weights_source", "Weights"),
)
PANEL_PAIRS = 3
PANEL_SIZE = 192
LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
}  # fmt: skip


def _num(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _with_ci(value, ci, digits=3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else f"{value:.{digits}f}"


def table_rows(run: Run) -> list[dict]:
    """The thesis's rows (`thesis_table.thesis_records`) with pooled F1, the pooled figures' and the per-pair
    means' 95% bootstrap intervals and the rank groups, as text cells in the leaderboard's order."""
    table_rows_by_detector = {row["detector"]: row for row in leaderboard_table(run)["rows"]}
    rows = []
    for record in thesis_records(run):
        cells = table_rows_by_detector[record["detector"]]["cells"]
        if record["failed"]:
            rows.append({"detector": record["detector"], "failed": record["failed"]})
            continue
        measured = record["measured_here"]
        rows.append({
            "detector": record["detector"],
            "rank_group": table_rows_by_detector[record["detector"]]["rank_group"] or "—",
            "iou": _with_ci(record["iou"], cells["pooled_iou"]["ci"]),
            "f1": _with_ci(cells["pooled_f1"]["value"], cells["pooled_f1"]["ci"]),
            "mean_iou": _with_ci(cells["mean_iou"]["value"], cells["mean_iou"]["ci"]),
            "mean_f1": _with_ci(cells["mean_f1"]["value"], cells["mean_f1"]["ci"]),
            "time_ms": _num(record["time_ms"], 1) if measured else NOT_MEASURED,
            "memory_mib": _num(record["memory_mib"], 1) if measured else NOT_MEASURED,
            "weights_source": record["weights_source"] or "—",
            "failed": None,
        })  # fmt: skip
    return rows


def _threshold_line(run: Run) -> str:
    record = (run.leaderboard or {}).get("threshold")
    if record is None and run.experiment.threshold_rule == "validation":
        chosen = ", ".join(
            f"{row['detector']} {row['threshold']:.4g}" for row in leaderboard_table(run)["rows"] if not row["failed"]
        )
        source = validation_source(run.experiment)["label"]
        return f"thresholds F1-optimal per detector on {source}, never scored (threshold rule validation): {chosen}"
    threshold = record["threshold"] if record else run.experiment.threshold
    source = record["source"] if record else "the run's own threshold"
    return f"threshold {threshold:g} ({source}; the run's threshold is {run.experiment.threshold:g})"


def _caption(run: Run) -> str:
    experiment = run.experiment
    return (f"Run {run.pk} of experiment \u201c{experiment.name}\u201d on dataset \u201c{experiment.dataset.name}\u201d, "
            f"{_threshold_line(run)}. Pooled: one confusion matrix over all scored pairs, with 95% pair-level "
            "bootstrap intervals; per-pair means over the pairs whose label has change, with 95% bootstrap "
            "intervals. Rank group: the ranks a detector could hold, from Holm-adjusted paired bootstrap tests "
            "of pooled F1.")  # fmt: skip


def markdown(run: Run) -> str:
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [f"# Run {run.pk}: {cell(run.experiment.name)}", "", _caption(run), ""]
    lines.append("| " + " | ".join(label for _, label in COLUMNS) + " |")
    lines.append(
        "|" + "|".join(":---" if key in ("detector", "weights_source") else "---:" for key, _ in COLUMNS) + "|"
    )
    for row in table_rows(run):
        if row["failed"]:
            lines.append(f"| {cell(row['detector'])} | failed: {cell(row['failed'])} |" + " |" * (len(COLUMNS) - 2))
        else:
            lines.append("| " + " | ".join(cell(row[key]) for key, _ in COLUMNS) + " |")
    categories = category_table(run)
    if categories["rows"]:
        lines += ["", "## IoU per category (pooled · per-pair mean)", ""]
        lines.append("| Category | " + " | ".join(cell(d) for d in categories["detectors"]) + " |")
        lines.append("|:---|" + "---:|" * len(categories["detectors"]))
        for row in categories["rows"]:
            values = " | ".join(f"{_num(c['pooled_iou'])} · {_num(c['mean_iou'])}" for c in row["cells"])
            lines.append(f"| {cell(row['category'])} | {values} |")
    return "\n".join(lines) + "\n"


def latex_escape(text) -> str:
    return "".join(LATEX_SPECIAL.get(character, character) for character in str(text))


def latex(run: Run) -> str:
    """A `table` with a `tabular` (booktabs rules) for the thesis; every text cell escaped."""
    rows = table_rows(run)
    spec = "l" + "r" * (len(COLUMNS) - 2) + "l"
    lines = [
        "% \\usepackage{booktabs}",
        "\\begin{table}[htbp]",
        "\\centering",
        "\\small",
        f"\\caption{{{latex_escape(_caption(run))}}}",
        f"\\label{{tab:run-{run.pk}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(label) for _, label in COLUMNS) + " \\\\",
        "\\midrule",
    ]
    for row in rows:
        if row["failed"]:
            failed = latex_escape(f"failed: {row['failed']}")
            lines.append(f"{latex_escape(row['detector'])} & \\multicolumn{{{len(COLUMNS) - 1}}}{{l}}{{{failed}}} \\\\")
        else:
            lines.append(" & ".join(latex_escape(row[key]) for key, _ in COLUMNS) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _png_data_uri(data: bytes, *, mask: bool = False) -> str:
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image = image.convert("L" if mask else "RGB")
    image.thumbnail((PANEL_SIZE, PANEL_SIZE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def pair_panels(run: Run, count: int = PANEL_PAIRS) -> list[dict]:
    """A few pairs of the best-ranked detector: A, B, label, heatmap and mask as small inline PNGs.
    A picture that cannot be read is left out of its panel (the report still opens)."""
    ranked = [row for row in leaderboard_table(run)["rows"] if not row["failed"]]
    if not ranked:
        return []
    detector = ranked[0]["detector"]
    panels = []
    for result in run.results.filter(detector=detector).select_related("pair").order_by("pair__name")[:count]:
        pair = result.pair
        pictures = []
        for title, key, mask in (("A (before)", pair.image_a, False), ("B (after)", pair.image_b, False),
                                 ("label", pair.label, True), ("heatmap", result.heatmap_key, False),
                                 ("mask", result.mask_key, True)):  # fmt: skip
            if not key:
                continue
            try:
                pictures.append({"title": title, "src": _png_data_uri(result_pictures.read(key), mask=mask)})
            except (OSError, ValueError):  # a missing or unreadable file: the panel shows the others
                continue
        panels.append({"pair": pair.name, "detector": detector, "iou": result.iou, "pictures": pictures})
    return panels


def _inline(svg: str) -> str:
    """An SVG for inlining in HTML, where it needs no namespace declaration."""
    return svg.replace(' xmlns="http://www.w3.org/2000/svg"', "", 1)


def html(run: Run) -> str:
    context = {
        "run": run,
        "experiment": run.experiment,
        "caption": _caption(run),
        "threshold_line": _threshold_line(run),
        "threshold": (run.leaderboard or {}).get("threshold"),
        "columns": COLUMNS,
        "rows": table_rows(run),
        "categories": category_table(run),
        "charts": [
            {"title": title, "svg": _inline(figures.inline_svg(run, name))} for name, title in figures.CHARTS.items()
        ],
        "panels": pair_panels(run),
        "settings": run.experiment.settings_record(),
        "protocol": json.dumps(protocol_of(run), indent=2, sort_keys=True, default=str),
        "environment": json.dumps(run.environment, indent=2, sort_keys=True, default=str),
    }
    return render_to_string("experiments/report/report.html", context)


def render(run: Run, fmt: str) -> tuple[str, str] | None:
    """`(body, content type)` of the report as `md`, `tex` or `html`; None for any other format."""
    if fmt not in FORMATS:
        return None
    body = {"md": markdown, "tex": latex, "html": html}[fmt](run)
    return body, FORMATS[fmt]
