"""Writes of datasets and pairs: validate without writing, then store all pairs or none."""

import hashlib
import json
import secrets
import tempfile
from dataclasses import dataclass, field
from itertools import islice

from django.conf import settings
from django.db import transaction

from experiments import storage
from experiments.errors import InvalidState, ServiceError
from experiments.models import Dataset, ImagePair, Split
from experiments.quotas import QuotaReservation


@transaction.atomic
def dataset_create(*, owner, name: str, description: str = "", hidden: bool = False) -> Dataset:
    name = name.strip()
    if not name:
        raise ServiceError("A dataset needs a name.", field="name")
    if Dataset.objects.filter(owner=owner, name=name).exists():
        raise ServiceError(f"You already have a dataset named {name!r}; choose another name.", field="name")
    return Dataset.objects.create(owner=owner, name=name, description=description, hidden=hidden)


def dataset_delete(*, dataset: Dataset) -> None:
    if dataset.experiments.exists():
        raise InvalidState("Delete the experiments that use this dataset first.")
    with transaction.atomic():
        dataset_id = dataset.pk
        dataset.delete()
        transaction.on_commit(lambda: storage.delete_prefix(storage.dataset_key(dataset_id)))


@dataclass
class CheckedPair:
    """A pair that passed validation, ready to store: bytes plus what was learned reading them."""

    name: str
    a_bytes: bytes
    b_bytes: bytes
    label_png: bytes | None
    a_size: tuple[int, int]
    b_size: tuple[int, int]
    category: str = ""
    split: str = ""
    warnings: list[str] = field(default_factory=list)
    a_print: str = ""  # near-duplicate fingerprints (`inference.near_duplicates`), made while decoded
    b_print: str = ""


def pair_check(
    *, name: str, a_bytes: bytes, b_bytes: bytes, label_bytes: bytes | None = None, category: str = "", split: str = ""
) -> CheckedPair:
    """Validate one pair without writing anything. Raises ServiceError naming the bad file."""
    from inference.images import ImageError, encode_png, load_image, load_mask
    from inference.near_duplicates import fingerprint

    name = name.strip()
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ServiceError(f"Pair name {name!r} is not allowed; use letters, digits, - and _.", field="name")
    if split not in Split.values:
        raise ServiceError(f"Split must be one of train, val, test or empty, not {split!r}.", field="split")
    decoded = {}
    for role, data in (("image_a", a_bytes), ("image_b", b_bytes)):
        try:
            decoded[role] = load_image(data, max_pixels=settings.MAX_IMAGE_PIXELS)
        except ImageError as exc:
            raise ServiceError(f"{role} of pair {name!r}: {exc}", field=role) from None
    a, b = decoded["image_a"], decoded["image_b"]
    warnings = []
    if a.shape[:2] != b.shape[:2]:
        warnings.append(
            f"A is {a.shape[1]}x{a.shape[0]} and B is {b.shape[1]}x{b.shape[0]}: A is aligned onto B "
            "when alignment is on, else resized to B's size."
        )
    label_png = None
    if label_bytes is not None:
        try:
            mask, label_warnings = load_mask(label_bytes, size=(b.shape[1], b.shape[0]))
        except ImageError as exc:
            raise ServiceError(f"label of pair {name!r}: {exc}", field="label") from None
        warnings.extend(label_warnings)
        label_png = encode_png(mask.astype("uint8") * 255)
    return CheckedPair(
        name=name,
        a_bytes=a_bytes,
        b_bytes=b_bytes,
        label_png=label_png,
        a_size=(a.shape[1], a.shape[0]),
        b_size=(b.shape[1], b.shape[0]),
        category=category.strip()[:100],
        split=split,
        warnings=warnings,
        a_print=fingerprint(a).as_text(),
        b_print=fingerprint(b).as_text(),
    )


IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"BM", "bmp"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
    (b"GIF8", "gif"),
)


