"""Batch jobs for integrations: many pairs through chosen detectors in one request.

A batch is backed by a hidden dataset, an experiment and a run, all made through the services.
Creation honours an idempotency key (per owner): the same key with the same payload gives the
same job back, with another payload it is refused (422), and while the first request is still
creating the job a second one gets 409. On any failure nothing is left: no rows, no files.

The result archive (masks, heatmaps, metrics CSV, leaderboard CSV) is built on demand once the
run succeeded, stored under the run's storage prefix and reused afterwards.
"""

import hashlib
import io
import json
import uuid
import zipfile
from pathlib import PurePosixPath

from django.db import IntegrityError, transaction

from experiments import storage
from experiments.datasets import ingest
from experiments.datasets.services import dataset_create
from experiments.errors import InvalidState, ServiceError
from experiments.models import LEADERBOARD_RUN_STATES, BatchJob, Dataset
from experiments.reporting.leaderboard import leaderboard_csv
from experiments.reporting.results import results_csv
from experiments.runs import result_pictures, selectors
from experiments.runs.services import experiment_start
from experiments.runs.validation import check_detectors, check_scaling, check_threshold

ROLE_FOLDERS = {"a": "A", "b": "B", "label": "label"}


# --------------------------------------------------------------------------- reading the payload
def pair_name(filename: str, role: str) -> str:
    """`site1_A.png` (role a) -> `site1`; a name without a role suffix is kept as it is."""
    stem = PurePosixPath(filename).stem
    for suffix, suffix_role in ingest.ROLE_SUFFIXES.items():
        if suffix_role == role and stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def files_from_uploads(uploads: dict[str, list[tuple[str, bytes]]]) -> dict[str, bytes]:
    """Loose uploads `{"a": [(filename, bytes)], "b": [...], "label": [...]}` in the LEVIR-CD layout.

    A, B and label files are matched by file name once the role suffix is removed, so
    `x_A.png`/`x_B.png` and `x.png`/`x.png` both pair up.
    """
    files = {}
    for role, items in uploads.items():
        seen = set()
        for filename, data in items:
            name = pair_name(filename, role)
            if name in seen:
                raise ingest.ImportRejected(
                    f"Two {ROLE_FOLDERS[role]} files are named {name!r}; give every pair a different name.",
                    ingest.ImportReport(problems=[f"duplicate {ROLE_FOLDERS[role]} name {name!r}"]).as_dict(),
                )
            seen.add(name)
            suffix = PurePosixPath(filename).suffix or ".png"
            files[f"{ROLE_FOLDERS[role]}/{name}{suffix}"] = data
    return files


def read_archive(data) -> dict[str, bytes]:
    """The files of an uploaded zip (see `ingest.read_zip` for what is refused)."""
    try:
        return ingest.read_zip(data)
    except ServiceError as exc:
        raise ingest.ImportRejected(exc.message) from None


