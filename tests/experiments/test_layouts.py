"""The public dataset layouts: each one recognised and read with its splits, duplicates refused,
memory bounded on thousands of pairs, progress reported (CLI and page)."""

import io
import shutil
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from experiments import storage
from experiments.datasets import ingest, layouts
from experiments.errors import ServiceError
from experiments.models import Dataset, ImagePair
from tests.conftest import png_bytes
from tests.factories import make_dataset
from tests.shared_data import shared_folder


def tiny_pair(seed: int, size: int = 16) -> tuple[bytes, bytes, bytes]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    label = np.zeros((size, size), np.uint8)
    label[: size // 2, : size // 2] = 255
    return png_bytes(a), png_bytes(b), png_bytes(label)


def write(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def split_tree(roles: tuple[str, str, str], names: dict[str, list[str]], label_ext: dict[str, str] | None = None,
               image_ext: str = ".png", top: str = "") -> dict[str, bytes]:  # fmt: skip
    """`{top}{split}/{role}/{name}` files for `roles` = (A folder, B folder, label folder)."""
    files = {}
    for split, split_names in names.items():
        for i, name in enumerate(split_names):
            a, b, label = tiny_pair(hash((split, name, i)) % 10_000)
            prefix = f"{top}{split}/" if split else top
            files[f"{prefix}{roles[0]}/{name}{image_ext}"] = a
            files[f"{prefix}{roles[1]}/{name}{image_ext}"] = b
            files[f"{prefix}{roles[2]}/{name}{(label_ext or {}).get(split, '.png')}"] = label
    return files


def planned(source: ingest.Source, layout: str = "auto") -> tuple[str, set[tuple[str, str, bool]]]:
    plan = layouts.plan(source.paths, read=source.read, layout=layout)
    assert not plan.problems, plan.problems
    return plan.layout.key, {(p.split, p.name, p.label is not None) for p in plan.pairs()}


SPLITS = {"train": ["t1", "t2"], "val": ["v1"], "test": ["x1"]}
EXPECTED = {("train", "t1", True), ("train", "t2", True), ("val", "v1", True), ("test", "x1", True)}


# --------------------------------------------------------------------------- each layout
@pytest.mark.parametrize(
    ("files", "layout"),
    [
        (split_tree(("A", "B", "label"), SPLITS, top="LEVIR-CD/"), "levir"),
        (split_tree(("t1", "t2", "mask"), SPLITS, label_ext={"test": ".tif"}, image_ext=".jpg"), "dsifn"),
        (split_tree(("A", "B", "OUT"), SPLITS, top="ChangeDetectionDataset/Real/subset/"), "cdd"),
        (split_tree(("Image1", "Image2", "label"), SPLITS), "s2looking"),
        (split_tree(("before", "after", "change label"), SPLITS), "whu"),
    ],
    ids=["levir", "dsifn-tif-test-masks", "cdd", "s2looking", "whu-before-after"],
)
def test_each_official_layout_is_recognised_with_its_splits(tmp_path, files, layout):
    source = ingest.folder_source(write(tmp_path, files))
    assert planned(source) == (layout, EXPECTED)
    assert planned(source, layout) == (layout, EXPECTED)


def test_whu_tiles_in_a_b_label_folders_read_as_whu_when_asked(tmp_path):
    source = ingest.folder_source(write(tmp_path, split_tree(("A", "B", "label"), {"": ["tile_1", "tile_2"]})))
    assert planned(source, "whu") == ("whu", {("", "tile_1", True), ("", "tile_2", True)})
    assert planned(source)[0] == "levir"  # the same folders: auto calls them LEVIR-CD, read the same way


def test_levir_split_lists_name_the_files_of_each_split(tmp_path):
    files = split_tree(("A", "B", "label"), {"": ["p1", "p2", "p3", "p4"]})
    files["list/train.txt"] = b"p1.png\np2.png\n"
    files["list/val.txt"] = b"p3.png\n"
    files["list/test.txt"] = b"p4.png\n"
    source = ingest.folder_source(write(tmp_path, files))
    assert planned(source) == ("levir-list", {("train", "p1", True), ("train", "p2", True), ("val", "p3", True),
                                              ("test", "p4", True)})  # fmt: skip


def test_a_name_listed_in_two_split_lists_is_refused(tmp_path):
    files = split_tree(("A", "B", "label"), {"": ["p1"]})
    files["list/train.txt"] = b"p1.png\n"
    files["list/test.txt"] = b"p1.png\n"
    source = ingest.folder_source(write(tmp_path, files))
    plan = layouts.plan(source.paths, read=source.read)
    assert any("p1: listed twice" in p for p in plan.problems)


def test_s2looking_reads_label_and_ignores_label1_and_label2_with_a_warning(tmp_path):
    files = split_tree(("Image1", "Image2", "label"), {"train": ["a"]})
    files["train/label1/a.png"] = files["train/label2/a.png"] = png_bytes(np.zeros((16, 16), np.uint8))
    source = ingest.folder_source(write(tmp_path, files))
    plan = layouts.plan(source.paths, read=source.read)
    assert [(p.split, p.label) for p in plan.pairs()] == [("train", "train/label/a.png")]
    assert any("train/label1/" in w and "ignored" in w for w in plan.warnings)


def test_loose_files_are_the_flat_layout():
    a, b, label = tiny_pair(0)
    source = ingest.dict_source({"x_A.png": a, "x_B.png": b, "x_label.png": label, "y_before.png": a, "y_after.png": b})
    assert planned(source) == ("flat", {("", "x", True), ("", "y", False)})


def test_validation_folders_are_the_val_split(tmp_path):
    source = ingest.folder_source(write(tmp_path, split_tree(("A", "B", "label"), {"validation": ["v"]})))
    assert planned(source)[1] == {("val", "v", True)}


def test_an_unrecognised_folder_names_what_was_found_and_the_supported_layouts(tmp_path):
    write(tmp_path, {"images/one.png": tiny_pair(0)[0], "masks/one.png": tiny_pair(0)[2]})
    with pytest.raises(ServiceError) as error:
        layouts.plan(ingest.folder_source(tmp_path).paths, read=lambda p: b"")
    message = error.value.message
    assert "found images/, masks/" in message
    for key in ("levir", "levir-list", "dsifn", "whu", "cdd", "s2looking", "flat"):
        assert f"{key} (" in message


def test_asking_for_a_layout_the_folders_do_not_have_says_so(tmp_path):
    write(tmp_path, split_tree(("A", "B", "label"), {"train": ["p"]}))
    with pytest.raises(ServiceError, match="not in the DSIFN-CD layout: found train/"):
        layouts.plan(ingest.folder_source(tmp_path).paths, read=lambda p: b"", layout="dsifn")


# --------------------------------------------------------------------------- splits kept, duplicates refused
@pytest.mark.django_db
def test_the_same_name_in_two_splits_of_an_official_levir_layout_keeps_both(user, tmp_path):
    files = split_tree(("A", "B", "label"), {"train": ["same", "other"], "test": ["same"]}, top="LEVIR-CD/")
    call_command("import_dataset", str(write(tmp_path, files)), "--name", "levir", "--user", user.username,
                 stdout=io.StringIO(), stderr=io.StringIO())  # fmt: skip
    pairs = {p.split: p for p in Dataset.objects.get(name="levir").pairs.filter(name="same")}
    assert set(pairs) == {"train", "test"}
    assert pairs["train"].image_a != pairs["test"].image_a
    assert storage.read_bytes(pairs["train"].image_a) == files["LEVIR-CD/train/A/same.png"]
    assert storage.read_bytes(pairs["test"].image_a) == files["LEVIR-CD/test/A/same.png"]
    assert ImagePair.objects.count() == 3


@pytest.mark.django_db
def test_real_levir_crops_in_the_official_split_layout_keep_a_name_repeated_across_splits(user, tmp_path):
    samples = shared_folder("levir_cd_bit_samples")
    for role in ("A", "B", "label"):
        for image in sorted((samples / role).glob("*.png")):
            split = image.name.split("_")[0]
            (tmp_path / split / role).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, tmp_path / split / role / image.name)
        # another crop of the same tile under a test pair's name, in train
        shutil.copyfile(samples / role / "test_2_0000_0512.png", tmp_path / "train" / role / "test_2_0000_0000.png")
    call_command("import_dataset", str(tmp_path), "--name", "real", "--user", user.username,
                 stdout=io.StringIO(), stderr=io.StringIO())  # fmt: skip
    dataset = Dataset.objects.get(name="real")
    assert dict(dataset.pairs.values_list("split").annotate(n=__import__("django").db.models.Count("id"))) == {
        "test": 7, "train": 4, "val": 1}  # fmt: skip
    repeated = {p.split: p for p in dataset.pairs.filter(name="test_2_0000_0000")}
    assert set(repeated) == {"train", "test"}
    assert repeated["train"].b_sha256 != repeated["test"].b_sha256


@pytest.mark.django_db
def test_a_duplicate_name_within_a_split_is_refused_and_nothing_is_written(user, tmp_path):
    files = split_tree(("A", "B", "label"), {"val": ["dup"], "validation": ["dup", "fine"]})
    out = io.StringIO()
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_dataset", str(write(tmp_path, files)), "--name", "d", "--user", user.username,
                     stdout=out, stderr=io.StringIO())  # fmt: skip
    assert (
        "dup: two A files in split 'val'" in out.getvalue() and "names must be unique within a split" in out.getvalue()
    )
    assert not Dataset.objects.exists() and not ImagePair.objects.exists()
    assert storage.list_all_keys() == []


