"""Importing LEVIR-CD folders and zips, and loose files: every rule has a test, and a fatal
problem writes nothing."""

import io
import os
import shutil

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from experiments import storage
from experiments.datasets import ingest
from experiments.datasets import services as dataset_services
from experiments.errors import ServiceError
from experiments.models import Dataset, ImagePair
from tests.conftest import png_bytes
from tests.factories import make_dataset
from tests.hardening.bad_inputs import zip_of as zipped
from tests.shared_data import shared_folder


def jpeg_bytes(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def levir_files(make_pair_bytes, count=3, label=True):
    files = {}
    for i in range(count):
        a, b, mask = make_pair_bytes(seed=i)
        files[f"A/pair{i}.png"] = a
        files[f"B/pair{i}.png"] = b
        if label:
            files[f"label/pair{i}.png"] = mask
    return files


@pytest.mark.django_db
def test_a_levir_folder_with_lists_imports_with_splits(user, tmp_path):
    root = tmp_path / "levir"
    shutil.copytree(shared_folder("levir_cd_bit_samples"), root, ignore=shutil.ignore_patterns("SOURCE.md"))
    (root / "list").mkdir()
    (root / "list" / "train.txt").write_text("test_102_0512_0000.png\ntest_121_0768_0256.png\n")
    (root / "list" / "val.txt").write_text("val_27_0000_0256.png\n")
    report = ingest.check_files(ingest.read_folder(root), category="buildings")
    assert report.ok, report.problems
    assert len(report.pairs) == 11
    splits = {p.name: p.split for p in report.pairs}
    assert splits["test_102_0512_0000"] == "train" and splits["val_27_0000_0256"] == "val"
    dataset = make_dataset(user)
    ingest.import_checked(dataset=dataset, report=report)
    assert dataset.pairs.filter(category="buildings").count() == 11


@pytest.mark.django_db
def test_a_zip_with_a_top_folder_imports(user, make_pair_bytes):
    files = {f"levir/{k}": v for k, v in levir_files(make_pair_bytes).items()}
    report = ingest.check_files(ingest.read_zip(zipped(files)))
    assert report.ok
    assert sorted(p.name for p in report.pairs) == ["pair0", "pair1", "pair2"]


def test_loose_files_are_matched_by_name(make_pair_bytes):
    a, b, label = make_pair_bytes()
    report = ingest.check_files({"x_A.png": a, "x_B.png": b, "x_label.png": label, "y_before.png": a,
                                 "y_after.png": b})  # fmt: skip
    assert report.ok
    names = {p.name: p.has_label for p in report.pairs}
    assert names == {"x": True, "y": False}
    assert any("y: has no label" in w for w in report.warnings)


def test_pairs_without_labels_are_accepted(make_pair_bytes):
    report = ingest.check_files(levir_files(make_pair_bytes, label=False))
    assert report.ok
    assert not any(p.has_label for p in report.pairs)


@pytest.mark.django_db
def test_a_missing_counterpart_is_fatal_and_writes_nothing(user, make_pair_bytes):
    files = levir_files(make_pair_bytes)
    del files["B/pair1.png"]
    report = ingest.check_files(files)
    assert not report.ok
    assert any("pair1: has no B image" in p for p in report.problems)
    dataset = make_dataset(user)
    with pytest.raises(ServiceError, match="Nothing was imported"):
        ingest.import_checked(dataset=dataset, report=report)
    assert not ImagePair.objects.exists()
    assert storage.list_all_keys() == []


def test_an_unreadable_image_is_reported_by_name(make_pair_bytes):
    files = levir_files(make_pair_bytes)
    files["A/pair0.png"] = b"this is text, not a picture"
    report = ingest.check_files(files)
    assert not report.ok
    assert any("pair0" in p and "image_a" in p for p in report.problems)


def test_different_sizes_of_a_and_b_are_reported_and_accepted(make_pair_bytes):
    a, _, _ = make_pair_bytes(size=64)
    _, b, label = make_pair_bytes(size=48)
    report = ingest.check_files({"A/p.png": a, "B/p.png": b, "label/p.png": label})
    assert report.ok
    assert any("A is 64x64 and B is 48x48" in w for w in report.warnings)


def test_noisy_jpeg_labels_are_binarised_with_a_warning(make_pair_bytes):
    a, b, _ = make_pair_bytes()
    mask = np.zeros((48, 48, 3), np.uint8)
    mask[10:24, 10:24] = 255
    report = ingest.check_files({"A/p.png": a, "B/p.png": b, "label/p.jpg": jpeg_bytes(mask)})
    assert report.ok
    assert any("binaris" in w for w in report.warnings)
    checked = dataset_services.pair_check(name="p", a_bytes=a, b_bytes=b, label_bytes=jpeg_bytes(mask))
    stored = np.array(Image.open(io.BytesIO(checked.label_png)))
    assert set(np.unique(stored)) <= {0, 255}
    assert (stored[10:24, 10:24] == 255).mean() > 0.95


def test_zero_one_labels_are_taken_as_they_are(make_pair_bytes):
    a, b, _ = make_pair_bytes()
    mask = np.zeros((48, 48), np.uint8)
    mask[5:9, 5:9] = 1
    report = ingest.check_files({"A/p.png": a, "B/p.png": b, "label/p.png": png_bytes(mask)})
    assert report.ok
    assert not any("binaris" in w for w in report.warnings)
    checked = dataset_services.pair_check(name="p", a_bytes=a, b_bytes=b, label_bytes=png_bytes(mask))
    stored = np.array(Image.open(io.BytesIO(checked.label_png)))
    assert stored.sum() == 16 * 255


def test_a_label_of_another_size_than_b_is_fatal(make_pair_bytes):
    a, b, _ = make_pair_bytes(size=48)
    report = ingest.check_files({"A/p.png": a, "B/p.png": b, "label/p.png": png_bytes(np.zeros((40, 40), np.uint8))})
    assert not report.ok
    assert any("label" in p for p in report.problems)


def test_categories_csv_sets_categories_and_splits(make_pair_bytes):
    files = levir_files(make_pair_bytes)
    files["categories.csv"] = b"name,category,split\npair0,roads,test\npair1,fields,train\n"
    report = ingest.check_files(files, category="default")
    got = {p.name: (p.category, p.split) for p in report.pairs}
    assert got == {"pair0": ("roads", "test"), "pair1": ("fields", "train"), "pair2": ("default", "")}


@pytest.mark.parametrize("bad_name", ["../evil/A/x.png", "/abs/A/x.png", "C:/A/x.png"])
def test_zip_paths_outside_the_archive_are_refused(make_pair_bytes, bad_name):
    files = levir_files(make_pair_bytes)
    files[bad_name] = b"x"
    with pytest.raises(ServiceError, match="outside the archive"):
        ingest.read_zip(zipped(files))


def test_zip_symlinks_are_refused(make_pair_bytes):
    with pytest.raises(ServiceError, match="symbolic link"):
        ingest.read_zip(zipped(levir_files(make_pair_bytes), links=[("A/link.png", "/etc/passwd")]))


def test_a_zip_bomb_is_refused_by_its_compression_ratio():
    with pytest.raises(ServiceError, match="zip bomb"):
        ingest.read_zip(zipped({"A/x.png": b"\0" * 5_000_000}))


def test_a_zip_that_unpacks_too_large_is_refused(settings):
    settings.MAX_UPLOAD_MB = 1  # archives may unpack to 20x the upload limit
    payload = os.urandom(3 * 1024 * 1024)
    with pytest.raises(ServiceError, match="unpacks to more than"):
        ingest.read_zip(zipped({f"A/{i}.png": payload for i in range(8)}))


def test_a_file_that_is_not_a_zip_is_refused():
    with pytest.raises(ServiceError, match="not a readable zip"):
        ingest.read_zip(b"PK but not really")


@pytest.mark.django_db
def test_import_dataset_command_imports_and_prints_a_report(user, tmp_path, make_pair_bytes):
    archive = tmp_path / "set.zip"
    archive.write_bytes(zipped(levir_files(make_pair_bytes)))
    out = io.StringIO()
    call_command("import_dataset", str(archive), "--name", "imported", "--user", user.username,
                 "--category", "toy", stdout=out)  # fmt: skip
    assert "3 pairs checked, 0 problems" in out.getvalue()
    assert Dataset.objects.get(name="imported").pairs.filter(category="toy").count() == 3


@pytest.mark.django_db
def test_import_dataset_command_writes_nothing_on_a_fatal_problem(user, tmp_path, make_pair_bytes):
    folder = tmp_path / "set"
    for path, data in levir_files(make_pair_bytes).items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    (folder / "B" / "pair2.png").unlink()
    out = io.StringIO()
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_dataset", str(folder), "--name", "broken", "--user", user.username, stdout=out)
    assert "PROBLEM: pair2: has no B image" in out.getvalue()
    assert not Dataset.objects.exists()
    assert storage.list_all_keys() == []


@pytest.mark.django_db
def test_import_dataset_dry_run_writes_nothing(user, tmp_path, make_pair_bytes):
    archive = tmp_path / "set.zip"
    archive.write_bytes(zipped(levir_files(make_pair_bytes)))
    call_command("import_dataset", str(archive), "--name", "dry", "--user", user.username, "--dry-run",
                 stdout=io.StringIO())  # fmt: skip
    assert not Dataset.objects.exists()
