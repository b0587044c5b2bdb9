"""Storing the procedural benchmark (`inference.synthetic`) as a Dataset with categories and splits,
and the fingerprints of its pairs (what a checkpoint trained on it has seen)."""

import hashlib

from django.db import transaction

from experiments.datasets import services
from experiments.models import pair_fingerprint
from inference.images import encode_png


def synthetic_pairs(*, pairs: int, size: int, seed: int, only_split: str = ""):
    """The checked pairs of the benchmark `(pairs, size, seed)`, in order; `only_split` keeps one split.
    Pair `i` is the same whichever subset is kept, so a split here is that split of the full benchmark."""
    from inference.synthetic import CATEGORIES, generate_pair, split_for

    for index in range(pairs):
        split = split_for(index // len(CATEGORIES))
        if only_split and split != only_split:
            continue
        category = CATEGORIES[index % len(CATEGORIES)]
        pair = generate_pair(index, category, size=size, seed=seed, split=split)
        yield services.pair_check(
            name=pair.name, a_bytes=encode_png(pair.a), b_bytes=encode_png(pair.b),
            label_bytes=encode_png(pair.label.astype("uint8") * 255), category=pair.category, split=pair.split,
        )  # fmt: skip


def synthetic_dataset_create(*, owner, name: str, pairs: int, size: int, seed: int, only_split: str = "",
                             progress=None):  # fmt: skip
    """Generate and store the benchmark's pairs (or one split of them); all or nothing. `progress(n)` after each."""
    checked = []
    for pair in synthetic_pairs(pairs=pairs, size=size, seed=seed, only_split=only_split):
        checked.append(pair)
        if progress:
            progress(1)
    from inference.synthetic import CATEGORIES

    subset = f"the {only_split} split of " if only_split else ""
    description = (
        f"Procedural benchmark: {subset}{pairs} pairs, {size}px, seed {seed}, categories {', '.join(CATEGORIES)}."
    )
    with transaction.atomic():
        dataset = services.dataset_create(owner=owner, name=name, description=description)
        services.pairs_store(dataset=dataset, checked=checked)
    return dataset


def synthetic_fingerprints(*, pairs: int, size: int, seed: int, progress=None) -> dict[str, list[str]]:
    """Per split, the sorted fingerprints of the benchmark's pairs (`ImagePair.fingerprint` of each)."""
    prints: dict[str, list[str]] = {}
    for pair in synthetic_pairs(pairs=pairs, size=size, seed=seed):
        a_sha, b_sha = hashlib.sha256(pair.a_bytes).hexdigest(), hashlib.sha256(pair.b_bytes).hexdigest()
        prints.setdefault(pair.split, []).append(pair_fingerprint(a_sha, b_sha))
        if progress:
            progress(1)
    return {split: sorted(values) for split, values in prints.items()}
