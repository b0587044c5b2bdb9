"""Intervals on the ranking key (pooled F1/IoU) against an independent percentile bootstrap over pairs,
Holm's adjustment written out from its definition, and rank groups from the adjusted tests."""

import numpy as np
import pytest

from inference import ranking_intervals
from inference.ranking_intervals import ranking_uncertainty

REFERENCE_RESAMPLES = 4000


def _detectors(rng, n_pairs: int, recalls: dict[str, float], noise: float = 0.25) -> dict[str, dict]:
    """Per detector `{pair: (tp, fp, fn)}` on the same pairs: each pair has its own amount of change and
    difficulty; a detector finds about `recall` of the changed pixels, with pair-level noise."""
    changed = rng.integers(50, 2000, n_pairs)
    difficulty = rng.uniform(0.5, 1.5, n_pairs)
    detectors = {}
    for name, recall in recalls.items():
        share = np.clip(recall / difficulty + rng.normal(0, noise, n_pairs), 0, 1)
        tp = np.round(changed * share).astype(int)
        fp = rng.integers(0, 400, n_pairs)
        detectors[name] = {f"pair{i:04d}": (int(tp[i]), int(fp[i]), int(changed[i] - tp[i])) for i in range(n_pairs)}
    return detectors


def _pooled(counts: np.ndarray) -> dict[str, np.ndarray]:
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    return {"f1": 2 * tp / (2 * tp + fp + fn), "iou": tp / (tp + fp + fn)}


def _reference(per_pair: dict[str, dict], names, *, seed: int) -> dict:
    """An independent percentile bootstrap: its own generator, every resample's indices at once, sums by
    fancy indexing (not the weights matrix the platform multiplies)."""
    keys = sorted(per_pair[names[0]])
    counts = np.array([[per_pair[name][key] for key in keys] for name in names], dtype=float)  # det x pair x 3
    drawn = np.random.default_rng(seed).integers(0, len(keys), size=(REFERENCE_RESAMPLES, len(keys)))
    resampled = _pooled(counts[:, drawn, :].sum(axis=2))  # det x resample
    return {name: {metric: values[i] for metric, values in resampled.items()} for i, name in enumerate(names)}


def test_pooled_intervals_agree_with_an_independent_percentile_bootstrap_over_pairs():
    per_pair = _detectors(np.random.default_rng(7), 400, {"good": 0.8, "fair": 0.6, "weak": 0.3})
    names = ["good", "fair", "weak"]
    ours = ranking_uncertainty(per_pair, names, seed=3, resamples=2000)
    reference = _reference(per_pair, names, seed=2024)
    for name in names:
        for metric in ("f1", "iou"):
            low, high = np.percentile(reference[name][metric], [2.5, 97.5])
            assert ours["detectors"][name][f"{metric}_ci"] == pytest.approx([low, high], abs=0.01), (name, metric)
            observed = _pooled(np.array(list(per_pair[name].values()), dtype=float).sum(axis=0))[metric]
            assert low < observed < high
    for comparison in ours["comparisons"]:
        a, b = comparison["a"], comparison["b"]
        for metric in ("f1", "iou"):
            differences = reference[a][metric] - reference[b][metric]
            low, high = np.percentile(differences, [2.5, 97.5])
            assert comparison[f"{metric}_difference_ci"] == pytest.approx([low, high], abs=0.01), (a, b, metric)


