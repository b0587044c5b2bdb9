"""Writes of prediction sets: upload (check the whole archive, then store every map or none) and delete.

An archive holds one file per pair of the dataset, named like the pair: `<pair name>.png` or
`<pair name>.npy`, or `<split>/<pair name>.<ext>`, which is required when the name occurs in more
than one split (official layouts reuse names across train/val/test). One top folder around
everything is allowed. Nothing is written until every file has been matched and decoded; the maps
are stored in a canonical form (`experiments.predictions.maps`) under
`datasets/<id>/predictions/<token>/`, so deleting the dataset removes them too.
"""

import hashlib
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from django.db import IntegrityError, transaction

from experiments import storage
from experiments.datasets.ingest import read_zip
from experiments.errors import InvalidState, ServiceError
from experiments.models import ACTIVE_RUN_STATES, Dataset, PairPrediction, PredictionSet, Run, Split
from experiments.predictions.maps import EXTENSIONS, MapError, check_map
from experiments.quotas import quota_reserve

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
NAME_MAX = PredictionSet._meta.get_field("name").max_length
SPLITS = tuple(split for split in Split.values if split)
LISTED = 20  # names quoted in a message; the report lists them all


class PredictionsRejected(ServiceError):
    """The archive does not make a clean prediction set (422); `report` lists every problem."""

    def __init__(self, message: str, report: dict):
        super().__init__(message, field="archive", status=422)
        self.report = report


@dataclass
class MatchReport:
    matched: dict = field(default_factory=dict)  # pair id -> path in the archive
    missing: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"missing": self.missing, "unknown": self.unknown, "ambiguous": self.ambiguous,
                "problems": self.problems}  # fmt: skip


def _quoted(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED])
    return shown + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def check_name(name: str, dataset: Dataset) -> str:
    name = (name or "").strip()
    if not NAME_PATTERN.fullmatch(name) or len(name) > NAME_MAX:
        raise ServiceError(
            f"Name {name!r} is not allowed: use up to {NAME_MAX} letters, digits, '.', '-' or '_', "
            "starting with a letter or digit.",
            field="name",
        )
    if PredictionSet.objects.filter(dataset=dataset, name=name).exists():
        raise ServiceError(
            f"Dataset {dataset.name!r} already has predictions called {name!r}; choose another name "
            "(or delete those first).",
            field="name",
        )
    return name


def check_kind(kind: str) -> str:
    if kind not in PredictionSet.Kind.values:
        raise ServiceError(f"Kind must be 'mask' or 'probability', not {kind!r}.", field="kind")
    return kind


def _strip_top_folder(paths: list[str]) -> dict[str, str]:
    """{path as matched: path in the zip}: one folder around everything (not a split's) is dropped."""
    tops = {PurePosixPath(p).parts[0] for p in paths}
    if len(tops) == 1 and all(len(PurePosixPath(p).parts) > 1 for p in paths) and tops.pop() not in SPLITS:
        return {str(PurePosixPath(*PurePosixPath(p).parts[1:])): p for p in paths}
    return {p: p for p in paths}


def _pair_label(pair, by_name: dict) -> str:
    return f"{pair.split}/{pair.name}" if len(by_name[pair.name]) > 1 and pair.split else pair.name


def match_files(paths, pairs) -> MatchReport:
    """Each file to its pair by name (and split prefix); what is missing, unknown or ambiguous."""
    by_name = defaultdict(list)
    for pair in pairs:
        by_name[pair.name].append(pair)
    report = MatchReport()
    for path, original in sorted(_strip_top_folder(list(paths)).items()):
        parts = PurePosixPath(path).parts
        stem, _, extension = parts[-1].rpartition(".")
        if not stem or extension.lower() not in EXTENSIONS:
            report.unknown.append(original)
            continue
        candidates = by_name.get(stem, [])
        if len(parts) == 2 and parts[0] in SPLITS:
            candidates = [p for p in candidates if p.split == parts[0]]
        elif len(parts) != 1:
            candidates = []
        if not candidates:
            report.unknown.append(original)
            continue
        if len(candidates) > 1:
            splits = ", ".join(sorted(p.split or "(none)" for p in candidates))
            report.ambiguous.append(
                f"{original}: pair {stem!r} is in splits {splits}; name the file <split>/{parts[-1]}"
            )
            continue
        pair = candidates[0]
        if pair.pk in report.matched:
            report.problems.append(f"{original} and {report.matched[pair.pk]} are both for pair "
                                   f"{_pair_label(pair, by_name)!r}; keep one.")  # fmt: skip
            continue
        report.matched[pair.pk] = original
    report.missing = sorted(_pair_label(p, by_name) for p in pairs if p.pk not in report.matched)
    return report


