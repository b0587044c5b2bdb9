"""Opening an untrusted zip: every entry counted and every name checked before a byte is unpacked.

`zipfile.ZipFile` builds an object for each entry of the central directory as it opens, so a
small zip of 300,000 empty folder entries costs seconds and a hundred megabytes before any check
could run. `open_zip` therefore reads the End Of Central Directory record (and its zip64 record)
itself, refuses a declared count over `MAX_ZIP_ENTRIES`, then walks the central directory's
fixed-size headers counting entries (folders too: a record that under-declares cannot hide
them), and only then lets `zipfile` parse it. Names are refused when they point outside the
archive, are links, or repeat once normalised (`a//b.png` and `a/./b.png` are `a/b.png`; folder
parts and extensions are compared case-folded, as the layouts match them). Unpacked sizes are
capped per member and in total, relative to the archive's size and absolutely, and members are
read one at a time through a reader that stops at the cap whatever the headers declare.
"""

import io
import stat
import struct
import unicodedata
import zipfile
from collections.abc import Iterator, Mapping

from django.conf import settings

from experiments.errors import ServiceError

MAX_ZIP_ENTRIES = 20_000  # files and folders together
MAX_COMPRESSION_RATIO = 200  # one member
MAX_TOTAL_RATIO = 100  # everything unpacked, against the archive's own size
CHUNK = 1024 * 1024

_EOCD = struct.Struct("<4s4H2LH")  # signature, disk, cd disk, entries here, entries total, cd size, cd offset, comment
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # 46 bytes; name, extra and comment lengths at 10, 11, 12
_MAX_COMMENT = 65535


def max_total_bytes() -> int:
    """What all members of one archive may unpack to at most (20x the upload limit)."""
    return settings.MAX_UPLOAD_MB * 1024 * 1024 * 20


def max_member_bytes() -> int:
    """One member unpacks to no more than a single uploaded file may be."""
    return settings.MAX_UPLOAD_MB * 1024 * 1024


def _refuse(message: str) -> ServiceError:
    return ServiceError(message, field="file", status=422)


def _too_many(count: int, how: str) -> ServiceError:
    return _refuse(f"The zip {how} {count:,} entries (files and folders); at most {MAX_ZIP_ENTRIES:,} are accepted. "
                   "Split it into smaller zips, and leave empty folders out.")  # fmt: skip


# --------------------------------------------------------------------------- the central directory
def _central_directory(fh, size: int) -> tuple[int, int, int]:
    """(declared entry count, offset, size) of the central directory, from the end records."""
    tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
    fh.seek(tail_start)
    tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise _refuse("The file is not a readable zip archive (no end of central directory record).")
    _, _, _, _, count, cd_size, _, _ = _EOCD.unpack_from(tail, at)
    eocd_at = tail_start + at
    end = eocd_at
    locator_at = eocd_at - _ZIP64_LOCATOR.size
    if locator_at >= 0:
        fh.seek(locator_at)
        locator = fh.read(_ZIP64_LOCATOR.size)
        if locator[:4] == b"PK\x06\x07":
            record_at = eocd_at - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size  # where zipfile looks for it too
            fh.seek(max(0, record_at))
            record = fh.read(_ZIP64_EOCD.size)
            if record_at < 0 or len(record) < _ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
                raise _refuse("The zip's zip64 end record is damaged; the file is not a readable zip archive.")
            *_, count, cd_size, _ = _ZIP64_EOCD.unpack(record)
            end = record_at
    if count > MAX_ZIP_ENTRIES:
        raise _too_many(count, "declares")
    start = end - cd_size  # as zipfile finds it, also when data was prepended to the archive
    if cd_size > end or start < 0:
        raise _refuse("The zip's central directory lies outside the file; the file is not a readable zip archive.")
    return count, start, cd_size


def count_entries(fh) -> int:
    """The number of entries in the central directory, walked header by header (never more than
    `MAX_ZIP_ENTRIES` + 1 headers are looked at)."""
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    _, start, cd_size = _central_directory(fh, size)
    fh.seek(start)
    pos, end, count = start, start + cd_size, 0
    while pos + _CENTRAL.size <= end:
        fh.seek(pos)
        header = fh.read(_CENTRAL.size)
        if len(header) < _CENTRAL.size or header[:4] != b"PK\x01\x02":
            break
        fields = _CENTRAL.unpack(header)
        count += 1
        if count > MAX_ZIP_ENTRIES:
            raise _too_many(MAX_ZIP_ENTRIES, "holds more than")
        pos += _CENTRAL.size + fields[10] + fields[11] + fields[12]
    return count


