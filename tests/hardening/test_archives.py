"""Hostile zips (issue 26, case 4 and its variants): every entry is counted from the central
directory before anything is parsed or unpacked, unpacked sizes are capped per member and in
total, repeated names and names outside the archive are refused, and members are unpacked one
at a time. Each refusal is a 422 that says what to fix, and leaves nothing behind."""

import io
import os
import struct
import tracemalloc
import zipfile

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from experiments import storage
from experiments.datasets import archives, ingest
from experiments.errors import ServiceError
from experiments.models import ImagePair
from tests.factories import make_dataset
from tests.hardening.bad_inputs import GOOD_LEVIR, png
from tests.hardening.bad_inputs import zip_entries as zip_of

GOOD_PAIR = GOOD_LEVIR


def refusal(data) -> str:
    with pytest.raises(ServiceError) as caught:
        ingest.read_zip(data)
    assert caught.value.status == 422
    return caught.value.message


@pytest.fixture(scope="module")
def case_4_zip() -> bytes:
    """The zip of issue 26, case 4: one valid pair and 300,000 directory entries."""
    return zip_of(GOOD_PAIR, directories=300_000)


# --------------------------------------------------------------------------- counting entries
def test_case_4_is_refused_from_the_end_record_before_the_directory_is_parsed(case_4_zip):
    tracemalloc.start()
    try:
        message = refusal(case_4_zip)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "300,003 entries (files and folders)" in message and "at most 20,000" in message
    # zipfile would build 300,003 ZipInfo objects (well over 100 MB) to parse this directory
    assert peak < 2 * 2**20, f"refusing used {peak / 2**20:.1f} MB"


@pytest.mark.django_db
def test_case_4_through_the_api_answers_422_and_writes_nothing(user, case_4_zip):
    dataset = make_dataset(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    before = ImagePair.objects.count(), storage.list_all_keys()
    response = client.post(
        f"/api/v1/datasets/{dataset.pk}/import/", {"file": io.BytesIO(case_4_zip)}, format="multipart"
    )
    assert response.status_code == 422, response.content
    assert "leave empty folders out" in response.json()["error"]["message"]
    assert (ImagePair.objects.count(), storage.list_all_keys()) == before


@pytest.mark.django_db
def test_case_4_through_the_upload_page_answers_400_and_stages_nothing(client, user, case_4_zip):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    client.force_login(user)
    dataset = make_dataset(user)
    response = client.post(reverse("experiments:dataset_upload", args=[dataset.pk]),
                           {"files": [SimpleUploadedFile("case4.zip", case_4_zip)], "category": ""})  # fmt: skip
    assert response.status_code == 400
    assert "at most 20,000 are accepted" in response.content.decode()
    assert storage.list_all_keys() == [] and ImagePair.objects.count() == 0


def with_declared_count(data: bytes, count: int) -> bytes:
    """`data` with its end record claiming `count` entries (the central directory is unchanged)."""
    at = data.rfind(b"PK\x05\x06")
    return data[: at + 8] + struct.pack("<HH", count, count) + data[at + 12 :]


def test_an_end_record_that_under_declares_cannot_hide_entries():
    data = with_declared_count(zip_of(GOOD_PAIR, directories=25_000), 3)
    assert "more than 20,000 entries" in refusal(data)


def test_many_file_entries_are_refused():
    entries = {**GOOD_PAIR, **{f"A/x{i}.txt": b"" for i in range(20_000)}}
    assert "at most 20,000 are accepted" in refusal(zip_of(entries, compression=zipfile.ZIP_STORED))


def test_a_zip64_end_record_is_read(monkeypatch):
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)  # small zips get zip64 end records too
    data = zip_of(GOOD_PAIR)
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    members = ingest.read_zip(data)
    assert sorted(members) == sorted(GOOD_PAIR) and members["B/p.png"] == GOOD_PAIR["B/p.png"]
    many = zip_of(GOOD_PAIR, directories=20_000)
    assert "declares 20,003 entries" in refusal(many)


def test_a_zip64_end_record_cannot_be_forged_to_hide_entries(monkeypatch):
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)
    data = bytearray(zip_of(GOOD_PAIR, directories=25_000))
    at = data.rfind(b"PK\x06\x06")
    data[at + 24 : at + 40] = struct.pack("<QQ", 3, 3)  # entries on this disk, entries in all
    assert "more than 20,000 entries" in refusal(bytes(data))


def test_a_damaged_end_record_is_a_clear_refusal():
    data = zip_of(GOOD_PAIR)
    at = data.rfind(b"PK\x05\x06")
    assert "not a readable zip" in refusal(data[:at] + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, 2**31, 0, 0))
    assert "not a readable zip" in refusal(b"PK\x03\x04 no end record")


# --------------------------------------------------------------------------- unpacked sizes
def test_a_bomb_by_total_ratio_is_refused_though_each_member_looks_fine():
    # each member ~150:1 (under the 200:1 member limit), together far over 100x the archive's size
    member = os.urandom(7_000) + b"\0" * 1_000_000
    data = zip_of({**GOOD_PAIR, **{f"A/big{i}.png": member for i in range(40)}})
    assert all(
        i.file_size / i.compress_size < archives.MAX_COMPRESSION_RATIO
        for i in zipfile.ZipFile(io.BytesIO(data)).infolist()[3:]
    )
    assert "looks like a zip bomb" in refusal(data)


