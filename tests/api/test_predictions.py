"""The predictions API: upload a zip of maps for a dataset, list, read, delete; others' datasets are 404."""

import numpy as np
import pytest

from experiments.models import PairPrediction, PredictionSet
from tests.api.conftest import upload, zip_bytes
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


def masks_zip(dataset, skip=(), extra=None) -> bytes:
    """One 8-bit mask PNG per pair of `dataset` (at B's size), minus `skip`, plus `extra`."""
    files = {}
    for index, pair in enumerate(dataset.pairs.order_by("name")):
        if pair.name in skip:
            continue
        mask = np.zeros((pair.b_height, pair.b_width), np.uint8)
        mask[index : index + 10, 5:20] = 255
        files[f"{pair.name}.png"] = png_bytes(mask)
    return zip_bytes({**files, **(extra or {})})


def post(api, dataset, archive: bytes, name="theirs", kind="mask"):
    return api.post(
        f"/api/v1/datasets/{dataset.pk}/predictions/",
        {"archive": upload("maps.zip", archive, "application/zip"), "name": name, "kind": kind},
        format="multipart",
    )


def test_upload_list_read_and_delete(api, labelled_dataset):
    response = post(api, labelled_dataset, masks_zip(labelled_dataset))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["detector"] == "external:theirs" and body["kind"] == "mask" and body["pair_count"] == 3
    listed = api.get(f"/api/v1/datasets/{labelled_dataset.pk}/predictions/").json()["results"]
    assert [s["name"] for s in listed] == ["theirs"]
    detail = f"/api/v1/datasets/{labelled_dataset.pk}/predictions/{body['id']}/"
    assert api.get(detail).json()["archive_sha256"] == body["archive_sha256"]
    detectors = api.get("/api/v1/detectors/").json()
    names = [d["name"] for d in (detectors["results"] if isinstance(detectors, dict) else detectors)]
    assert "external:theirs" in names
    assert api.delete(detail).status_code == 204
    assert not PredictionSet.objects.exists() and api.get(detail).status_code == 404


def test_missing_and_unknown_names_answer_422_with_the_lists(api, labelled_dataset, snapshot_state):
    before = snapshot_state()
    archive = masks_zip(labelled_dataset, skip=("p2",), extra={"p9.png": png_bytes(np.zeros((48, 48), np.uint8))})
    response = post(api, labelled_dataset, archive)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["report"]["missing"] == ["p2"] and error["report"]["unknown"] == ["p9.png"]
    assert "p2" in error["message"] and "p9.png" in error["message"]
    assert snapshot_state() == before and not PairPrediction.objects.exists()


def test_a_map_of_another_size_answers_422_naming_pair_and_sizes(api, labelled_dataset):
    wrong = png_bytes(np.zeros((32, 40), np.uint8))
    response = post(api, labelled_dataset, masks_zip(labelled_dataset, skip=("p1",), extra={"p1.png": wrong}))
    assert response.status_code == 422
    problem = response.json()["error"]["report"]["problems"][0]
    assert "p1" in problem and "40x32" in problem and "48x48" in problem


def test_bad_fields_answer_400(api, labelled_dataset):
    response = post(api, labelled_dataset, masks_zip(labelled_dataset), kind="heatmap")
    assert response.status_code == 400 and "kind" in response.json()["error"]["fields"]
    response = post(api, labelled_dataset, b"not a zip")
    assert response.status_code == 422 and "not a readable zip" in response.json()["error"]["message"]


def test_schema_valid_refusals_answer_422_in_the_declared_shape(api, labelled_dataset):
    empty = post(api, labelled_dataset, b"")  # any bytes match the schema; the archive's reader refuses these
    assert empty.status_code == 422, empty.content
    assert empty.json()["error"]["report"]["problems"] and "archive" in empty.json()["error"]["fields"]
    bad_name = post(api, labelled_dataset, masks_zip(labelled_dataset), name="has space")
    assert bad_name.status_code == 422 and "name" in bad_name.json()["error"]["fields"]
    assert "report" not in bad_name.json()["error"]  # the archive was not read
    assert not PredictionSet.objects.exists() and not PairPrediction.objects.exists()
    schema = api.get("/api/schema/?format=json").json()
    declared = schema["paths"]["/api/v1/datasets/{id}/predictions/"]["post"]["responses"]["422"]
    detail_ref = schema["components"]["schemas"][
        declared["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    ]
    detail = schema["components"]["schemas"][detail_ref["properties"]["error"]["$ref"].split("/")[-1]]
    assert "report" in detail["properties"] and "report" not in detail["required"]


def test_another_users_dataset_and_sets_are_404(api, other_api, labelled_dataset):
    body = post(api, labelled_dataset, masks_zip(labelled_dataset)).json()
    base = f"/api/v1/datasets/{labelled_dataset.pk}/predictions/"
    assert post(other_api, labelled_dataset, masks_zip(labelled_dataset), name="x").status_code == 404
    assert other_api.get(base).status_code == 404
    assert other_api.get(f"{base}{body['id']}/").status_code == 404
    assert other_api.delete(f"{base}{body['id']}/").status_code == 404
    assert PredictionSet.objects.count() == 1
