"""Bringing pairs in: LEVIR-CD folders and zips, and many loose files matched by name.

One function serves the CLI (`import_dataset`), the API and the web upload: `check_files` reads
everything and validates it without writing; `import_checked` stores it (all or nothing).

Layouts understood:
- LEVIR-CD: `A/<name>`, `B/<name>`, optional `label/<name>`, optional `list/{train,val,test}.txt`
  and `categories.csv` (`name,category,split`), possibly inside one top folder;
- loose files: `<name>_A.png` / `<name>_B.png` / `<name>_label.png` (also `_before`/`_after`/`_mask`).

Rules: A and B may differ in size (a warning: A is aligned onto B when alignment is on, else
resized to B's size). A label must have B's size. Labels 0/255 or 0/1 are taken as they are;
other values are binarised at 128 with a warning. Any fatal problem means nothing is written.
"""

import csv
import io
import stat
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from django.conf import settings

from experiments.datasets import services
from experiments.errors import ServiceError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
ROLE_FOLDERS = {"a": "a", "b": "b", "label": "label"}
ROLE_SUFFIXES = {
    "_a": "a", "_before": "a", "-a": "a",
    "_b": "b", "_after": "b", "-b": "b",
    "_label": "label", "_mask": "label", "-label": "label",
}  # fmt: skip
MAX_ZIP_ENTRIES = 20_000
MAX_COMPRESSION_RATIO = 200


@dataclass
class ImportReport:
    pairs: list = field(default_factory=list)  # CheckedPair
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.pairs)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "pairs": [
                {"name": p.name, "category": p.category, "split": p.split, "has_label": p.label_png is not None,
                 "a_size": list(p.a_size), "b_size": list(p.b_size), "warnings": p.warnings}
                for p in self.pairs
            ],
            "problems": self.problems,
            "warnings": self.warnings,
        }  # fmt: skip

    def text(self) -> str:
        lines = [f"{len(self.pairs)} pairs checked, {len(self.problems)} problems, {len(self.warnings)} warnings"]
        lines += [f"PROBLEM: {p}" for p in self.problems]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# --------------------------------------------------------------------------- reading sources
def max_archive_bytes() -> int:
    return settings.MAX_UPLOAD_MB * 1024 * 1024 * 20