@pytest.mark.django_db
def test_importing_a_name_again_into_the_same_split_is_refused_but_another_split_is_fine(user, tmp_path):
    dataset = make_dataset(user)
    files = split_tree(("A", "B", "label"), {"train": ["p"]})
    report = ingest.run_import(ingest.dict_source(files), dataset=dataset, store=True)
    assert report.ok and report.imported == 1
    again = ingest.run_import(ingest.dict_source(files), dataset=dataset, store=True)
    assert not again.ok and any("already has pairs named p in split 'train'" in p for p in again.problems)
    other = ingest.run_import(ingest.dict_source(files), dataset=dataset, store=True, layout="levir")
    assert not other.ok
    test_split = split_tree(("A", "B", "label"), {"test": ["p"]})
    assert ingest.run_import(ingest.dict_source(test_split), dataset=dataset, store=True).imported == 1
    assert sorted(dataset.pairs.values_list("split", flat=True)) == ["test", "train"]


@pytest.mark.django_db
def test_a_bad_pair_late_in_the_stream_leaves_no_rows_and_no_files(user, tmp_path):
    dataset = make_dataset(user)
    files = split_tree(("A", "B", "label"), {"train": [f"p{i:03d}" for i in range(450)]})
    files["train/B/p449.png"] = b"not an image"
    report = ingest.run_import(ingest.dict_source(files), dataset=dataset, store=True)
    assert not report.ok and any("p449" in p for p in report.problems)
    assert not dataset.pairs.exists()  # the first 400 went in by chunks and were rolled back
    assert storage.list_all_keys() == []


