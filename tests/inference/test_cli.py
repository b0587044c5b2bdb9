import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "TORCH_HOME": str(tmp_path / "torch-home"),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "inference", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_diff_writes_the_pictures_in_bs_frame(tmp_path, pair_files):
    paths, shape = pair_files
    out = tmp_path / "out"
    result = run_cli(
        "diff", str(paths["a"]), str(paths["b"]), "--detector", "absdiff", "--out", str(out),
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["detector"]["name"] == "absdiff"
    assert "metrics" not in summary
    assert sorted(p.name for p in out.iterdir()) == ["heatmap.png", "mask.png", "overlay.png"]
    with Image.open(out / "mask.png") as mask:
        assert (mask.height, mask.width) == shape


def test_diff_with_a_label_prints_metrics_and_writes_an_error_map(tmp_path, pair_files):
    paths, _ = pair_files
    out = tmp_path / "out"
    result = run_cli(
        "diff", str(paths["a"]), str(paths["b"]), "--detector", "absdiff",
        "--label", str(paths["label"]), "--threshold", "0.2", "--out", str(out),
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    metrics = summary["metrics"]
    assert metrics["iou"] > 0.5
    assert metrics["f1"] > 0.6
    assert metrics["auroc"] > 0.9
    assert metrics["oracle_best_f1"] >= metrics["f1"] and "best_f1" not in metrics  # labelled as the oracle it is
    assert summary["latency_ms"] > 0 and summary["cold_latency_ms"] > 0  # warm median and the first call, apart
    assert (out / "error_map.png").is_file()


def test_diff_explains_missing_weights_and_exits_with_2(tmp_path, pair_files):
    paths, _ = pair_files
    result = run_cli(
        "diff", str(paths["a"]), str(paths["b"]), "--detector", "siamese-mobilenetv3",
        "--out", str(tmp_path / "out"), tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "train_detector siamese-mobilenetv3" in result.stderr
    assert not (tmp_path / "out").exists()


def test_diff_reports_an_unknown_detector(tmp_path, pair_files):
    paths, _ = pair_files
    result = run_cli(
        "diff", str(paths["a"]), str(paths["b"]), "--detector", "nope",
        "--out", str(tmp_path / "out"), tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown detector 'nope'" in result.stderr
    assert "absdiff" in result.stderr


def test_list_prints_every_detector_as_json(tmp_path):
    result = run_cli("list", "--json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["ssim"]["family"] == "classical"
    assert rows["siamese-unet"]["learned"] is True
    assert rows["siamese-unet"]["weights"] == "unavailable"


def test_diff_aligns_and_runs_a_learned_detector_with_random_weights(tmp_path, pair_files):
    paths, _ = pair_files
    result = run_cli(
        "diff", str(paths["a"]), str(paths["b"]), "--detector", "siamese-unet",
        "--weights", "random", "--align", "--out", str(tmp_path / "out"), tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["detector"]["weights"] == "random"
    assert summary["alignment"]["method"] in ("sift", "orb", "identity")
    assert 0.0 <= summary["changed_fraction"] <= 1.0
