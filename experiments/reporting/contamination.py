"""Did a detector score pairs its weights were trained on? Checkpoints record the fingerprints of
their train and val pairs (`config["trained_on"]`); a run compares them with the pairs it scored,
exactly (`trained_pairs_scored`) and as near-duplicates of the images (`scored_near_trained`)."""

from experiments.datasets.leakage import image_prints
from experiments.models import ImagePair, ModelCheckpoint, Run, pair_fingerprint
from inference.near_duplicates import Fingerprint, find_matches


def _trained_prints(provenance: str) -> set[str] | None:
    """The fingerprints a checkpoint was trained and validated on; None when it does not say."""
    if not provenance.startswith("checkpoint:"):
        return set()  # classical, random init or ImageNet backbone: trained on none of the user's pairs
    return _recorded_prints(ModelCheckpoint.objects.filter(sha256=provenance.split(":", 1)[1]).first())


def _recorded_prints(checkpoint: ModelCheckpoint | None) -> set[str] | None:
    record = (checkpoint.config or {}).get("trained_on") if checkpoint else None
    if not isinstance(record, dict):
        return None
    return {fingerprint for prints in record.values() for fingerprint in prints}


def trained_pairs_scored(run: Run) -> dict[str, int | None]:
    """Per detector, how many of the pairs it scored in `run` its weights saw in training (train or val);
    None when its checkpoint does not record what it was trained on."""
    counts: dict[str, int | None] = {}
    known: dict[str, set[str] | None] = {}
    rows = run.results.values_list("detector", "weights", "pair__a_sha256", "pair__b_sha256")
    for detector, weights, a_sha256, b_sha256 in rows.iterator(chunk_size=2000):
        if weights not in known:
            known[weights] = _trained_prints(weights or "")
        prints = known[weights]
        if prints is None:
            counts[detector] = None
        elif counts.get(detector, 0) is not None:
            counts[detector] = counts.get(detector, 0) + (pair_fingerprint(a_sha256, b_sha256) in prints)
    return counts


def _training_pairs(provenance: str, owner_id: int) -> list[ImagePair]:
    """The pairs a checkpoint trained or validated on (by their recorded prints), from its dataset
    when that dataset is `owner_id`'s: another user's pairs are never named."""
    if not provenance.startswith("checkpoint:"):
        return []
    checkpoints = ModelCheckpoint.objects.filter(sha256=provenance.split(":", 1)[1], dataset__owner_id=owner_id)
    checkpoint = checkpoints.select_related("dataset").first()
    prints = _recorded_prints(checkpoint)
    if not prints:
        return []
    pairs = checkpoint.dataset.pairs.only("pk", "name", "split", "image_a", "image_b", "a_print", "b_print",
                                          "a_sha256", "b_sha256")  # fmt: skip
    return [pair for pair in pairs.iterator(chunk_size=2000) if pair.fingerprint in prints]


def scored_near_trained(run: Run) -> list[dict]:
    """The run's scored pairs that are exact or near-duplicates of a pair some scored checkpoint
    trained or validated on (its dataset's pairs whose prints its `trained_on` records): one row
    per scored pair and training pair, with the detectors whose weights saw it."""
    by_weights: dict[str, list[str]] = {}
    for detector, weights in run.results.values_list("detector", "weights").distinct():
        by_weights.setdefault(weights or "", []).append(detector)
    trained: dict[int, tuple[ImagePair, set[str]]] = {}
    for weights, detectors in by_weights.items():
        for pair in _training_pairs(weights, run.experiment.owner_id):
            trained.setdefault(pair.pk, (pair, set()))[1].update(detectors)
    if not trained:
        return []
    scored_ids = run.results.values_list("pair_id", flat=True).distinct()
    scored = list(ImagePair.objects.filter(pk__in=scored_ids).order_by("name"))
    sides = [*(pair for pair, _ in trained.values()), *scored]
    images = [(pair, role, prints) for pair in sides for role, prints in zip("AB", image_prints(pair), strict=True)]
    groups = [0 if n < 2 * len(trained) else 1 for n in range(len(images))]
    rows: dict[tuple[int, int], dict] = {}
    for m in find_matches([Fingerprint.from_text(p) for _, _, p in images], groups=groups):
        (train_pair, train_role, _), (scored_pair, scored_role, _) = images[m.first], images[m.second]
        row = {
            "pair": scored_pair.pk, "pair_name": scored_pair.name, "split": scored_pair.split,
            "trained_pair": train_pair.pk, "trained_pair_name": train_pair.name, "trained_split": train_pair.split,
            "detectors": sorted(trained[train_pair.pk][1]), "kind": "exact" if m.exact else "near",
            "distance": m.distance, "images": f"{scored_role}~{train_role}",
        }  # fmt: skip
        known = rows.get((scored_pair.pk, train_pair.pk))
        if known is None or (row["kind"] != "exact", m.distance) < (known["kind"] != "exact", known["distance"]):
            rows[(scored_pair.pk, train_pair.pk)] = row
    return sorted(rows.values(), key=lambda r: (r["pair_name"], r["distance"], r["trained_pair_name"]))
