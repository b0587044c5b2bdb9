"""The leakage audit of a dataset (at import, on demand, command, API, page) and a run's scored pairs
that a scored checkpoint trained on."""

import io
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db.models import Q
from django.test import Client
from PIL import Image

from experiments.datasets import ingest, leakage
from experiments.datasets import services as dataset_services
from experiments.models import Experiment, LeakageFinding, ModelCheckpoint, Result, Run
from inference.synthetic import CATEGORIES, generate_pair
from tests.api.conftest import token_client
from tests.shared_data import shared_folder

SIZE = 128


def scene(index: int, size: int = SIZE + 16) -> np.ndarray:
    return generate_pair(index, CATEGORIES[index % 3], size=size, seed=2027).a


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def jpg(image: np.ndarray, quality: int = 75) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def levir(pairs: dict[str, tuple[bytes, bytes]]) -> ingest.Source:
    """A LEVIR-CD layout: `pairs` maps "split/name" to A and B's bytes."""
    files = {}
    for key, (a, b) in pairs.items():
        split, name = key.split("/")
        suffix = "jpg" if a[:3] == b"\xff\xd8\xff" else "png"
        files[f"{split}/A/{name}.{suffix}"] = a
        files[f"{split}/B/{name}.{suffix}"] = b
    return ingest.dict_source(files)


def imported(user, pairs, name="leaky"):
    dataset = dataset_services.dataset_create(owner=user, name=name)
    report = ingest.import_checked(dataset=dataset, report=ingest.run_import(levir(pairs)))
    assert report.ok and report.imported == len(pairs), report.text()
    dataset.refresh_from_db()
    return dataset, report


def found(dataset) -> set[tuple[str, str, str]]:
    """(kind, "split/name", "split/name") per finding, the two pairs sorted."""
    rows = LeakageFinding.objects.filter(dataset=dataset).select_related("pair", "other")
    return {(f.kind, *sorted((f"{f.pair.split}/{f.pair.name}", f"{f.other.split}/{f.other.name}"))) for f in rows}


@pytest.fixture
def leaky_pairs():
    """Six distinct scenes in train; copies of three of them in val and test: re-encoded as JPEG
    q75, shifted by 8 px, cropped by 10%; one exact copy; a distinct scene in test."""
    base = {i: scene(i)[8 : 8 + SIZE, 8 : 8 + SIZE] for i in range(7)}
    pairs = {f"train/scene{i}": (png(base[i]), png(scene(i + 50)[:SIZE, :SIZE])) for i in range(6)}
    pairs["val/reencoded"] = (jpg(base[0]), jpg(scene(60)[:SIZE, :SIZE]))
    pairs["test/shifted"] = (png(scene(61)[:SIZE, :SIZE]), png(scene(1)[16 : 16 + SIZE, 0:SIZE]))
    cut = SIZE // 10
    pairs["test/cropped"] = (png(base[2][cut:, cut:]), png(scene(62)[:SIZE, :SIZE]))
    pairs["val/copy"] = (png(base[3]), png(scene(63)[:SIZE, :SIZE]))
    pairs["test/distinct"] = (png(base[6]), png(scene(64)[:SIZE, :SIZE]))
    return pairs


EXPECTED = {
    ("near", "train/scene0", "val/reencoded"),
    ("near", "test/shifted", "train/scene1"),
    ("near", "test/cropped", "train/scene2"),
    ("exact", "train/scene3", "val/copy"),
}


@pytest.mark.django_db
def test_an_import_audits_the_dataset_and_finds_copies_across_splits(user, leaky_pairs):
    dataset, report = imported(user, leaky_pairs)
    assert found(dataset) == EXPECTED
    assert report.leakage["findings"] == 4 and report.leakage["by_kind"] == {"exact": 1, "near": 3, "tile": 0}
    assert dataset.leakage["pairs"] == len(leaky_pairs)
    near = LeakageFinding.objects.get(Q(pair__name="shifted") | Q(other__name="shifted"))
    shifted_first = near.pair.name == "shifted"
    assert near.images == ("B~A" if shifted_first else "A~B")  # test/shifted's B is train/scene1's A
    assert 0 < near.distance <= 12
    assert all(p.a_print and p.b_print for p in dataset.pairs.all())


@pytest.mark.django_db
def test_pairs_of_one_split_are_not_findings(user):
    image = scene(1)[:SIZE, :SIZE]
    dataset, _ = imported(user, {"train/one": (png(image), png(scene(2)[:SIZE, :SIZE])),
                                 "train/two": (jpg(image), png(scene(3)[:SIZE, :SIZE]))})  # fmt: skip
    assert found(dataset) == set() and dataset.leakage["findings"] == 0


