"""Did a detector score pairs its weights were trained on? Checkpoints record the fingerprints of
their train and val pairs (`config["trained_on"]`); a run compares them with the pairs it scored."""

from experiments.models import ModelCheckpoint, Run, pair_fingerprint


def _trained_prints(provenance: str) -> set[str] | None:
    """The fingerprints a checkpoint was trained and validated on; None when it does not say."""
    if not provenance.startswith("checkpoint:"):
        return set()  # classical, random init or ImageNet backbone: trained on none of the user's pairs
    checkpoint = ModelCheckpoint.objects.filter(sha256=provenance.split(":", 1)[1]).first()
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
