"""Datasets, pairs and zip imports over the API: happy paths, isolation and every refusal."""

import stat
import zipfile

import pytest

from experiments.models import Dataset, ImagePair
from tests.api.conftest import upload, zip_bytes

pytestmark = pytest.mark.django_db


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == response.status_code
    assert body["error"]["message"]
    return body["error"]


def create_dataset(api, name="d1") -> dict:
    response = api.post("/api/v1/datasets/", {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_dataset_is_created_listed_read_and_deleted(api):
    created = create_dataset(api)
    assert created["pair_count"] == 0 and created["url"].endswith(f"/api/v1/datasets/{created['id']}/")
    listed = api.get("/api/v1/datasets/").json()
    assert [d["id"] for d in listed["results"]] == [created["id"]] and listed["next"] is None
    assert api.get(f"/api/v1/datasets/{created['id']}/").json()["name"] == "d1"
    assert api.delete(f"/api/v1/datasets/{created['id']}/").status_code == 204
    assert not Dataset.objects.exists()


def test_a_duplicate_dataset_name_is_refused_with_a_field_message(api):
    create_dataset(api)
    response = api.post("/api/v1/datasets/", {"name": "d1"}, format="json")
    assert response.status_code == 422
    assert "already have a dataset" in error_of(response)["fields"]["name"][0]


def test_a_missing_name_is_refused_with_the_field_named(api):
    response = api.post("/api/v1/datasets/", {}, format="json")
    assert response.status_code == 400
    assert "name" in error_of(response)["fields"]


def test_anonymous_requests_get_401_in_the_error_shape(client):
    response = client.get("/api/v1/datasets/")
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


def test_another_users_dataset_answers_404_everywhere(api, other_api, make_pair_bytes):
    dataset = create_dataset(api)
    a, b, _ = make_pair_bytes()
    base = f"/api/v1/datasets/{dataset['id']}/"
    assert other_api.get(base).status_code == 404
    assert other_api.delete(base).status_code == 404
    assert other_api.get(base + "pairs/").status_code == 404
    response = other_api.post(base + "pairs/", {"image_a": upload("a.png", a), "image_b": upload("b.png", b)})
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    assert other_api.get("/api/v1/datasets/").json()["results"] == []
    assert Dataset.objects.filter(pk=dataset["id"]).exists() and not ImagePair.objects.exists()


def test_a_pair_upload_stores_the_pair_and_lists_it_with_a_cursor(api, make_pair_bytes):
    dataset = create_dataset(api)
    for i in range(3):
        a, b, label = make_pair_bytes(seed=i)
        files = {
            "image_a": upload("a.png", a),
            "image_b": upload(f"site{i}.png", b),
            "label": upload("l.png", label),
            "category": "roads",
            "split": "test",
        }
        response = api.post(f"/api/v1/datasets/{dataset['id']}/pairs/", files)
        assert response.status_code == 201, response.content
        assert response.json()["name"] == f"site{i}" and response.json()["has_label"]
    page = api.get(f"/api/v1/datasets/{dataset['id']}/pairs/?page_size=2").json()
    assert [p["name"] for p in page["results"]] == ["site0", "site1"]
    rest = api.get(page["next"]).json()
    assert [p["name"] for p in rest["results"]] == ["site2"] and rest["next"] is None
    image = api.get(rest["results"][0]["image_b_url"])
    assert image.status_code == 200 and b"".join(image.streaming_content)[:4] == b"\x89PNG"


def test_a_bad_image_is_refused_naming_the_file_and_nothing_is_stored(api, make_pair_bytes, snapshot_state):
    dataset = create_dataset(api)
    before = snapshot_state()
    a, _, _ = make_pair_bytes()
    response = api.post(
        f"/api/v1/datasets/{dataset['id']}/pairs/",
        {"image_a": upload("a.png", a), "image_b": upload("b.png", b"not an image"), "name": "x"},
    )
    assert response.status_code == 422
    assert "image_b" in error_of(response)["fields"]
    assert snapshot_state() == before


def test_an_oversize_upload_answers_413_and_stores_nothing(api, settings, snapshot_state):
    settings.MAX_UPLOAD_MB = 1
    dataset = create_dataset(api)
    before = snapshot_state()
    big = b"\0" * (2 * 1024 * 1024)
    response = api.post(
        f"/api/v1/datasets/{dataset['id']}/pairs/", {"image_a": upload("a.png", big), "image_b": upload("b.png", big)}
    )
    assert response.status_code == 413
    assert "1 MB" in error_of(response)["message"]
    assert snapshot_state() == before


def test_a_levir_zip_is_imported_with_its_report(api, levir_zip):
    dataset = create_dataset(api)
    response = api.post(f"/api/v1/datasets/{dataset['id']}/import/", {"file": upload("d.zip", levir_zip(3))})
    assert response.status_code == 201, response.content
    report = response.json()
    assert report["ok"] and report["imported"] == 3 and not report["dry_run"]
    assert ImagePair.objects.filter(dataset_id=dataset["id"]).count() == 3


def test_a_dry_run_import_reports_and_writes_nothing(api, levir_zip, snapshot_state):
    dataset = create_dataset(api)
    before = snapshot_state()
    response = api.post(f"/api/v1/datasets/{dataset['id']}/import/?dry_run=1", {"file": upload("d.zip", levir_zip(2))})
    assert response.status_code == 200
    assert response.json()["dry_run"] and [p["name"] for p in response.json()["pairs"]] == ["p0", "p1"]
    assert snapshot_state() == before


def symlink_zip() -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("A/p0.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def bomb_zip() -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("A/p0.png", b"\0" * (4 * 1024 * 1024))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("archive", "expected"),
    [
        (lambda z: z(1, **{"../evil.png": b"x"}), "outside the archive"),
        (lambda z: zip_bytes({"/abs/A/p0.png": b"x"}), "outside the archive"),
        (lambda z: symlink_zip(), "symbolic link"),
        (lambda z: bomb_zip(), "zip bomb"),
        (lambda z: b"PK\x03\x04 definitely not a zip", "not a readable zip"),
        (lambda z: zip_bytes({"A/p0.png": b"junk", "B/p0.png": b"junk"}), "p0"),
        (lambda z: zip_bytes({"A/p0.png": b"x"}), "no B"),
    ],
    ids=["dotdot", "absolute", "symlink", "bomb", "not-a-zip", "bad-images", "missing-b"],
)
def test_a_bad_zip_answers_422_with_the_report_and_writes_nothing(api, levir_zip, snapshot_state, archive, expected):
    dataset = create_dataset(api)
    before = snapshot_state()
    response = api.post(f"/api/v1/datasets/{dataset['id']}/import/", {"file": upload("d.zip", archive(levir_zip))})
    assert response.status_code == 422, response.content
    error = error_of(response)
    assert error["report"]["ok"] is False
    assert any(expected in problem for problem in error["report"]["problems"]), error
    assert snapshot_state() == before


def test_importing_names_that_already_exist_is_refused_without_writing(api, levir_zip, snapshot_state):
    dataset = create_dataset(api)
    api.post(f"/api/v1/datasets/{dataset['id']}/import/", {"file": upload("d.zip", levir_zip(2))})
    before = snapshot_state()
    response = api.post(f"/api/v1/datasets/{dataset['id']}/import/", {"file": upload("d.zip", levir_zip(2))})
    assert response.status_code == 422
    assert "already has pairs" in error_of(response)["message"]
    assert snapshot_state() == before


def test_a_dataset_used_by_an_experiment_cannot_be_deleted(api, labelled_dataset):
    from experiments.runs import services

    services.experiment_create(owner=labelled_dataset.owner, dataset=labelled_dataset, name="e", detectors=["absdiff"])
    response = api.delete(f"/api/v1/datasets/{labelled_dataset.pk}/")
    assert response.status_code == 409
    assert error_of(response)["code"] == "conflict"


def test_an_official_split_layout_zip_keeps_a_name_repeated_across_splits(api, make_pair_bytes):
    dataset = create_dataset(api)
    entries = {}
    for split, seed in (("train", 0), ("test", 1)):
        a, b, label = make_pair_bytes(seed=seed)
        entries.update({f"LEVIR-CD/{split}/A/same.png": a, f"LEVIR-CD/{split}/B/same.png": b,
                        f"LEVIR-CD/{split}/label/same.png": label})  # fmt: skip
    response = api.post(f"/api/v1/datasets/{dataset['id']}/import/", {"file": upload("d.zip", zip_bytes(entries))})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["layout"] == "levir" and body["splits"] == {"test": 1, "train": 1} and body["imported"] == 2
    pairs = ImagePair.objects.filter(dataset_id=dataset["id"], name="same")
    assert sorted(pairs.values_list("split", flat=True)) == ["test", "train"]
    assert len({p.b_sha256 for p in pairs}) == 2


def test_a_duplicate_name_within_a_split_answers_422_and_writes_nothing(api, make_pair_bytes, snapshot_state):
    dataset = create_dataset(api)
    a, b, _ = make_pair_bytes()
    entries = {"train/A/x.png": a, "train/B/x.png": b, "validation/A/x.png": a, "validation/B/x.png": b,
               "val/A/x.png": a, "val/B/x.png": b}  # fmt: skip
    before = snapshot_state()
    response = api.post(f"/api/v1/datasets/{dataset['id']}/import/", {"file": upload("d.zip", zip_bytes(entries))})
    assert response.status_code == 422
    assert any("x: two A files in split 'val'" in p for p in error_of(response)["report"]["problems"])
    assert snapshot_state() == before
