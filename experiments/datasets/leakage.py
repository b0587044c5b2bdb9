"""The leakage audit: the same scene in two splits of a dataset, and scored pairs whose scene a
checkpoint trained on.

Three kinds of finding (docs/datasets.md, "Leakage audit"):
- `exact`: the same decoded pixels (sha256) in two splits;
- `near`: a near-duplicate (re-encoded, shifted a few pixels, cropped by up to 10%), found by the
  perceptual fingerprints of `inference.near_duplicates` within their documented threshold;
- `tile`: two tiles cut from one source image whose areas overlap, read from tile names that carry
  their offsets (LEVIR-style `<source>_<row>_<col>`; a pair named `<source>` is the whole source).

Every pair's images are fingerprinted at import (`services.pair_check`); pairs stored before that
get theirs here. The audit reads, matches outside any transaction, then replaces the dataset's
findings and summary in one short transaction.
"""

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from experiments import storage
from experiments.models import Dataset, ImagePair, LeakageFinding
from inference import near_duplicates as nd

FILL_CHUNK = 200
ROLES = ("A", "B")
_TILE_NAME = re.compile(r"^(?P<source>.+?)_(?P<row>\d{1,6})_(?P<col>\d{1,6})$")
TILE_STEP = 8  # tile offsets are multiples of this (LEVIR: 256); "photo_2019_05" is not a tile


def fingerprints_fill(*, dataset: Dataset) -> int:
    """Fingerprint the pairs stored without one (before fingerprints existed); how many were done.
    Decoding happens outside transactions; each chunk's rows are updated in a short one."""
    done = 0
    missing = dataset.pairs.filter(Q(a_print="") | Q(b_print="")).order_by("pk")
    while chunk := list(missing.only("pk", "image_a", "image_b")[:FILL_CHUNK]):
        for pair in chunk:
            pair.a_print, pair.b_print = image_prints(pair)
        with transaction.atomic():
            ImagePair.objects.bulk_update(chunk, ["a_print", "b_print"])
        done += len(chunk)
    return done


def image_prints(pair: ImagePair) -> tuple[str, str]:
    """A and B's fingerprints as stored, computed from the stored files when missing (not saved)."""
    from inference.images import load_image

    prints = []
    for stored, key in ((pair.a_print, pair.image_a), (pair.b_print, pair.image_b)):
        prints.append(stored or nd.fingerprint(load_image(storage.read_bytes(key), max_pixels=None)).as_text())
    return prints[0], prints[1]


@dataclass(frozen=True)
class _Pair:
    pk: int
    name: str
    split: str
    prints: tuple[str, str]
    size: tuple[int, int]  # B's width and height: the tile's extent


def leakage_audit(*, dataset: Dataset) -> dict:
    """Audit `dataset` now: replace its findings, return (and store) the summary."""
    started = time.perf_counter()
    fingerprints_fill(dataset=dataset)
    rows = dataset.pairs.order_by("pk").values_list("pk", "name", "split", "a_print", "b_print", "b_width", "b_height")
    pairs = [_Pair(pk, name, split, (a, b), (w, h)) for pk, name, split, a, b, w, h in rows.iterator(chunk_size=2000)]
    findings = [*_print_findings(dataset, pairs), *_tile_findings(dataset, pairs)]
    with transaction.atomic():  # the dataset's row locked: two audits at once write one after the other
        if Dataset.objects.select_for_update().filter(pk=dataset.pk).first() is None:
            return {}  # deleted meanwhile: nothing to write
        present = set(dataset.pairs.values_list("pk", flat=True))  # pairs deleted meanwhile drop out
        findings = [f for f in findings if f.pair_id in present and f.other_id in present]
        LeakageFinding.objects.filter(dataset=dataset).delete()
        LeakageFinding.objects.bulk_create(findings, batch_size=1000)
        summary = {
            "audited_at": timezone.now().isoformat(),
            "pairs": sum(p.pk in present for p in pairs),
            "findings": len(findings),
            "by_kind": {kind: sum(f.kind == kind for f in findings) for kind in ("exact", "near", "tile")},
            "threshold": nd.THRESHOLD,
            "hash_bits": 64,
            "seconds": round(time.perf_counter() - started, 3),
        }
        Dataset.objects.filter(pk=dataset.pk).update(leakage=summary)
    dataset.leakage = summary
    return summary


def _print_findings(dataset: Dataset, pairs: list[_Pair]) -> list[LeakageFinding]:
    """Exact and near-duplicate images in different splits; one finding per two pairs (the closest
    match; `detail` lists every image that matched)."""
    images = [(index, role) for index in range(len(pairs)) for role in range(2)]
    prints = [nd.Fingerprint.from_text(pairs[i].prints[r]) for i, r in images]
    splits = {split: n for n, split in enumerate(sorted({p.split for p in pairs}))}
    groups = [splits[pairs[i].split] for i, _ in images]
    matched: dict[tuple[int, int], list[tuple[int, str, bool]]] = {}
    for m in nd.find_matches(prints, groups=groups):
        (i, ri), (j, rj) = images[m.first], images[m.second]
        matched.setdefault((i, j), []).append((m.distance, f"{ROLES[ri]}~{ROLES[rj]}", m.exact))
    findings = []
    for (i, j), found in sorted(matched.items()):
        found.sort(key=lambda f: (not f[2], f[0]))
        distance, images_matched, exact = found[0]
        findings.append(
            LeakageFinding(
                dataset=dataset, pair_id=pairs[i].pk, other_id=pairs[j].pk, kind="exact" if exact else "near",
                images=images_matched, distance=distance,
                detail=", ".join(f"{roles} {'exact' if same else d}" for d, roles, same in found)[:200],
            )
        )  # fmt: skip
    return findings


def _tile_findings(dataset: Dataset, pairs: list[_Pair]) -> list[LeakageFinding]:
    """Tiles of one source (by name) in different splits whose areas overlap."""
    sources: dict[str, list[tuple[_Pair, int, int]]] = {}
    for pair in pairs:
        tile = _TILE_NAME.match(pair.name)
        if tile and int(tile["row"]) % TILE_STEP == 0 and int(tile["col"]) % TILE_STEP == 0:
            sources.setdefault(tile["source"], []).append((pair, int(tile["row"]), int(tile["col"])))
    for pair in pairs:
        if pair.name in sources:
            sources[pair.name].append((pair, 0, 0))
    findings = []
    for tiles in sources.values():
        for pair, other, overlap in _overlapping(tiles):
            findings.append(LeakageFinding(dataset=dataset, pair_id=pair.pk, other_id=other.pk, kind="tile",
                                           detail=overlap))  # fmt: skip
    return findings


def _overlapping(tiles: list[tuple[_Pair, int, int]]) -> Iterable[tuple[_Pair, _Pair, str]]:
    """Tiles of different splits whose rectangles intersect (a sweep over rows)."""
    tiles = sorted(tiles, key=lambda t: (t[1], t[2]))
    for n, (pair, row, col) in enumerate(tiles):
        width, height = pair.size
        for other, other_row, other_col in tiles[n + 1 :]:
            if other_row >= row + height:
                break
            other_width, other_height = other.size
            rows = (max(row, other_row), min(row + height, other_row + other_height))
            cols = (max(col, other_col), min(col + width, other_col + other_width))
            if pair.split != other.split and rows[0] < rows[1] and cols[0] < cols[1]:
                first, second = sorted((pair, other), key=lambda p: p.pk)
                yield (
                    first,
                    second,
                    f"rows {rows[0]}-{rows[1] - 1}, cols {cols[0]}-{cols[1] - 1} of {first.name} and {second.name}",
                )