def test_the_documented_resampling_reproduces_the_intervals_exactly():
    """docs/engine.md: resample b draws `default_rng(seed).integers(0, n, size=n)` once per resample in
    order over the pairs sorted by key; kept however the platform blocks its resamples."""
    per_pair = _detectors(np.random.default_rng(1), 120, {"one": 0.7, "two": 0.5})
    rng = np.random.default_rng(11)
    keys = sorted(per_pair["one"])
    counts = np.array([per_pair["one"][key] for key in keys], dtype=float)
    f1 = []
    for _ in range(1500):
        tp, fp, fn = counts[rng.integers(0, len(keys), size=len(keys))].sum(axis=0)
        f1.append(2 * tp / (2 * tp + fp + fn))
    expected = np.percentile(f1, [2.5, 97.5]).tolist()
    assert ranking_uncertainty(per_pair, ["one", "two"], seed=11, resamples=1500)["detectors"]["one"]["f1_ci"] == (
        pytest.approx(expected, abs=1e-12)
    )
    blocked = ranking_intervals.resampled_scores(np.array([[v] for v in counts]), seed=11, resamples=1500)
    assert np.percentile(blocked["f1"][:, 0], [2.5, 97.5]).tolist() == pytest.approx(expected, abs=1e-12)


def test_blocks_of_resamples_do_not_change_the_draws(monkeypatch):
    counts = np.random.default_rng(0).integers(0, 100, size=(50, 2, 3))
    whole = ranking_intervals.resampled_scores(counts, seed=5, resamples=300)
    monkeypatch.setattr(ranking_intervals, "BLOCK_CELLS", 7 * 50)  # seven resamples per block
    blocked = ranking_intervals.resampled_scores(counts, seed=5, resamples=300)
    assert np.array_equal(whole["f1"], blocked["f1"]) and np.array_equal(whole["iou"], blocked["iou"])