@pytest.mark.django_db
def test_the_audit_on_demand_fingerprints_older_pairs_and_replaces_the_findings(user, leaky_pairs):
    dataset, _ = imported(user, leaky_pairs)
    dataset.pairs.update(a_print="", b_print="")  # pairs stored before fingerprints existed
    LeakageFinding.objects.filter(dataset=dataset).delete()
    out = io.StringIO()
    call_command("audit_leakage", "--dataset", str(dataset.pk), stdout=out)
    assert found(dataset) == EXPECTED
    assert "4 findings (exact 1, near 3, tile 0)" in out.getvalue()
    assert not dataset.pairs.filter(a_print="").exists()
    dataset.pairs.get(name="copy").delete()
    summary = leakage.leakage_audit(dataset=dataset)
    assert summary["findings"] == 3 and LeakageFinding.objects.filter(dataset=dataset).count() == 3


@pytest.mark.django_db
def test_overlapping_tiles_of_one_source_are_found_by_their_names(user):
    source = scene(5, size=256)
    tiles = {
        "train/area_0000_0000": source[0:128, 0:128],
        "test/area_0064_0064": source[64:192, 64:192],  # overlaps the first and the third
        "val/area_0128_0128": source[128:256, 128:256],
        "val/area_0000_0128": source[0:128, 128:256],  # beside train's tile, over test's
        "test/photo_2019_05": scene(6)[:128, :128],  # a date, not a tile offset
        "train/photo_2019_06": scene(7)[:128, :128],
    }
    dataset, _ = imported(user, {k: (png(v), png(v[::-1])) for k, v in tiles.items()})
    tile_findings = {f for f in found(dataset) if f[0] == "tile"}
    assert tile_findings == {
        ("tile", "test/area_0064_0064", "train/area_0000_0000"),
        ("tile", "test/area_0064_0064", "val/area_0128_0128"),
        ("tile", "test/area_0064_0064", "val/area_0000_0128"),
    }
    first = LeakageFinding.objects.get(Q(pair__name="area_0000_0000") | Q(other__name="area_0000_0000"))
    assert first.kind == "tile" and first.detail.startswith("rows 64-127, cols 64-127")


# pixelmatch's pair 8 is 8a.png against 5b.png, and 8a shows 5a's gradient triangle: one scene twice.
SHARED_SAME_SCENE = {("exact", "test/pixelmatch_5", "train/pixelmatch_8")}


@pytest.mark.django_db
def test_distinct_scenes_of_the_shared_data_sets_are_not_findings(user):
    """Every pair of the three shared sets in a split of its own round-robin: the only findings are the
    pixelmatch pairs that share an image, and the LEVIR tile inside its full source tile."""
    pairs, splits = {}, ["train", "val", "test"]
    for folder in ("levir_cd_bit_samples", "levir_cd_scm_samples", "pixelmatch_fixtures"):
        root = shared_folder(folder)
        for path in sorted((root / "A").glob("*.png")):
            name = path.stem if folder != "pixelmatch_fixtures" else f"pixelmatch_{path.stem}"
            split = {"5": "test", "8": "train"}.get(path.stem) if folder == "pixelmatch_fixtures" else None
            split = split or splits[len(pairs) % 3]
            pairs[f"{split}/{name}"] = ((root / "A" / path.name).read_bytes(), (root / "B" / path.name).read_bytes())
    pairs = {(k if k != "test/test_102" else "train/test_102"): v for k, v in pairs.items()}
    dataset, _ = imported(user, pairs, name="shared")
    where = {p.name: p.split for p in dataset.pairs.all()}
    tiles = {f for f in found(dataset) if f[0] == "tile"}
    expected_tiles = {
        ("tile", *sorted((f"{where[tile]}/{tile}", f"{where[source]}/{source}")))
        for tile, source in (("test_102_0512_0000", "test_102"), ("test_7_0256_0512", "test_7"))
        if where[tile] != where[source]
    }
    assert tiles == expected_tiles and expected_tiles
    assert found(dataset) - tiles == SHARED_SAME_SCENE


