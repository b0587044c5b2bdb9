"""The publication export: Markdown and LaTeX tables, SVG/PNG charts and a self-contained HTML report."""

import io
import re
import zipfile
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image

from experiments import storage
from experiments.datasets import services as dataset_services
from experiments.models import RunState
from experiments.predictions import services as prediction_services
from experiments.reporting import figures, report, rethreshold
from experiments.runs import services as run_services
from tests.factories import make_dataset, run_in_process

pytestmark = pytest.mark.django_db

SIZE = 40
UNDERSCORED = "external:my_maps"


@pytest.fixture
def run(user, make_pair_bytes, no_queue):
    """Three labelled pairs scored by `absdiff` and uploaded maps whose name has underscores."""
    from inference.images import load_mask

    dataset = make_dataset(user, name="roads_2024")
    files = {}
    for index in range(3):
        a, b, label = make_pair_bytes(size=SIZE, seed=index, box=(4 + 4 * index, 4, 20 + 4 * index, 30))
        pair = dataset_services.pair_create(dataset=dataset, name=f"p{index}", a_bytes=a, b_bytes=b,
                                            label_bytes=label, category="urban & rural")  # fmt: skip
        truth = load_mask(storage.read_bytes(pair.label))[0].astype(np.float32)
        prob = np.clip(0.6 * truth + np.random.default_rng(index).normal(0.2, 0.2, truth.shape), 0, 1)
        buffer = io.BytesIO()
        np.save(buffer, prob.astype(np.float32))
        files[f"p{index}.npy"] = buffer.getvalue()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    prediction_services.prediction_set_upload(owner=user, dataset=dataset, name="my_maps", kind="probability",
                                              archive=archive.getvalue())  # fmt: skip
    started = run_services.experiment_start(owner=user, dataset=dataset, name="thesis_run #1",
                                            detectors=["absdiff", UNDERSCORED], threshold=0.5, splits=[])  # fmt: skip
    finished = run_in_process(started)
    assert finished.state == RunState.SUCCEEDED, finished.error
    return finished


def test_the_latex_table_escapes_names_and_has_the_thesis_columns(run):
    tex = report.latex(run)
    assert r"external:my\_maps" in tex and "my_maps" not in tex
    assert r"thesis\_run \#1" in tex and r"roads\_2024" in tex
    assert "\\begin{tabular}{lrrrrrrrl}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    header = next(line for line in tex.splitlines() if line.startswith("Model &"))
    assert [c.strip() for c in header.removesuffix("\\\\").split("&")] == [
        report.latex_escape(label) for _, label in report.COLUMNS
    ]
    body = [line for line in tex.splitlines() if line.startswith(("absdiff", "external"))]
    assert len(body) == 2 and all(line.count("&") == len(report.COLUMNS) - 1 for line in body)
    # the pooled F1 in the table is the leaderboard's
    f1 = next(r for r in run.leaderboard["detectors"] if r["detector"] == UNDERSCORED)["pooled"]["f1"]
    assert f"{f1:.3f}" in next(line for line in body if line.startswith("external"))
    assert "not measured here" in next(line for line in body if line.startswith("external"))


def test_the_markdown_table_has_one_row_per_detector_with_intervals(run):
    md = report.markdown(run)
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| Model"))
    assert "F1 (pooled)" in header and "95% CI" in header
    rows = [line for line in lines if line.startswith(("| absdiff", "| external:my_maps"))]
    assert len(rows) == 2
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", rows[0])  # a per-pair mean with its interval
    assert "threshold 0.5" in md and "urban & rural" in md


def test_the_html_report_is_self_contained_and_has_the_reproducibility_record(run):
    html = report.html(run)
    assert not re.search(r"https?://", html)
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)  # every picture inline
    assert html.count("<svg") == 2 and html.count("data:image/png;base64,") >= 10  # 2 panels' worth at least
    assert 'id="environment"' in html
    for key in run.environment:
        assert f"&quot;{key}&quot;" in html
    assert "my_maps" in html and "thesis_run #1" in html
    assert "urban &amp; rural" in html


def test_reports_at_another_threshold_say_so_and_differ(run):
    view, _ = rethreshold.run_at_threshold(run, 0.25)
    md = report.markdown(view)
    assert "threshold 0.25 (recomputed from the stored per-pair score histograms" in md
    assert md != report.markdown(run)
    assert "mean_object_f1" in report.html(view)


def test_charts_as_svg_and_png(run):
    for name in ("scatter", "pr"):
        svg, content_type = figures.chart_file(run, f"{name}.svg")
        assert content_type == "image/svg+xml"
        root = ElementTree.fromstring(svg)
        assert root.tag.endswith("svg")
        assert b"absdiff" in svg
        assert (b"my_maps" in svg) == (name == "pr")  # uploaded maps have no latency: not in the scatter
        png, content_type = figures.chart_file(run, f"{name}.png")
        assert content_type == "image/png"
        image = Image.open(io.BytesIO(png))
        assert image.size == (figures.WIDTH * 2, figures.HEIGHT * 2)
        assert len(set(image.convert("RGB").getdata())) > 5  # something drawn
    pr = figures.chart_file(run, "pr.svg")[0].decode()
    assert pr.count("<circle") >= 2  # each detector's point at the threshold
    assert figures.chart_file(run, "pie.svg") is None and figures.chart_file(run, "pr.gif") is None