def _holm_by_hand(pvalues: list[float]) -> list[float]:
    """Holm (1979): order p ascending; the i-th (1-based) of m is adjusted to
    max over j <= i of min(1, (m - j + 1) * p_(j))."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    for rank, index in enumerate(order, start=1):
        adjusted[index] = max(min(1.0, (m - j + 1) * pvalues[order[j - 1]]) for j in range(1, rank + 1))
    return adjusted


def test_p_values_are_holm_adjusted_over_all_pairs_and_groups_follow_from_them():
    per_pair = _detectors(
        np.random.default_rng(3), 150, {"a": 0.80, "b": 0.78, "c": 0.74, "d": 0.60, "e": 0.35}, noise=0.3
    )
    order = sorted(
        per_pair, key=lambda name: -_pooled(np.array(list(per_pair[name].values()), float).sum(axis=0))["f1"]
    )
    ours = ranking_uncertainty(per_pair, order, seed=0, resamples=2000)
    comparisons = ours["comparisons"]
    assert len(comparisons) == 10  # every pair of five detectors
    by_hand = _holm_by_hand([c["p"] for c in comparisons])
    assert [c["p_holm"] for c in comparisons] == pytest.approx(by_hand, abs=1e-12)
    separated = {frozenset((c["a"], c["b"])) for c, p in zip(comparisons, by_hand, strict=True) if p < 0.05}
    for position, name in enumerate(order, start=1):
        tied = [
            p for p, other in enumerate(order, start=1) if other == name or frozenset((name, other)) not in separated
        ]
        low, high = min(tied), max(tied)
        assert ours["detectors"][name]["rank_range"] == [low, high]
        assert ours["detectors"][name]["rank_group"] == (str(low) if low == high else f"{low}-{high}")
        assert low <= position <= high
    # the far-apart ones are separated from everyone, the close ones are not from each other
    assert ours["detectors"]["e"]["rank_group"] == "5"
    assert "b" in ours["detectors"]["a"]["tied_with"]


def test_the_bootstrap_p_value_matches_an_independent_one():
    per_pair = _detectors(np.random.default_rng(9), 200, {"x": 0.62, "y": 0.6}, noise=0.3)
    ours = ranking_uncertainty(per_pair, ["x", "y"], seed=1, resamples=3000)["comparisons"][0]
    reference = _reference(per_pair, ["x", "y"], seed=77)
    differences = reference["x"]["f1"] - reference["y"]["f1"]
    p = min(1.0, 2 * min(np.mean(differences <= 0), np.mean(differences >= 0)))
    assert ours["p"] == pytest.approx(p, abs=0.05)
    assert ours["p_holm"] == ours["p"]  # a family of one


def _moved_to_pooled_f1(counts: dict, target: float) -> dict:
    """The same pairs with true positives moved to false negatives (or back) in proportion to each pair's
    change, so that pooled F1 = 2TP / (TP + P + FP) (P = TP + FN, fixed) lands on `target`."""
    keys = sorted(counts)
    tp, fp, fn = (np.array([counts[k][i] for k in keys], dtype=float) for i in range(3))
    positives = tp + fn
    wanted = target * (positives.sum() + fp.sum()) / (2 - target)
    new_tp = np.clip(np.round(tp * wanted / tp.sum()), 0, positives).astype(int)
    return {k: (int(t), int(f), int(p - t)) for k, t, f, p in zip(keys, new_tp, fp, positives, strict=True)}


def test_two_detectors_half_a_point_apart_on_noisy_pairs_are_tied():
    per_pair = _detectors(np.random.default_rng(12), 300, {"first": 0.6, "second": 0.6}, noise=0.3)
    first_f1 = _pooled(np.array(list(per_pair["first"].values()), dtype=float).sum(axis=0))["f1"]
    per_pair["second"] = _moved_to_pooled_f1(per_pair["second"], first_f1 - 0.005)
    f1 = {name: _pooled(np.array(list(v.values()), dtype=float).sum(axis=0))["f1"] for name, v in per_pair.items()}
    assert f1["first"] - f1["second"] == pytest.approx(0.005, abs=0.0005)
    ours = ranking_uncertainty(per_pair, ["first", "second"], seed=0, resamples=2000)
    assert [ours["detectors"][name]["rank_group"] for name in ("first", "second")] == ["1-2", "1-2"]
    assert not ours["comparisons"][0]["separated"]
    low, high = ours["comparisons"][0]["f1_difference_ci"]
    assert low < 0 < high


def test_two_detectors_far_apart_are_separated():
    per_pair = _detectors(np.random.default_rng(4), 300, {"strong": 0.85, "weak": 0.4}, noise=0.3)
    ours = ranking_uncertainty(per_pair, ["strong", "weak"], seed=0, resamples=2000)
    assert ours["detectors"]["strong"]["rank_group"] == "1" and ours["detectors"]["weak"]["rank_group"] == "2"
    assert ours["comparisons"][0]["separated"] and ours["comparisons"][0]["p"] == 0.0
    assert ours["comparisons"][0]["f1_difference_ci"][0] > 0


def test_detectors_with_different_pairs_are_compared_on_the_pairs_both_scored():
    per_pair = _detectors(np.random.default_rng(5), 100, {"full": 0.7, "part": 0.5})
    per_pair["part"] = {key: value for key, value in per_pair["part"].items() if key < "pair0060"}
    ours = ranking_uncertainty(per_pair, ["full", "part"], seed=0, resamples=1000)
    assert ours["detectors"]["full"]["n_pairs"] == 100 and ours["detectors"]["part"]["n_pairs"] == 60
    comparison = ours["comparisons"][0]
    assert comparison["n_pairs"] == 60
    shared = {name: {k: v for k, v in per_pair[name].items() if k < "pair0060"} for name in per_pair}
    expected = ranking_uncertainty(shared, ["full", "part"], seed=0, resamples=1000)["comparisons"][0]
    assert comparison["f1_difference_ci"] == expected["f1_difference_ci"] and comparison["p"] == expected["p"]


def test_nothing_positive_anywhere_scores_one_as_the_pooled_metrics_do():
    from inference.metrics import Confusion, scores

    per_pair = {"quiet": {1: (0, 0, 0), 2: (0, 0, 0)}, "noisy": {1: (0, 5, 0), 2: (0, 0, 0)}}
    ours = ranking_uncertainty(per_pair, ["quiet", "noisy"], seed=0, resamples=1000)
    assert ours["detectors"]["quiet"]["f1_ci"] == [scores(Confusion(0, 0, 0, 10))["f1"]] * 2
    assert ours["detectors"]["noisy"]["f1_ci"][0] == 0.0
