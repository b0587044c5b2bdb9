"""Checking an uploaded checkpoint before it may become anyone's weights (torch only in the sandbox).

`inspect_checkpoint_bytes` runs where the upload arrives and decompresses nothing: a ``.pt``/``.pth``
file must be a ``torch.save`` zip whose members, read from the central directory alone, are all
stored uncompressed (as ``torch.save`` writes them), with safe, distinct names under one folder and
a declared total within the cap; a ``.safetensors`` file must have a header that fits in it.
`check_checkpoint_file` is the sandbox child's part (`check_checkpoint` runs it there, limited):
``torch.load(weights_only=True)`` through `inference.weights.load_checkpoint`, then the tensors'
names and shapes against the network of the detector that ``meta["detector"]`` names, built on the
``meta`` device. Every refusal is a `CheckpointRefused` whose message says what to fix.
"""

from __future__ import annotations

import json
import struct

from inference.sandbox import SandboxLimits, SandboxRefusal, report_stage, run_on_bytes
from inference.weights import SAFETENSORS_MAX_HEADER

MAX_MEMBERS = 65536  # a state dict has one member per tensor storage; far fewer in practice
_END = b"PK\x05\x06"
_END64_LOCATOR = b"PK\x06\x07"
_END64 = b"PK\x06\x06"
_ENTRY = b"PK\x01\x02"
_ENTRY_FORMAT = "<4s6H3L5H2L"  # a central directory entry's fixed 46 bytes
_STORED = 0
_SAVE_HINT = (
    "Only plain tensor checkpoints are accepted: torch.save of {'state_dict', 'meta'} (read with "
    "torch.load(weights_only=True), members stored uncompressed) or .safetensors."
)


class CheckpointRefused(ValueError):
    """The file cannot be used as a checkpoint; the message says why and what to upload instead."""


# --------------------------------------------------------------------------- where it arrives
def inspect_checkpoint_bytes(data: bytes, suffix: str, *, max_total_bytes: int) -> None:
    """Refuse what must not be loaded, reading only the zip's central directory (or the safetensors
    header's length): nothing is decompressed or unpickled here."""
    if suffix == ".safetensors":
        _inspect_safetensors(data)
        return
    members = zip_members(data)
    top = {name.split("/", 1)[0] for name, _, _ in members}
    if len(top) != 1 or f"{next(iter(top))}/data.pkl" not in {name for name, _, _ in members}:
        raise CheckpointRefused(f"not a torch.save archive (one folder holding data.pkl). {_SAVE_HINT}")
    total = sum(size for _, _, size in members)
    if total > max_total_bytes:
        raise CheckpointRefused(
            f"its members declare {total / 2**20:.0f} MB in all; checkpoints up to {max_total_bytes // 2**20} MB "
            "are accepted."
        )


def _inspect_safetensors(data: bytes) -> None:
    length = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else 0
    if not 2 <= length <= min(SAFETENSORS_MAX_HEADER, len(data) - 8) or data[8:9] != b"{":
        raise CheckpointRefused(f"not a .safetensors file (its header does not fit in it). {_SAVE_HINT}")


def zip_members(data: bytes) -> list[tuple[str, int, int]]:
    """``(name, offset, size)`` of every member, from the central directory, each refused unless
    stored uncompressed, unencrypted, inside the file, under a safe name not seen before."""
    count, size, offset = _central_directory(data)
    members, seen, at = [], set(), offset
    for _ in range(count):
        if data[at : at + 4] != _ENTRY or at + 46 > offset + size:
            raise CheckpointRefused(f"the zip's central directory is damaged. {_SAVE_HINT}")
        fields = struct.unpack_from(_ENTRY_FORMAT, data, at)
        flags, method, packed, unpacked = fields[3], fields[4], fields[8], fields[9]
        name_length, extra_length, comment_length, local = fields[10], fields[11], fields[12], fields[16]
        raw = data[at + 46 : at + 46 + name_length]
        name = raw.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        extra = data[at + 46 + name_length : at + 46 + name_length + extra_length]
        unpacked, packed, local = _zip64_sizes(extra, unpacked, packed, local)
        at += 46 + name_length + extra_length + comment_length
        _check_member(name, seen, flags=flags, method=method, packed=packed, unpacked=unpacked)
        if local + 30 + packed > len(data):
            raise CheckpointRefused(f"member {name!r} lies outside the file. {_SAVE_HINT}")
        seen.add(name)
        members.append((name, local, unpacked))
    if at != offset + size:
        raise CheckpointRefused(f"the zip's central directory does not match its entry count. {_SAVE_HINT}")
    return members


def _central_directory(data: bytes) -> tuple[int, int, int]:
    """(entries, size, offset) of the central directory, from the end records (zip64 too)."""
    end = data.rfind(_END, max(0, len(data) - 22 - 65535))
    if end < 0 or len(data) - end < 22:
        raise CheckpointRefused(f"not a torch.save archive (not a zip file). {_SAVE_HINT}")
    count, size, offset = struct.unpack_from("<HLL", data, end + 10)
    if 0xFFFF in (count,) or 0xFFFFFFFF in (size, offset):
        locator = end - 20
        if locator < 0 or data[locator : locator + 4] != _END64_LOCATOR:
            raise CheckpointRefused(f"the zip's end records are damaged. {_SAVE_HINT}")
        record = struct.unpack_from("<Q", data, locator + 8)[0]
        if record + 56 > len(data) or data[record : record + 4] != _END64:
            raise CheckpointRefused(f"the zip's end records are damaged. {_SAVE_HINT}")
        count, size, offset = struct.unpack_from("<QQQ", data, record + 32)
    if count > MAX_MEMBERS:
        raise CheckpointRefused(f"the zip has {count} members; a checkpoint has at most {MAX_MEMBERS}.")
    if offset + size > len(data):
        raise CheckpointRefused(f"the zip's central directory lies outside the file. {_SAVE_HINT}")
    return count, size, offset


