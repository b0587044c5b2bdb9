"""Storing the procedural benchmark (`inference.synthetic`) as a Dataset with categories and splits."""

from django.db import transaction

from experiments.datasets import services
from inference.images import encode_png


def synthetic_dataset_create(*, owner, name: str, pairs: int, size: int, seed: int, progress=None):
    """Generate and store `pairs` synthetic pairs; all or nothing. `progress(n)` after each pair."""
    from inference.synthetic import CATEGORIES, generate_pair, split_for

    checked = []
    for index in range(pairs):
        category = CATEGORIES[index % len(CATEGORIES)]
        pair = generate_pair(index, category, size=size, seed=seed, split=split_for(index // len(CATEGORIES)))
        checked.append(
            services.pair_check(
                name=pair.name, a_bytes=encode_png(pair.a), b_bytes=encode_png(pair.b),
                label_bytes=encode_png(pair.label.astype("uint8") * 255), category=pair.category, split=pair.split,
            )
        )  # fmt: skip
        if progress:
            progress(1)
    description = f"Procedural benchmark: {pairs} pairs, {size}px, seed {seed}, categories {', '.join(CATEGORIES)}."
    with transaction.atomic():
        dataset = services.dataset_create(owner=owner, name=name, description=description)
        services.pairs_store(dataset=dataset, checked=checked)
    return dataset