@pytest.mark.django_db
def test_the_split_option_fills_pairs_the_layout_leaves_without_one(user, tmp_path):
    files = split_tree(("A", "B", "label"), {"": ["p1", "p2"]})
    call_command("import_dataset", str(write(tmp_path, files)), "--name", "d", "--user", user.username,
                 "--split", "test", stdout=io.StringIO(), stderr=io.StringIO())  # fmt: skip
    assert set(Dataset.objects.get().pairs.values_list("split", flat=True)) == {"test"}


# --------------------------------------------------------------------------- streaming and progress
@pytest.mark.django_db
def test_thousands_of_pairs_import_with_bounded_memory(user, tmp_path, monkeypatch):
    count = 3000
    root = tmp_path / "big"
    total_bytes = 0
    for i in range(count):
        split = ("train", "val", "test")[i % 3]
        for role, data in zip(("A", "B", "label"), tiny_pair(i, size=32), strict=True):
            path = root / split / role / f"p{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            total_bytes += len(data)
    dataset = make_dataset(user)
    ingest.check_files(split_tree(("A", "B", "label"), {"train": ["warm"]}))  # lazy imports happen before measuring
    # Django's storage validates keys with pathlib, which interns every path part into CPython's
    # process-wide table; that table's rebuild is one multi-MB allocation that has nothing to do
    # with this import, so interning (an optimisation only) is off while measuring.
    monkeypatch.setattr(sys, "intern", lambda text: text)
    seen = []
    tracemalloc.start()
    try:
        source = ingest.folder_source(root)
        report = ingest.run_import(
            source,
            dataset=dataset,
            store=True,
            progress=lambda done, total: seen.append(done) if done % 500 == 0 else None,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok and report.imported == count and dataset.pairs.count() == count
    assert report.split_counts == {"train": 1000, "val": 1000, "test": 1000}
    assert seen == [500, 1000, 1500, 2000, 2500, 3000]
    # Holding every pair would take at least the bytes of its files (before any decoded pixels or
    # rows); the stream holds one pair, a chunk of rows and the index of the paths.
    assert total_bytes > 15_000_000
    assert peak < total_bytes / 3, f"peak {peak} bytes while importing {total_bytes} bytes of files"


@pytest.mark.django_db
def test_the_command_shows_a_progress_bar_and_the_report(user, tmp_path, capsys):
    files = split_tree(("A", "B", "label"), {"train": ["a", "b"], "test": ["a"]})
    out = io.StringIO()
    call_command("import_dataset", str(write(tmp_path, files)), "--name", "d", "--user", user.username, stdout=out)
    assert "3 pairs checked, 0 problems" in out.getvalue() and "test: 1, train: 2" in out.getvalue()
    bar = capsys.readouterr().err
    assert "importing" in bar and "3/3" in bar and "pair/s" in bar


def test_run_import_reports_progress_after_each_pair():
    files = split_tree(("A", "B", "label"), {"train": ["a", "b"], "val": ["c"]})
    calls = []
    report = ingest.run_import(ingest.dict_source(files), progress=lambda done, total: calls.append((done, total)))
    assert report.ok and calls == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.django_db
def test_the_upload_page_imports_a_split_layout_zip_and_serves_its_progress(client, user, other_user):
    dataset = make_dataset(user)
    files = split_tree(("A", "B", "label"), {"train": ["same"], "test": ["same", "x"]}, top="LEVIR-CD/")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    buffer.seek(0)
    buffer.name = "levir.zip"
    client.force_login(user)
    report_url = client.post(reverse("experiments:dataset_upload", args=[dataset.pk]), {"files": [buffer]})["Location"]
    page = " ".join(client.get(report_url).content.decode().split())
    assert "3 pairs ready (levir layout: test 2, train 1)" in page
    assert "js/import.js" in page and 'id="import-progress-bar"' in page
    token = report_url.rstrip("/").split("/")[-1]
    assert client.get(report_url + "?progress=1").json() == {"state": "waiting", "done": 0, "total": 0}
    client.post(reverse("experiments:dataset_import_confirm", args=[dataset.pk, token]), {"action": "import"})
    assert sorted(dataset.pairs.values_list("split", "name")) == [("test", "same"), ("test", "x"), ("train", "same")]
    assert client.get(report_url + "?progress=1").json() == {"state": "done", "done": 3, "total": 3}
    client.force_login(other_user)
    assert client.get(report_url + "?progress=1").status_code == 404