# --------------------------------------------------------------------------- names
def _check_name(info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise _refuse(f"The zip entry {name!r} points outside the archive; remove it.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise _refuse(f"The zip entry {name!r} is a symbolic link; links are not accepted.")


def normalised(name: str) -> str:
    """The path a name means: `\\` as `/`, no empty or `.` parts, Unicode NFC."""
    parts = [p for p in unicodedata.normalize("NFC", name).replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def _collision_key(path: str, is_dir: bool) -> str:
    """Two names with the same key would be read as the same file: folders and extensions compared case-folded."""
    if is_dir:
        return f"{path.casefold()}/"
    folders, _, filename = path.rpartition("/")
    stem, dot, suffix = filename.rpartition(".")
    filename = f"{stem}.{suffix.casefold()}" if dot and stem else filename
    return f"{folders.casefold()}/{filename}"


def _is_hidden(path: str) -> bool:
    parts = path.split("/")
    return parts[-1].startswith(".") or "__MACOSX" in parts


# --------------------------------------------------------------------------- opening and reading
class ZipMembers(Mapping):
    """The files of a checked zip by normalised path; each is unpacked only when it is read."""

    def __init__(self, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]):
        self._archive = archive
        self._members = members

    def __getitem__(self, path: str) -> bytes:
        return read_member(self._archive, self._members[path])

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def close(self) -> None:
        self._archive.close()


def open_zip(data) -> ZipMembers:
    """A zip (bytes or a seekable binary file) checked before anything is unpacked.

    Raises ServiceError (422) naming what is wrong: too many entries, a name outside the archive,
    a link, a repeated name, a member or a total that would unpack too large.
    """
    fh = data if hasattr(data, "read") else io.BytesIO(data)
    try:
        count_entries(fh)
        fh.seek(0)
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, struct.error, EOFError, ValueError):
        raise _refuse("The file is not a readable zip archive.") from None
    fh.seek(0, io.SEEK_END)
    archive_size = max(fh.tell(), 1)
    total_cap = min(max_total_bytes(), MAX_TOTAL_RATIO * archive_size)
    members: dict[str, zipfile.ZipInfo] = {}
    seen: dict[str, str] = {}
    total = 0
    for info in archive.infolist():
        _check_name(info)
        path = normalised(info.filename)
        key = _collision_key(path, info.is_dir())
        if key in seen:
            raise _refuse(f"The zip holds {seen[key]!r} and {info.filename!r}, which name the same file; "
                          "keep one of them.")  # fmt: skip
        seen[key] = info.filename
        if info.is_dir():
            continue
        if info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
            raise _refuse(f"The zip entry {info.filename!r} is compressed {info.file_size // info.compress_size}:1; "
                          f"more than {MAX_COMPRESSION_RATIO}:1 looks like a zip bomb.")  # fmt: skip
        if info.file_size > max_member_bytes():
            raise _refuse(f"The zip entry {info.filename!r} unpacks to more than {max_member_bytes() // 2**20} MB "
                          f"({info.file_size / 2**20:.1f} MB), the most one file may be; make it smaller.")  # fmt: skip
        total += info.file_size
        if total > total_cap:
            raise _refuse(f"The zip unpacks to more than {total_cap // 2**20 or 1} MB ({MAX_TOTAL_RATIO}x its size, "
                          f"at most {max_total_bytes() // 2**20} MB); it looks like a zip bomb or is too large: "
                          "split it up.")  # fmt: skip
        if not _is_hidden(path):
            members[path] = info
    return ZipMembers(archive, members)


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """One member's bytes, unpacked chunk by chunk and stopped at its declared size (itself capped)."""
    limit = min(info.file_size, max_member_bytes())
    chunks, got = [], 0
    try:
        with archive.open(info) as fh:
            while got <= limit:
                chunk = fh.read(min(CHUNK, limit + 1 - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:  # bad CRC, truncated or corrupt data
        raise _refuse(f"The zip entry {info.filename!r} cannot be unpacked ({exc}); the file is damaged.") from None
    if got != info.file_size:
        raise _refuse(f"The zip entry {info.filename!r} is not the size it declares.")
    return b"".join(chunks)