def payload_digest(files: dict[str, bytes], detectors: list[str], options: dict) -> str:
    """A hash of what a batch asks for: file paths and contents, detectors and options."""
    record = {
        "files": sorted((path, hashlib.sha256(data).hexdigest()) for path, data in files.items()),
        "detectors": list(detectors),
        "options": options,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def check_pairs(files: dict[str, bytes]):
    report = ingest.check_files(files)
    if not report.ok:
        raise ingest.ImportRejected("The batch's files have problems; nothing was created.", report.as_dict())
    return report


# --------------------------------------------------------------------------- creating
def _replay(job: BatchJob, digest: str) -> BatchJob:
    if job.payload_sha256 != digest:
        raise ServiceError(
            "This Idempotency-Key was already used for a different batch; use a new key for new content.",
            status=422,
        )
    if job.run_id is None:
        raise InvalidState("A batch with this Idempotency-Key is still being created; retry in a moment.")
    return job


def batch_options(*, threshold: float = 0.5, align: bool = False, scaling: str = "auto") -> dict:
    """The run options a batch records and its payload digest covers (checked)."""
    return {"threshold": check_threshold(threshold), "align": bool(align), "scaling": check_scaling(scaling)}


def batch_create(
    *,
    owner,
    files: dict[str, bytes],
    detectors,
    idempotency_key: str = "",
    threshold: float = 0.5,
    align: bool = False,
    scaling: str = "auto",
) -> tuple[BatchJob, bool]:
    """The job and whether it was created now (False: an idempotent replay of an earlier one)."""
    names = check_detectors(detectors, owner=owner)
    options = batch_options(threshold=threshold, align=align, scaling=scaling)
    digest = payload_digest(files, names, options)
    key = (idempotency_key or "").strip()
    if len(key) > 200:
        raise ServiceError("The Idempotency-Key is longer than 200 characters.", field="Idempotency-Key")
    if key:
        existing = BatchJob.objects.filter(owner=owner, idempotency_key=key).first()
        if existing is not None:
            return _replay(existing, digest), False
    report = check_pairs(files)
    try:
        with transaction.atomic():
            job = BatchJob.objects.create(owner=owner, idempotency_key=key, payload_sha256=digest, detectors=names)
    except IntegrityError:  # another request claimed the key between our read and our insert
        return _replay(BatchJob.objects.get(owner=owner, idempotency_key=key), digest), False
    _populate(job, report, options)
    return job, True


def _populate(job: BatchJob, report, options: dict) -> None:
    """The job's hidden dataset, its pairs and its run; on any failure none of them, nor the job.
    The pairs are decoded outside any transaction (`ingest.import_checked`); only the rows' inserts
    and the run's creation take the write lock, each briefly."""
    dataset = None
    try:
        dataset = dataset_create(owner=job.owner, name=f"batch-{job.pk}-{uuid.uuid4().hex[:8]}", hidden=True)
        ingest.import_checked(dataset=dataset, report=report)
        with transaction.atomic():
            job.run = experiment_start(
                owner=job.owner, dataset=dataset, name=f"batch {job.pk}", detectors=job.detectors, **options
            )
            job.save(update_fields=["run"])
    except BaseException:
        if dataset is not None:
            dataset_id = dataset.pk
            Dataset.objects.filter(pk=dataset_id).delete()
            storage.delete_prefix(storage.dataset_key(dataset_id))
        BatchJob.objects.filter(pk=job.pk).delete()
        raise


# --------------------------------------------------------------------------- reading
def batch_state(job: BatchJob) -> dict:
    run = job.run
    if run is None:
        return {"state": "creating", "done": 0, "total": 0, "error": ""}
    return {"state": run.state, "done": run.progress_done, "total": run.progress_total, "error": run.error}


def archive_name(job: BatchJob) -> str:
    return f"batch-{job.pk}.zip"


def batch_archive(job: BatchJob) -> str:
    """The storage key of the job's result zip, built now if needed. 409 unless the run succeeded (or partly: the detectors that finished)."""
    run = job.run
    if run is None or run.state not in LEADERBOARD_RUN_STATES:
        state = run.state if run is not None else "being created"
        raise InvalidState(f"The batch is {state}; its archive is ready once it has succeeded.")
    if job.archive_key and storage.exists(job.archive_key):
        return job.archive_key
    key = storage.run_key(run.pk, "batch", archive_name(job))
    storage.save_bytes(key, build_archive(run))
    BatchJob.objects.filter(pk=job.pk).update(archive_key=key)
    job.archive_key = key
    return key


def build_archive(run) -> bytes:
    results = list(selectors.run_results(run))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for result in results:
            for folder, key in (
                ("masks", result.mask_key),
                ("heatmaps", result.heatmap_key),
                ("error-maps", result.error_map_key),
            ):
                if key:
                    archive.writestr(f"{folder}/{result.detector}/{result.pair.name}.png", result_pictures.read(key))
        archive.writestr("metrics.csv", results_csv(results))
        archive.writestr("leaderboard.csv", leaderboard_csv(run))
    return buffer.getvalue()
