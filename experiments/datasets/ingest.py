"""Bringing pairs in from the public dataset layouts, zips and loose files, one pair at a time.

One function, `run_import`, serves the CLI (`import_dataset`), the API, the web upload and batch
jobs: it recognises the layout (`layouts`), then reads, checks and, when asked, stores each pair
in turn, so memory stays bounded whatever the dataset's size. Decoding and file writes happen
outside any database transaction (files under one fresh folder, rows spooled to a temporary
file); the rows then go in by one short transaction that only inserts (`services.PairWriter`).
Any fatal problem removes the folder and writes no row, so nothing is written. A dry run (no
`store`) checks everything and reports, writing nothing.

Rules: A and B may differ in size (a warning: A is aligned onto B when alignment is on, else
resized to B's size). A label must have B's size. Labels 0/255 or 0/1 are taken as they are;
other values are binarised at 128 with a warning. Pairs keep their split (from the split
folders, `list/*.txt` or `categories.csv`); a name may repeat across splits, never within one.
"""

import contextlib
import csv
import io
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from django.db import IntegrityError

from experiments.datasets import archives, layouts, leakage, services
from experiments.errors import ServiceError
from experiments.quotas import QuotaExceeded

logger = logging.getLogger(__name__)
MAX_LISTED = 500  # pairs listed in a report (the counts cover all of them)
MAX_MESSAGES = 200  # problems or warnings listed in a report
TAKEN_CHUNK = 500
IMAGE_SUFFIXES = layouts.IMAGE_SUFFIXES
ROLE_SUFFIXES = layouts.LOOSE_SUFFIXES


# --------------------------------------------------------------------------- sources
class Source:
    """Files by relative posix path (shared top folders removed), read one at a time."""

    def __init__(self, paths: list[str], reader: Callable[[str], bytes]):
        prefix, self.paths = layouts.strip_top_folders(sorted(paths))
        self._prefix = f"{prefix}/" if prefix else ""
        self._reader = reader

    def read(self, path: str) -> bytes:
        return self._reader(self._prefix + path)


def zip_source(data) -> Source:
    """A zip (bytes or a seekable file) checked by `archives.open_zip` (entry count, names, links,
    bombs) before anything is unpacked; the members are unpacked one at a time when asked for."""
    members = archives.open_zip(data)
    return Source(list(members), members.__getitem__)


def folder_source(path: Path) -> Source:
    """A folder's files (hidden ones skipped); links are refused, not followed."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise ServiceError(f"{root} is not a folder or a zip archive.")
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in [*dirs, *files]:
            if os.path.islink(os.path.join(folder, name)):
                raise ServiceError(f"{os.path.join(folder, name)} is a symbolic link; links are not followed.")
        base = os.path.relpath(folder, root).replace(os.sep, "/")
        paths.extend(name if base == "." else f"{base}/{name}" for name in files if not name.startswith("."))

    def read(name: str) -> bytes:  # plain strings, not pathlib: see `layouts`
        with open(os.path.join(root, *name.split("/")), "rb") as fh:
            return fh.read()

    return Source(paths, read)


def dict_source(files: dict[str, bytes]) -> Source:
    return Source(list(files), files.__getitem__)


@contextlib.contextmanager
def open_source(path: Path):
    """A folder or a zip on disk, as a Source kept open for the `with` block."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            yield zip_source(fh)
    else:
        yield folder_source(path)


def read_zip(data) -> archives.ZipMembers:
    """The files of a checked zip by path, each unpacked only when it is read (see `archives`)."""
    return archives.open_zip(data)


def read_folder(path: Path) -> dict[str, bytes]:
    source = folder_source(path)
    return {source._prefix + p: source.read(p) for p in source.paths}


# --------------------------------------------------------------------------- the report
@dataclass
class PairSummary:
    name: str
    split: str
    category: str
    has_label: bool
    a_size: tuple[int, int]
    b_size: tuple[int, int]
    warnings: list[str]


