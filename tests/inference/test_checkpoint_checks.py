"""Uploaded checkpoints: the zip read from its central directory only, then loaded in the sandbox."""

import io
import struct
import zipfile

import pytest
import torch

from inference.checkpoint_checks import (
    MAX_MEMBERS,
    CheckpointRefused,
    check_checkpoint,
    inspect_checkpoint_bytes,
    state_dict_problems,
)
from tests.hardening.hostile_models import deflate_bomb_checkpoint, fitting_state_dict, rezipped, torch_save_bytes

CAP = 64 * 2**20


def refused(data: bytes, suffix=".pt", cap=CAP) -> str:
    with pytest.raises(CheckpointRefused) as caught:
        inspect_checkpoint_bytes(data, suffix, max_total_bytes=cap)
    return str(caught.value)


def small() -> bytes:
    return torch_save_bytes({"w": torch.arange(4.0)})


def test_a_torch_save_file_passes_the_quick_inspection():
    inspect_checkpoint_bytes(small(), ".pt", max_total_bytes=CAP)
    inspect_checkpoint_bytes(rezipped(small(), compression=zipfile.ZIP_STORED), ".pt", max_total_bytes=CAP)


def test_deflated_members_are_refused_before_anything_is_decompressed():
    assert "is compressed (zip method 8)" in refused(deflate_bomb_checkpoint(64))
    assert "is compressed" in refused(rezipped(small()))


def test_the_declared_total_is_capped():
    top = zipfile.ZipFile(io.BytesIO(small())).namelist()[0].split("/")[0]
    big = rezipped(small(), compression=zipfile.ZIP_STORED, extra={f"{top}/data/9": 2})
    assert "declare 2 MB in all; checkpoints up to 1 MB" in refused(big, cap=2**20)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: rezipped(small(), compression=zipfile.ZIP_STORED, duplicate=True), "appears twice"),
        (lambda: rezipped(small(), compression=zipfile.ZIP_STORED, extra={"../evil": 0}), "a name a checkpoint never"),
        (
            lambda: rezipped(small(), compression=zipfile.ZIP_STORED, extra={"other/x": 0}),
            "one folder holding data.pkl",
        ),
        (lambda: b"\x80\x04plain pickle", "not a zip file"),
        (lambda: small()[:-30], "not a zip file"),
    ],
)
def test_odd_archives_are_refused(make, words):
    assert words in refused(make())


def test_a_central_directory_that_lies_about_its_count_is_refused():
    data = bytearray(small())
    end = data.rfind(b"PK\x05\x06")
    count = struct.unpack_from("<H", data, end + 10)[0]
    struct.pack_into("<HH", data, end + 8, count - 1, count - 1)
    assert "does not match its entry count" in refused(bytes(data))
    struct.pack_into("<HH", data, end + 8, 0xFFFE, 0xFFFE)
    assert "central directory is damaged" in refused(bytes(data))  # more entries said than there are
    record = data.rfind(b"PK\x06\x06")  # torch.save writes zip64 end records: its count counts
    assert record > 0
    struct.pack_into("<HH", data, end + 8, 0xFFFF, 0xFFFF)
    struct.pack_into("<QQ", data, record + 24, MAX_MEMBERS + 1, MAX_MEMBERS + 1)
    assert f"has {MAX_MEMBERS + 1} members; a checkpoint has at most {MAX_MEMBERS}" in refused(bytes(data))


def test_safetensors_headers_must_fit_in_the_file():
    assert "header does not fit" in refused(struct.pack("<Q", 10**9) + b"{}", ".safetensors")
    inspect_checkpoint_bytes(struct.pack("<Q", 2) + b"{}", ".safetensors", max_total_bytes=CAP)


def test_a_state_dict_is_compared_with_the_named_network():
    assert state_dict_problems("siamese-unet", fitting_state_dict()) == []
    problems = state_dict_problems("siamese-unet", {"w": torch.zeros(3, 3)})
    assert problems[0].startswith("missing keys ") and problems[1] == "unexpected keys w"
    state = fitting_state_dict()
    first = next(iter(state))
    state[first] = torch.zeros(1)
    assert state_dict_problems("siamese-unet", state)[0].startswith(f"shape mismatches {first}: file (1,)")


def test_the_sandboxed_check_reports_meta_and_problems_and_refuses_pickles():
    checked = check_checkpoint(torch_save_bytes({"w": torch.zeros(3, 3)}), ".pt", memory_mb=1024, seconds=60,
                               max_total_bytes=CAP)  # fmt: skip
    assert checked["meta"] == {"detector": "siamese-unet"} and len(checked["sha256"]) == 64
    assert "unexpected keys w" in checked["problems"]
    fitting = check_checkpoint(torch_save_bytes(fitting_state_dict()), ".pt", memory_mb=1024, seconds=60,
                               max_total_bytes=CAP)  # fmt: skip
    assert fitting["problems"] == []


def test_a_checkpoint_too_large_for_the_memory_budget_is_refused_in_the_child():
    data = torch_save_bytes({"w": torch.zeros(40 * 2**20 // 4)})  # 40 MB of weights, 16 MB allowed
    with pytest.raises(CheckpointRefused, match="needs more than 16 MB of memory while loading it"):
        check_checkpoint(data, ".pt", memory_mb=16, seconds=60, max_total_bytes=CAP)


CALLER = """
import sys
from pathlib import Path
from inference.checkpoint_checks import check_checkpoint
checked = check_checkpoint(Path(sys.argv[1]).read_bytes(), ".pt", memory_mb=1024, seconds=60, max_total_bytes=2**26)
assert checked["problems"] == [], checked
print("torch imported:", "torch" in sys.modules)
"""


def test_the_caller_of_the_check_never_imports_torch(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "fits.pt"
    path.write_bytes(torch_save_bytes(fitting_state_dict()))
    result = subprocess.run([sys.executable, "-c", CALLER, str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch imported: False" in result.stdout