def read_zip(data) -> dict[str, bytes]:
    """Files of a zip by path, refusing traversal, absolute paths, links and bombs."""
    try:
        archive = zipfile.ZipFile(data if hasattr(data, "read") else io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ServiceError("The file is not a readable zip archive.", field="file") from None
    entries = [info for info in archive.infolist() if not info.is_dir()]
    if len(entries) > MAX_ZIP_ENTRIES:
        raise ServiceError(f"The zip holds {len(entries)} files; at most {MAX_ZIP_ENTRIES} are accepted.")
    total = 0
    files = {}
    for info in entries:
        path = PurePosixPath(info.filename)
        if info.filename.startswith(("/", "\\")) or path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
            raise ServiceError(f"The zip entry {info.filename!r} points outside the archive; remove it.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ServiceError(f"The zip entry {info.filename!r} is a symbolic link; links are not accepted.")
        if info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
            raise ServiceError(f"The zip entry {info.filename!r} is compressed {info.file_size // info.compress_size}:1; "
                               f"more than {MAX_COMPRESSION_RATIO}:1 looks like a zip bomb.")  # fmt: skip
        total += info.file_size
        if total > max_archive_bytes():
            raise ServiceError(f"The zip unpacks to more than {max_archive_bytes() // 2**20} MB; split it up.")
        if path.name.startswith(".") or "__MACOSX" in path.parts:
            continue
        with archive.open(info) as fh:
            content = fh.read(info.file_size + 1)
        if len(content) != info.file_size:
            raise ServiceError(f"The zip entry {info.filename!r} is not the size it declares.")
        files[str(path)] = content
    return files


def read_folder(path: Path) -> dict[str, bytes]:
    root = Path(path)
    if not root.is_dir():
        raise ServiceError(f"{root} is not a folder.")
    files = {}
    for item in sorted(root.rglob("*")):
        if item.is_symlink():
            raise ServiceError(f"{item} is a symbolic link; links are not followed.")
        if item.is_file() and not item.name.startswith("."):
            files[str(item.relative_to(root).as_posix())] = item.read_bytes()
    return files


def read_source(path: Path) -> dict[str, bytes]:
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            return read_zip(fh)
    return read_folder(path)


# --------------------------------------------------------------------------- matching names
def _strip_top_folder(files: dict[str, bytes]) -> dict[str, bytes]:
    tops = {PurePosixPath(p).parts[0] for p in files}
    if len(tops) == 1 and all(len(PurePosixPath(p).parts) > 2 for p in files):
        return {str(PurePosixPath(*PurePosixPath(p).parts[1:])): v for p, v in files.items()}
    return files


def _role_and_name(path: str) -> tuple[str, str] | None:
    parts = PurePosixPath(path).parts
    file = PurePosixPath(parts[-1])
    if file.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    if len(parts) >= 2 and parts[-2].lower() in ROLE_FOLDERS:
        return ROLE_FOLDERS[parts[-2].lower()], file.stem
    stem = file.stem
    for suffix, role in ROLE_SUFFIXES.items():
        if stem.lower().endswith(suffix):
            return role, stem[: -len(suffix)]
    return None


def group_by_pair(files: dict[str, bytes]) -> tuple[dict[str, dict[str, bytes]], list[str]]:
    """{pair name: {"a": bytes, "b": bytes, "label": bytes}} and the paths that fit no role."""
    groups: dict[str, dict[str, bytes]] = defaultdict(dict)
    ignored = []
    for path, content in files.items():
        found = _role_and_name(path)
        if found is None:
            ignored.append(path)
            continue
        role, name = found
        groups[name][role] = content
    return dict(groups), ignored


def _splits(files: dict[str, bytes]) -> dict[str, str]:
    splits = {}
    for split in ("train", "val", "test"):
        content = files.get(f"list/{split}.txt")
        for line in (content or b"").decode(errors="replace").splitlines():
            if line.strip():
                splits[PurePosixPath(line.strip()).stem] = split
    return splits


def _categories(files: dict[str, bytes]) -> dict[str, tuple[str, str]]:
    content = files.get("categories.csv")
    if not content:
        return {}
    rows = csv.DictReader(io.StringIO(content.decode(errors="replace")))
    return {PurePosixPath(r["name"]).stem: (r.get("category", ""), r.get("split", "")) for r in rows if r.get("name")}


# --------------------------------------------------------------------------- checking
def check_files(files: dict[str, bytes], *, category: str = "") -> ImportReport:
    """Validate everything, write nothing."""
    files = _strip_top_folder(files)
    groups, ignored = group_by_pair(files)
    splits, categories = _splits(files), _categories(files)
    report = ImportReport()
    known_extras = {"list/train.txt", "list/val.txt", "list/test.txt", "categories.csv"}
    for path in ignored:
        if path not in known_extras and not path.lower().endswith((".md", ".txt", ".csv")):
            report.warnings.append(f"{path}: not an A, B or label image; ignored.")
    if not groups:
        report.problems.append("No image pairs found: expected A/, B/ (and label/) folders or files named "
                               "<name>_A.png, <name>_B.png, <name>_label.png.")  # fmt: skip
    any_label = any("label" in g for g in groups.values())
    for name in sorted(groups):
        roles = groups[name]
        missing = [r.upper() for r in ("a", "b") if r not in roles]
        if missing:
            report.problems.append(f"{name}: has no {' or '.join(missing)} image to pair with.")
            continue
        if any_label and "label" not in roles:
            report.warnings.append(f"{name}: has no label; it is kept as a pair without ground truth.")
        pair_category, pair_split = categories.get(name, (category, ""))
        try:
            checked = services.pair_check(
                name=name, a_bytes=roles["a"], b_bytes=roles["b"], label_bytes=roles.get("label"),
                category=pair_category or category, split=splits.get(name, pair_split or ""),
            )  # fmt: skip
        except ServiceError as exc:
            report.problems.append(exc.message)
            continue
        report.warnings.extend(f"{name}: {w}" for w in checked.warnings)
        report.pairs.append(checked)
    return report


def import_checked(*, dataset, report: ImportReport):
    """Store the pairs of a clean report (all or nothing); refuse a report with problems."""
    if not report.ok:
        raise ServiceError("Nothing was imported: " + "; ".join(report.problems or ["no pairs"]))
    return services.pairs_store(dataset=dataset, checked=report.pairs)


# --------------------------------------------------------------------------- one archive, start to end
class ImportRejected(ServiceError):
    """Files that do not make a clean import (422); `report` is the validation report as a dict."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message, status=422)
        self.report = report if report is not None else ImportReport(problems=[message]).as_dict()


def archive_import(*, dataset, data, category: str = "", dry_run: bool = False) -> dict:
    """Read a LEVIR-CD zip, check every file, and unless `dry_run` import the pairs (all or nothing).

    The answer is the report as a dict with `dry_run` and `imported` added. With any problem
    nothing is written and `ImportRejected` carries the report.
    """
    try:
        files = read_zip(data)
    except ServiceError as exc:
        raise ImportRejected(exc.message) from None
    report = check_files(files, category=category)
    if not report.ok:
        raise ImportRejected("The archive has problems; nothing was imported.", report.as_dict())
    if not dry_run:
        try:
            import_checked(dataset=dataset, report=report)
        except ServiceError as exc:
            raise ImportRejected(exc.message) from None
    return {**report.as_dict(), "dry_run": dry_run, "imported": 0 if dry_run else len(report.pairs)}