@dataclass
class ImportReport:
    """Counts of everything, and the first pairs, problems and warnings (bounded, whatever the size)."""

    layout: str = ""
    pairs: list[PairSummary] = field(default_factory=list)
    pair_count: int = 0
    split_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problem_count: int = 0
    warning_count: int = 0
    imported: int = 0
    leakage: dict = field(default_factory=dict)  # the leakage audit's summary after a stored import
    source: Source | None = field(default=None, repr=False)
    options: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.problem_count = max(self.problem_count, len(self.problems))
        self.warning_count = max(self.warning_count, len(self.warnings))

    @property
    def ok(self) -> bool:
        return not self.problem_count and self.pair_count > 0

    def problem(self, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_MESSAGES:
            self.problems.append(message)

    def warning(self, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_MESSAGES:
            self.warnings.append(message)

    def add_pair(self, summary: PairSummary) -> None:
        self.pair_count += 1
        self.split_counts[summary.split] = self.split_counts.get(summary.split, 0) + 1
        if len(self.pairs) < MAX_LISTED:
            self.pairs.append(summary)

    def _more(self, shown: list[str], count: int, kind: str) -> list[str]:
        return [*shown, f"… and {count - len(shown)} more {kind}"] if count > len(shown) else shown

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "layout": self.layout,
            "pair_count": self.pair_count,
            "splits": dict(sorted(self.split_counts.items())),
            "pairs": [
                {"name": p.name, "category": p.category, "split": p.split, "has_label": p.has_label,
                 "a_size": list(p.a_size), "b_size": list(p.b_size), "warnings": p.warnings}
                for p in self.pairs
            ],
            "problems": self._more(self.problems, self.problem_count, "problems"),
            "warnings": self._more(self.warnings, self.warning_count, "warnings"),
        }  # fmt: skip

    def text(self) -> str:
        splits = ", ".join(f"{split or 'no split'}: {n}" for split, n in sorted(self.split_counts.items()))
        lines = [f"{self.pair_count} pairs checked, {self.problem_count} problems, {self.warning_count} warnings "
                 f"({self.layout or 'no'} layout; splits: {splits or 'none'})"]  # fmt: skip
        lines += [f"PROBLEM: {p}" for p in self._more(self.problems, self.problem_count, "problems")]
        lines += [f"warning: {w}" for w in self._more(self.warnings, self.warning_count, "warnings")]
        return "\n".join(lines)


# --------------------------------------------------------------------------- checking and storing
def run_import(
    source: Source,
    *,
    layout: str = "auto",
    category: str = "",
    split: str = "",
    dataset=None,
    store: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Check every pair of `source` one at a time and, with `store`, add them to `dataset`: all or none.

    `split` is given to pairs the layout leaves without one. With a `dataset`, names it already
    holds in the same split are problems. `progress(done, total)` is called after each pair.
    Raises ServiceError only when the layout is not recognised; everything else is in the report.
    """
    plan = layouts.plan(source.paths, read=source.read, layout=layout)
    report = ImportReport(layout=plan.layout.key, source=source,
                          options={"layout": layout, "category": category, "split": split})  # fmt: skip
    for message in plan.problems:
        report.problem(message)
    for message in plan.warnings:
        report.warning(message)
    categories = _categories(source)
    if dataset is not None and dataset.pk is not None:
        _refuse_taken(report, plan, dataset, categories, split)
    if store and dataset is None:
        raise ValueError("store needs a dataset")
    writer = services.PairWriter(dataset) if store else None
    try:  # decoding and file writes happen here, outside any transaction; the rows go in at the end
        _check_each(report, plan, source, categories, category, split, writer, progress)
        if writer is not None:
            if report.ok:
                writer.commit()
                report.imported = writer.count
            else:
                writer.discard()
    except IntegrityError:  # a concurrent import took one of these names between our check and our insert
        writer.discard()
        report.problem("Another import added pairs with some of these names meanwhile; nothing was imported.")
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    return report


def audit_after_import(report: ImportReport, dataset) -> ImportReport:
    """The dataset's leakage audit with the pairs `report` imported, its summary put on the report.
    Called by the import paths once `run_import` has committed (not by `run_import`, whose memory
    stays that of one pair); the import stands even when the audit fails (run it again with
    `audit_leakage` or the API). Batch jobs' hidden datasets are not audited."""
    if not report.imported or dataset.hidden:
        return report
    try:
        report.leakage = leakage.leakage_audit(dataset=dataset)
    except Exception as exc:  # the pairs are in; the audit is reported as not done
        logger.warning("leakage audit of dataset %s after an import failed", dataset.pk, exc_info=True)
        report.leakage = {"error": f"the leakage audit failed ({type(exc).__name__}); run it again"}
    return report


def _check_each(report, plan, source, categories, category, split, writer, progress) -> None:
    some_labelled = any(role == "label" and index for (_, role), index in plan._index.items())
    for done, pair in enumerate(plan.pairs(), 1):
        pair_category, pair_split = categories.get(pair.name, ("", ""))
        try:
            checked = services.pair_check(
                name=pair.name, a_bytes=source.read(pair.a), b_bytes=source.read(pair.b),
                label_bytes=source.read(pair.label) if pair.label else None,
                category=pair_category or category, split=pair.split or pair_split or split,
            )  # fmt: skip
        except ServiceError as exc:
            report.problem(exc.message)
        else:
            report.add_pair(PairSummary(checked.name, checked.split, checked.category, checked.label_png is not None,
                                        checked.a_size, checked.b_size, checked.warnings))  # fmt: skip
            for message in checked.warnings:
                report.warning(f"{pair.name}: {message}")
            if pair.label is None and some_labelled:
                report.warning(f"{pair.name}: has no label; it is kept as a pair without ground truth.")
            if writer is not None and not report.problem_count:
                writer.add(checked)
        if progress:
            progress(done, plan.count)


def _refuse_taken(report: ImportReport, plan, dataset, categories: dict, default_split: str) -> None:
    chunk: list[tuple[str, str]] = []

    def check() -> None:
        by_split: dict[str, list[str]] = {}
        for pair_split, name in chunk:
            by_split.setdefault(pair_split, []).append(name)
        for pair_split, names in by_split.items():
            taken = sorted(dataset.pairs.filter(split=pair_split, name__in=names).values_list("name", flat=True))
            if taken:
                where = f"in split {pair_split!r}" if pair_split else "without a split"
                shown = ", ".join(taken[:10]) + (" …" if len(taken) > 10 else "")
                report.problem(f"The dataset already has pairs named {shown} {where}; rename or remove them.")
        chunk.clear()

    for pair in plan.pairs():
        chunk.append((pair.split or categories.get(pair.name, ("", ""))[1] or default_split, pair.name))
        if len(chunk) >= TAKEN_CHUNK:
            check()
    check()


def _categories(source: Source) -> dict[str, tuple[str, str]]:
    """`categories.csv` (`name,category,split`), when the source has one."""
    if "categories.csv" not in source.paths:
        return {}
    rows = csv.DictReader(io.StringIO(source.read("categories.csv").decode(errors="replace")))
    return {PurePosixPath(r["name"]).stem: (r.get("category", "") or "", r.get("split", "") or "")
            for r in rows if r.get("name")}  # fmt: skip


def check_files(files: dict[str, bytes], *, category: str = "", layout: str = "auto") -> ImportReport:
    """Validate files already in memory, write nothing; a clean report can go to `import_checked`."""
    try:
        return run_import(dict_source(files), layout=layout, category=category)
    except ServiceError as exc:
        return ImportReport(problems=[exc.message])


def import_checked(*, dataset, report: ImportReport) -> ImportReport:
    """Store the pairs of a clean report (read again from its source, all or nothing)."""
    if not report.ok or report.source is None:
        raise ServiceError("Nothing was imported: " + "; ".join(report.problems or ["no pairs"]))
    done = run_import(report.source, dataset=dataset, store=True, **report.options)
    if not done.ok:
        raise ServiceError("Nothing was imported: " + "; ".join(done.problems))
    return audit_after_import(done, dataset)


# --------------------------------------------------------------------------- one archive, start to end
class ImportRejected(ServiceError):
    """Files that do not make a clean import (422); `report` is the validation report as a dict."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message, status=422)
        self.report = report if report is not None else ImportReport(problems=[message]).as_dict()


def archive_import(*, dataset, data, category: str = "", dry_run: bool = False, layout: str = "auto") -> dict:
    """Read a zip in any supported layout, check every pair, and unless `dry_run` import them (all or none).

    The answer is the report as a dict with `dry_run` and `imported` added. With any problem
    nothing is written and `ImportRejected` carries the report.
    """
    try:
        report = run_import(zip_source(data), layout=layout, category=category, dataset=dataset, store=not dry_run)
    except QuotaExceeded:
        raise  # 413: the archive is fine, the owner's storage is full
    except ServiceError as exc:
        raise ImportRejected(exc.message) from None
    if not report.ok:
        raise ImportRejected("Nothing was imported: " + "; ".join(report.problems[:3]), report.as_dict())
    audit_after_import(report, dataset)
    return {**report.as_dict(), "dry_run": dry_run, "imported": report.imported, "leakage": report.leakage}