def image_extension(data: bytes) -> str:
    """File extension for stored originals, so media are served with the right content type."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((ext for signature, ext in IMAGE_SIGNATURES if data.startswith(signature)), "bin")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pairs_store(*, dataset: Dataset, checked: list[CheckedPair]) -> list[ImagePair]:
    """Store already-checked pairs: all of them or, on any failure, none (no rows, no files)."""
    keys = [(c.split, c.name) for c in checked]
    if len(set(keys)) != len(keys):
        raise ServiceError("Two pairs have the same name in one split; names must be unique within a split.",
                           field="name")  # fmt: skip
    by_split: dict[str, list[str]] = {}
    for split, name in keys:
        by_split.setdefault(split, []).append(name)
    taken = sorted(
        name
        for split, names in by_split.items()
        for name in dataset.pairs.filter(split=split, name__in=names).values_list("name", flat=True)
    )
    if taken:
        raise ServiceError(f"The dataset already has pairs named {taken} in the same split.", field="name")
    writer = PairWriter(dataset, keep=True)
    try:
        for c in checked:
            writer.add(c)
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    return writer.created


class PairWriter:
    """Stores checked pairs: each pair's files at once, under a folder of this writer's own, and
    its row spooled to a temporary file; `commit()` then inserts every row in one short transaction
    that does nothing else (no decoding, no file I/O), so the database's write lock is held only
    for the inserts. On any failure `discard()` removes the files (one folder per writer, so a
    failed import never touches another import's files) and no row was written.
    A pair that would take the dataset's owner over the storage quota raises `QuotaExceeded`
    before it is written; the writer's bytes stay reserved (`QuotaReservation`) until commit or discard.
    """

    def __init__(self, dataset: Dataset, *, chunk: int = 200, keep: bool = False):
        self.dataset = dataset
        self.folder = f"pairs/{secrets.token_hex(6)}"
        self.chunk = chunk
        self.keep = keep
        self.spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed by commit/discard
        self.created: list[ImagePair] = []
        self.count = 0
        self.quota = QuotaReservation(dataset.owner)

    def add(self, c: CheckedPair) -> None:
        self.quota.take(len(c.a_bytes) + len(c.b_bytes))
        self.spool.write(json.dumps(self._pair_store(c)) + "\n")
        self.count += 1

    def commit(self) -> None:
        """Insert every spooled row, all or none (IntegrityError when a name was taken meanwhile)."""
        self.spool.seek(0)
        with transaction.atomic():
            while rows := [
                ImagePair(dataset=self.dataset, **json.loads(line)) for line in islice(self.spool, self.chunk)
            ]:
                created = ImagePair.objects.bulk_create(rows)
                if self.keep:
                    self.created.extend(created)
        self.spool.close()
        self.quota.release()

    def discard(self) -> None:
        self.spool.close()
        self.quota.release()
        storage.delete_prefix(storage.dataset_key(self.dataset.pk, self.folder))

    def _pair_store(self, c: CheckedPair) -> dict:
        """Write the pair's files; its row's fields."""
        folder = f"{self.folder}/{_sha256(f'{c.split}/{c.name}'.encode())[:16]}"
        keys = {
            "a": storage.dataset_key(self.dataset.pk, folder, f"a.{image_extension(c.a_bytes)}"),
            "b": storage.dataset_key(self.dataset.pk, folder, f"b.{image_extension(c.b_bytes)}"),
            "label": storage.dataset_key(self.dataset.pk, folder, "label.png") if c.label_png else "",
        }
        for role, data in (("a", c.a_bytes), ("b", c.b_bytes), ("label", c.label_png)):
            if data is not None:
                storage.save_bytes(keys[role], data)
        return {
            "name": c.name,
            "category": c.category,
            "split": c.split,
            "image_a": keys["a"],
            "image_b": keys["b"],
            "label": keys["label"],
            "a_sha256": _sha256(c.a_bytes),
            "b_sha256": _sha256(c.b_bytes),
            "label_sha256": _sha256(c.label_png) if c.label_png else "",
            "a_width": c.a_size[0],
            "a_height": c.a_size[1],
            "b_width": c.b_size[0],
            "b_height": c.b_size[1],
            "a_bytes": len(c.a_bytes),
            "b_bytes": len(c.b_bytes),
            "a_print": c.a_print,
            "b_print": c.b_print,
        }


def pair_create(
    *,
    dataset: Dataset,
    name: str,
    a_bytes: bytes,
    b_bytes: bytes,
    label_bytes: bytes | None = None,
    category: str = "",
    split: str = "",
) -> ImagePair:
    checked = pair_check(
        name=name, a_bytes=a_bytes, b_bytes=b_bytes, label_bytes=label_bytes, category=category, split=split
    )
    return pairs_store(dataset=dataset, checked=[checked])[0]