def test_one_huge_member_is_refused(settings):
    settings.MAX_UPLOAD_MB = 1
    message = refusal(zip_of({**GOOD_PAIR, "A/huge.png": os.urandom(2 * 2**20)}, compression=zipfile.ZIP_STORED))
    assert "'A/huge.png' unpacks to more than 1 MB" in message


def with_declared_size(data: bytes, name: bytes, size: int) -> bytes:
    """`data` with `name`'s local and central headers claiming `size` unpacked bytes."""
    out = bytearray(data)
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = out.find(signature)
        while at >= 0:
            if out[at + name_at : at + name_at + len(name)] == name:
                out[at + size_at : at + size_at + 4] = struct.pack("<L", size)
            at = out.find(signature, at + 4)
    return bytes(out)


def test_a_member_larger_than_it_declares_is_never_unpacked_past_its_declared_size():
    data = with_declared_size(zip_of({**GOOD_PAIR, "A/q.png": b"\0" * 50_000}), b"A/q.png", 100)
    members = ingest.read_zip(data)
    with pytest.raises(ServiceError, match=r"A/q\.png"):
        members["A/q.png"]


def test_members_are_unpacked_one_at_a_time():
    members = ingest.read_zip(
        zip_of({f"A/{i}.png": os.urandom(2**20) for i in range(8)}, compression=zipfile.ZIP_STORED)
    )
    tracemalloc.start()
    try:
        sizes = [len(members[path]) for path in members]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sizes == [2**20] * 8
    assert peak < 3 * 2**20, f"reading used {peak / 2**20:.1f} MB"  # one member (and its chunks), not eight


# --------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    "names",
    [
        ["A/p.png", "A/p.png"],
        ["A/p.png", "A//p.png"],
        ["A/p.png", "A/./p.png"],
        ["A/p.png", "a/p.png"],
        ["A/p.png", "A/p.PNG"],
        ["A/p.png", "A\\p.png"],
        ["A/", "a/"],
    ],
    ids=["exact", "double-slash", "dot", "folder-case", "extension-case", "backslash", "folders"],
)
def test_names_that_mean_the_same_file_are_refused(names):
    message = refusal(zip_of([(name, png()) for name in names]))
    assert "name the same file" in message and repr(names[1]) in message


def test_names_differing_in_the_stem_case_are_two_files():
    assert sorted(ingest.read_zip(zip_of({"A/p.png": png(), "A/P.png": png(1)}))) == ["A/P.png", "A/p.png"]


@pytest.mark.parametrize("name", ["../x.png", "A/../../x.png", "/etc/x.png", "\\x.png", "..\\x.png", "C:/x.png"])
def test_names_outside_the_archive_are_refused(name):
    assert "points outside the archive" in refusal(zip_of({**GOOD_PAIR, name: b"x"}))


@pytest.mark.django_db
def test_every_reader_of_uploaded_zips_gets_the_same_checks(user, case_4_zip):
    from experiments.batches import services as batches
    from experiments.predictions.services import PredictionsRejected, prediction_set_upload

    with pytest.raises(ingest.ImportRejected, match="at most 20,000"):
        batches.read_archive(case_4_zip)
    with pytest.raises(PredictionsRejected, match="at most 20,000"):
        prediction_set_upload(owner=user, dataset=make_dataset(user), name="p", kind="mask", archive=case_4_zip)


@pytest.mark.django_db
def test_a_valid_zip_with_folder_entries_still_imports(user):
    dataset = make_dataset(user)
    body = ingest.archive_import(dataset=dataset, data=zip_of(GOOD_PAIR, directories=5))
    assert body["imported"] == 1


# --------------------------------------------------------------------------- against the real stack
def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def current_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_case_4_against_daphne_is_refused_with_bounded_memory(service_env, tmp_path, user, case_4_zip):
    import requests

    from tests.live_services import start_daphne

    server, base = start_daphne(service_env, tmp_path)
    try:
        dataset = make_dataset(user)
        headers = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
        requests.get(f"{base}/api/v1/datasets/", headers=headers, timeout=30)  # warm: imports done, caches filled
        pid = server.process.pid
        idle = current_rss_mib(pid)
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")  # the peak (VmHWM) starts again from now
        response = requests.post(f"{base}/api/v1/datasets/{dataset.pk}/import/", headers=headers,
                                 files={"file": ("case4.zip", case_4_zip, "application/zip")}, timeout=120)  # fmt: skip
        peak = peak_rss_mib(pid)
        assert response.status_code == 422, response.text[:500]
        assert "at most 20,000 are accepted" in response.json()["error"]["message"]
        assert peak - idle < 100, f"the web process grew from {idle:.0f} MiB to {peak:.0f} MiB"
        assert ImagePair.objects.count() == 0 and storage.list_all_keys() == []
        assert requests.get(f"{base}/healthz/", timeout=10).status_code in (200, 503)  # still serving
        assert server.process.poll() is None
    finally:
        server.stop()