@pytest.mark.django_db
def test_the_api_lists_the_findings_paged_and_audits_on_request(user, other_user, leaky_pairs):
    dataset, _ = imported(user, leaky_pairs)
    api = token_client(user)
    first = api.get(f"/api/v1/datasets/{dataset.pk}/leakage/?page_size=3")
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["summary"]["findings"] == 4 and body["summary"]["stale"] is False
    assert len(body["results"]) == 3 and body["next"]
    rest = api.get(body["next"]).json()["results"]
    rows = {(r["kind"], *sorted((f"{r['pair']['split']}/{r['pair']['name']}",
                                 f"{r['other']['split']}/{r['other']['name']}"))) for r in body["results"] + rest}  # fmt: skip
    assert rows == EXPECTED
    dataset_services.pair_create(dataset=dataset, name="late", a_bytes=png(scene(9)[:SIZE, :SIZE]),
                                 b_bytes=png(scene(4)[8 : 8 + SIZE, 8 : 8 + SIZE]), split="test")  # fmt: skip
    assert api.get(f"/api/v1/datasets/{dataset.pk}/leakage/").json()["summary"]["stale"] is True
    audited = api.post(f"/api/v1/datasets/{dataset.pk}/leakage/")
    assert audited.status_code == 200 and audited.json()["findings"] == 5 and audited.json()["stale"] is False
    assert token_client(other_user).get(f"/api/v1/datasets/{dataset.pk}/leakage/").status_code == 404
    assert token_client(other_user).post(f"/api/v1/datasets/{dataset.pk}/leakage/").status_code == 404


@pytest.mark.django_db
def test_the_dataset_page_shows_the_count_and_the_findings(user, leaky_pairs):
    dataset, _ = imported(user, leaky_pairs)
    client = Client()
    client.force_login(user)
    page = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "<strong>4</strong> findings across splits" in page and "reencoded" in page
    assert client.post(f"/datasets/{dataset.pk}/leakage/audit/").status_code == 302


@pytest.mark.django_db
def test_a_run_lists_scored_pairs_that_its_checkpoint_trained_on(user, leaky_pairs):
    dataset, _ = imported(user, leaky_pairs)
    train = list(dataset.pairs.filter(split="train"))
    checkpoint = ModelCheckpoint.objects.create(
        owner=user, detector="siamese-unet", dataset=dataset, file_key="x", sha256="ab" * 32,
        config={"trained_on": {"train": [p.fingerprint for p in train[:4]], "val": []}},
    )  # fmt: skip
    experiment = Experiment.objects.create(owner=user, dataset=dataset, name="e", detectors=["siamese-unet", "absdiff"])
    run = Run.objects.create(experiment=experiment, state="succeeded")
    for pair in dataset.pairs.exclude(split="train"):
        Result.objects.create(run=run, pair=pair, detector="siamese-unet", weights=checkpoint.provenance)
        Result.objects.create(run=run, pair=pair, detector="absdiff", weights="none")
    assert [p.name for p in train[:4]] == ["scene0", "scene1", "scene2", "scene3"]
    expected = {("reencoded", "scene0"), ("shifted", "scene1"), ("cropped", "scene2"), ("copy", "scene3")}
    body = token_client(user).get(f"/api/v1/runs/{run.pk}/leakage/").json()
    assert {(r["pair_name"], r["trained_pair_name"]) for r in body["results"]} == expected
    assert {r["kind"] for r in body["results"] if r["pair_name"] == "copy"} == {"exact"}
    assert all(r["detectors"] == ["siamese-unet"] for r in body["results"]) and body["count"] == len(expected)
    client = Client()
    client.force_login(user)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="run-leakage"' in page and "scored pair" in page


@pytest.mark.django_db
def test_an_api_import_answers_with_the_audit(user, leaky_pairs):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in levir(leaky_pairs).paths:
            archive.writestr(path, levir(leaky_pairs).read(path))
    dataset = dataset_services.dataset_create(owner=user, name="zipped")
    upload = SimpleUploadedFile("leaky.zip", buffer.getvalue(), content_type="application/zip")
    answer = token_client(user).post(f"/api/v1/datasets/{dataset.pk}/import/", {"file": upload}, format="multipart")
    assert answer.status_code == 201, answer.content
    assert answer.json()["leakage"]["findings"] == 4 and found(dataset) == EXPECTED


@pytest.mark.django_db
def test_a_run_never_names_another_users_training_pairs(user, other_user, leaky_pairs):
    theirs, _ = imported(other_user, leaky_pairs, name="theirs")
    mine, _ = imported(user, {k: v for k, v in leaky_pairs.items() if not k.startswith("train/")}, name="mine")
    sha = "cd" * 32  # the same file uploaded by both: one sha256, two checkpoints
    prints = [p.fingerprint for p in theirs.pairs.filter(split="train")]
    ModelCheckpoint.objects.create(owner=other_user, detector="siamese-unet", dataset=theirs, file_key="x", sha256=sha,
                                   config={"trained_on": {"train": prints, "val": []}})  # fmt: skip
    experiment = Experiment.objects.create(owner=user, dataset=mine, name="e", detectors=["siamese-unet"])
    run = Run.objects.create(experiment=experiment, state="succeeded")
    for pair in mine.pairs.all():
        Result.objects.create(run=run, pair=pair, detector="siamese-unet", weights=f"checkpoint:{sha}")
    assert token_client(user).get(f"/api/v1/runs/{run.pk}/leakage/").json() == {"count": 0, "results": []}