def _zip64_sizes(extra: bytes, unpacked: int, packed: int, local: int) -> tuple[int, int, int]:
    """The real sizes and offset when the entry says 0xFFFFFFFF (they are in its zip64 extra field)."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, at + 4))
            unpacked = values.pop(0) if unpacked == 0xFFFFFFFF and values else unpacked
            packed = values.pop(0) if packed == 0xFFFFFFFF and values else packed
            local = values.pop(0) if local == 0xFFFFFFFF and values else local
        at += 4 + length
    return unpacked, packed, local


def _check_member(name: str, seen: set, *, flags: int, method: int, packed: int, unpacked: int) -> None:
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or "\x00" in name or "" in parts or ".." in parts:
        raise CheckpointRefused(f"member {name!r} has a name a checkpoint never has. {_SAVE_HINT}")
    if name in seen:
        raise CheckpointRefused(f"member {name!r} appears twice. {_SAVE_HINT}")
    if flags & 1:
        raise CheckpointRefused(f"member {name!r} is encrypted. {_SAVE_HINT}")
    if method != _STORED or packed != unpacked:
        raise CheckpointRefused(
            f"member {name!r} is compressed (zip method {method}); torch.save stores members uncompressed, "
            f"so save the checkpoint again with torch.save and upload that file. {_SAVE_HINT}"
        )


# --------------------------------------------------------------------------- in the sandbox
def state_dict_problems(name: str, state_dict) -> list[str]:
    """What keeps `state_dict` out of detector `name`'s network (built on the ``meta`` device, so no
    memory): missing and unexpected keys, shape mismatches; [] when it fits or there is no network."""
    import torch

    from inference.registry import get_spec
    from inference.weights import state_dict_mismatches

    factory = get_spec(name).resolve_model_factory()
    if factory is None:
        return []
    with torch.device("meta"):
        expected = factory(None).state_dict()
    return state_dict_mismatches(expected, state_dict)


def check_checkpoint_file(path: str, tensors_path: str | None = None) -> dict:
    """The sandbox child's part: ``{"meta", "sha256", "problems"}``. `problems` lists what does not fit
    the network `meta["detector"]` names (None when it names no known detector). With `tensors_path`, a
    checkpoint that fits is also written there as safetensors (``tensors_sha256``): what runs load, so
    no worker ever unpickles the uploaded file."""
    from inference.registry import UnknownDetectorError
    from inference.weights import WeightsError, load_checkpoint, save_checkpoint

    report_stage("while loading it with torch.load(weights_only=True)")
    try:
        state_dict, meta, sha256 = load_checkpoint(path)
        meta = json.loads(json.dumps(meta))
    except (WeightsError, TypeError, ValueError) as exc:
        raise CheckpointRefused(str(exc).replace(str(path), "the file")) from None
    detector, problems = meta.get("detector"), None
    if isinstance(detector, str):
        report_stage(f"while comparing it with {detector}'s network")
        try:
            problems = state_dict_problems(detector, state_dict)
        except (UnknownDetectorError, KeyError):
            problems = None
    checked = {"meta": meta, "sha256": sha256, "problems": problems}
    if tensors_path and problems == []:
        report_stage("while writing its tensors as safetensors")
        checked["tensors_sha256"] = save_checkpoint(tensors_path, unshared(state_dict), meta)
    return checked


def unshared(state_dict: dict) -> dict:
    """The tensors with each one owning its storage (safetensors refuses tensors that share memory,
    as tied weights or views do): a tensor is copied only when it does not."""
    seen, tensors = set(), {}
    for key, tensor in state_dict.items():
        storage = tensor.untyped_storage()
        whole = tensor.is_contiguous() and tensor.nbytes == storage.nbytes()
        tensors[key] = tensor if whole and storage.data_ptr() not in seen else tensor.clone()
        seen.add(storage.data_ptr())
    return tensors


def check_checkpoint(data: bytes, suffix: str, *, memory_mb: int, seconds: float, max_total_bytes: int,
                     tensors_path: str | None = None) -> dict:  # fmt: skip
    """`inspect_checkpoint_bytes` here, then `check_checkpoint_file` in a sandbox child limited to
    `memory_mb` above its baseline and `seconds` (writing the safetensors copy to `tensors_path`, when
    given); `CheckpointRefused` with the reason."""
    inspect_checkpoint_bytes(data, suffix, max_total_bytes=max_total_bytes)
    limits = SandboxLimits(memory_mb=memory_mb, seconds=seconds, preload=("torch", "inference.weights"))
    arguments = {"tensors_path": tensors_path}
    try:
        return run_on_bytes("inference.checkpoint_checks:check_checkpoint_file", data, arguments, limits, suffix=suffix)
    except SandboxRefusal as exc:
        raise CheckpointRefused(_refusal_reason(exc)) from None


def _refusal_reason(refusal: SandboxRefusal) -> str:
    where = f" {refusal.stage}" if refusal.stage else ""
    if refusal.kind == "memory":
        return f"it needs more than {refusal.limit:g} MB of memory{where}"
    if refusal.kind == "time":
        return f"checking it took longer than {refusal.limit:g} s{where}"
    if refusal.kind == "crashed":
        return f"it {refusal.message}{where}"
    return refusal.message