def _refusal(report: MatchReport) -> str:
    parts = []
    if report.missing:
        parts.append(f"{len(report.missing)} pair(s) have no file: {_quoted(report.missing)}")
    if report.unknown:
        parts.append(f"{len(report.unknown)} file(s) match no pair (name them <pair name>.png or .npy, "
                     f"or <split>/<pair name>.<ext>): {_quoted(report.unknown)}")  # fmt: skip
    if report.ambiguous:
        parts.append(f"{len(report.ambiguous)} name(s) are ambiguous: {_quoted(report.ambiguous)}")
    if report.problems:
        parts.append(_quoted(report.problems))
    return "Nothing was stored. " + "; ".join(parts) + "."


def _checked_maps(report: MatchReport, files, pairs: dict, kind: str) -> list[tuple]:
    """`(pair, CheckedMap)` for every matched file, unpacked one at a time; each unusable one adds a
    problem naming its pair."""
    checked = []
    for pair_id, path in report.matched.items():
        pair = pairs[pair_id]
        try:
            data = files[path]
        except ServiceError as exc:  # a damaged member
            report.problems.append(exc.message)
            continue
        try:
            checked.append((pair, check_map(data, path.rpartition(".")[2], kind, (pair.b_height, pair.b_width))))
        except MapError as exc:
            report.problems.append(f"{path} (pair {pair.name!r}, split {pair.split or 'none'}): {exc}")
    return checked


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prediction_set_upload(*, owner, dataset: Dataset, name: str, kind: str, archive: bytes) -> PredictionSet:
    """Store a prediction set for every pair of `dataset`: all maps and rows, or nothing at all."""
    if dataset.owner_id != owner.pk:  # staff see every dataset; predictions belong to the dataset's owner
        raise ServiceError("Only the dataset's owner can upload predictions for it.", status=403)
    name, kind = check_name(name, dataset), check_kind(kind)
    try:
        files = read_zip(archive)
    except ServiceError as exc:
        raise PredictionsRejected(exc.message, MatchReport(problems=[exc.message]).as_dict()) from None
    pairs = {pair.pk: pair for pair in dataset.pairs.all()}
    if not pairs:
        raise ServiceError("The dataset has no pairs yet; import its pairs before their predictions.")
    report = match_files(files, list(pairs.values()))
    checked = _checked_maps(report, files, pairs, kind) if not (report.missing or report.unknown) else []
    if report.missing or report.unknown or report.ambiguous or report.problems:
        raise PredictionsRejected(_refusal(report), report.as_dict())
    with quota_reserve(user=owner, adding=sum(len(found.stored) for _, found in checked)):
        return _store(owner, dataset, name, kind, _sha256(archive), checked)


def _store(owner, dataset: Dataset, name: str, kind: str, archive_sha256: str, checked: list) -> PredictionSet:
    """The maps' files first, outside any transaction, then the rows in one short one; on any failure
    the files written are removed."""
    token = uuid.uuid4().hex[:16]  # never reused, unlike a deleted set's primary key
    written: list[str] = []
    try:
        files = []
        for pair, found in checked:
            key = storage.dataset_key(dataset.pk, "predictions", token, f"{pair.pk}.{found.extension}")
            written.append(storage.save_bytes(key, found.stored))
            files.append((pair, key, _sha256(found.stored)))
        with transaction.atomic():
            predictions = PredictionSet.objects.create(
                owner=owner, dataset=dataset, name=name, kind=kind, archive_sha256=archive_sha256,
                size_bytes=sum(len(found.stored) for _, found in checked),
            )  # fmt: skip
            PairPrediction.objects.bulk_create(
                PairPrediction(prediction_set=predictions, pair=pair, file_key=key, sha256=sha256)
                for pair, key, sha256 in files
            )
    except IntegrityError:  # another upload took the name between our check and our insert
        storage.delete_keys(written)
        raise ServiceError(f"Dataset {dataset.name!r} already has predictions called {name!r}.", field="name") from None
    except BaseException:
        storage.delete_keys(written)
        raise
    return predictions


def prediction_set_delete(*, prediction_set: PredictionSet) -> None:
    """Delete the set and its files; refused while a queued or running run scores it."""
    active = Run.objects.filter(experiment__dataset=prediction_set.dataset_id, state__in=ACTIVE_RUN_STATES)
    if any(prediction_set.detector_name in run.experiment.detectors for run in active.select_related("experiment")):
        raise InvalidState(f"A run scoring {prediction_set.detector_name} is still active; wait for it or cancel it.")
    keys = list(prediction_set.predictions.values_list("file_key", flat=True))
    with transaction.atomic():
        prediction_set.delete()
        transaction.on_commit(lambda: storage.delete_keys(keys))
