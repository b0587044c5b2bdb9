"""What the stored leaderboard says about pairs with and without change (issue 12, items 3 and 10).

Every expected figure is computed here from the masks and labels with scikit-learn, scipy or
numpy, never with the platform's own metric code.
"""

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, stats
from sklearn import metrics as sk

from experiments import storage
from experiments.models import ImagePair, Result
from experiments.reporting.aggregation import build_leaderboard
from experiments.reporting.leaderboard import LeaderboardState, leaderboard_records
from experiments.runs import services as run_services
from inference.evaluation import MIN_FALSE_ALARM_AREA, pair_metrics
from inference.render import mask_png
from tests.conftest import png_bytes
from tests.factories import make_dataset, run_in_process

SIZE = 100  # 10 000 pixels: MIN_FALSE_ALARM_AREA (0.001) is 10 pixels
SILENT, TRIGGER = "absdiff", "ssim"  # registered names; their results below are built by hand
CHANGED_BOXES = {"p0": (10, 10, 30, 40), "p1": (50, 20, 70, 60)}
NO_CHANGE = ("p2", "p3", "p4")
# TRIGGER's predicted change on the pairs without change: 5 px (below the minimum area), 100 px, 2000 px
TRIGGER_FALSE_PIXELS = {"p2": (0, 0, 1, 5), "p3": (20, 20, 30, 30), "p4": (0, 0, 20, 100)}
CATEGORIES = {"p0": "mixed", "p2": "mixed", "p3": "mixed", "p1": "rest", "p4": "rest"}
Z95 = 1.959963984540054  # standard normal 97.5% quantile


def box_mask(box) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    y0, x0, y1, x1 = box
    mask[y0:y1, x0:x1] = True
    return mask


def labels() -> dict[str, np.ndarray]:
    out = {name: box_mask(box) for name, box in CHANGED_BOXES.items()}
    out.update({name: np.zeros((SIZE, SIZE), bool) for name in NO_CHANGE})
    return out


def predicted(detector: str, pair: str) -> np.ndarray:
    if detector == SILENT:
        return np.zeros((SIZE, SIZE), bool)
    if pair in CHANGED_BOXES:
        return np.roll(box_mask(CHANGED_BOXES[pair]), 3, axis=1)  # the change, 3 px to the right
    return box_mask(TRIGGER_FALSE_PIXELS[pair])


def probability(mask: np.ndarray, seed: int) -> np.ndarray:
    """Continuous scores whose threshold at 0.5 is exactly `mask`."""
    u = np.random.default_rng(seed).random(mask.shape)
    return np.where(mask, 0.5 + 0.5 * u, 0.5 * u).astype(np.float32)


def wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return centre - half, centre + half


def bootstrap(values, seed) -> tuple[float, float]:
    """The interval the platform states: scipy's percentile bootstrap, 2000 resamples, seeded."""
    result = stats.bootstrap(
        (np.asarray(values, float),), np.mean, confidence_level=0.95, n_resamples=2000,
        method="percentile", random_state=np.random.default_rng(seed),
    )  # fmt: skip
    return result.confidence_interval.low, result.confidence_interval.high


def sk_scores(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    y, p = label.ravel(), pred.ravel()
    return {
        "iou": sk.jaccard_score(y, p, zero_division=1.0),
        "f1": sk.f1_score(y, p, zero_division=1.0),
        "precision": sk.precision_score(y, p, zero_division=1.0),
        "recall": sk.recall_score(y, p, zero_division=1.0),
    }


@pytest.fixture
def constructed_run(user, no_queue):
    """Five pairs (two with change, three without) and two detectors whose results are written by
    hand: SILENT predicts nothing, TRIGGER finds the change shifted by 3 px and fires on two of the
    three pairs without change."""
    blank = png_bytes(np.full((SIZE, SIZE, 3), 90, np.uint8))
    pairs = [(name, blank, blank, png_bytes(label.astype(np.uint8) * 255)) for name, label in labels().items()]
    dataset = make_dataset(user, pairs=pairs)
    for pair in dataset.pairs.all():
        ImagePair.objects.filter(pk=pair.pk).update(category=CATEGORIES[pair.name])
    experiment = run_services.experiment_create(
        owner=user, dataset=dataset, name="e", detectors=[SILENT, TRIGGER], seed=11
    )
    run = run_services.run_start(experiment=experiment)
    for seed, pair in enumerate(dataset.pairs.all()):
        for detector in (SILENT, TRIGGER):
            mask = predicted(detector, pair.name)
            metrics = pair_metrics(probability(mask, seed), mask, labels()[pair.name])
            key = storage.save_bytes(f"test/{run.pk}/{detector}/{pair.pk}.png", mask_png(mask))
            Result.objects.create(
                run=run, pair=pair, detector=detector, metrics=metrics, iou=metrics["iou"], f1=metrics["f1"],
                latency_ms=1.0, mask_key=key,
            )  # fmt: skip
    run.leaderboard = build_leaderboard(run)
    run.state = "succeeded"
    run.save()
    return run


def rows_of(run) -> dict[str, dict]:
    return {row["detector"]: row for row in run.leaderboard["detectors"]}


@pytest.mark.django_db
def test_per_pair_means_are_over_pairs_with_change_only(constructed_run):
    rows = rows_of(constructed_run)
    silent = rows[SILENT]
    # over all five pairs SILENT would score (0 + 0 + 1 + 1 + 1) / 5 = 0.6 (empty prediction on an empty label)
    assert silent["per_pair_mean"]["iou"] == 0.0 and silent["per_pair_mean"]["f1"] == 0.0
    assert tuple(silent["ci"]["iou"]) == (0.0, 0.0)
    assert (silent["n_pairs"], silent["n_changed_pairs"], silent["n_no_change_pairs"]) == (5, 2, 3)
    label = labels()
    for name, row in rows.items():
        per_pair = [sk_scores(predicted(name, p), label[p]) for p in CHANGED_BOXES]
        for metric in ("iou", "f1", "precision", "recall"):
            values = [s[metric] for s in per_pair]
            assert row["per_pair_mean"][metric] == pytest.approx(np.mean(values), abs=1e-12)
            if np.ptp(values) > 0:
                assert tuple(row["ci"][metric]) == pytest.approx(bootstrap(values, seed=11), abs=1e-12)
        fp_areas = [np.sum(predicted(name, p) & ~label[p]) / SIZE**2 for p in CHANGED_BOXES]
        assert row["per_pair_mean"]["fp_area"] == pytest.approx(np.mean(fp_areas), abs=1e-12)


@pytest.mark.django_db
def test_false_alarms_on_pairs_without_change(constructed_run):
    rows = rows_of(constructed_run)
    assert rows[SILENT]["no_change"]["false_alarm_rate"] == 0.0
    assert rows[SILENT]["no_change"]["fp_area"] == 0.0
    assert tuple(rows[SILENT]["ci"]["false_alarm_rate"]) == pytest.approx(wilson(0, 3), abs=1e-12)
    trigger = rows[TRIGGER]["no_change"]
    areas = {p: box_mask(box).sum() / SIZE**2 for p, box in TRIGGER_FALSE_PIXELS.items()}  # 0.0005, 0.01, 0.2
    assert trigger["min_false_alarm_area"] == MIN_FALSE_ALARM_AREA == 0.001
    assert trigger["false_alarms"] == 2 and trigger["n_pairs"] == 3
    assert trigger["false_alarm_rate"] == pytest.approx(2 / 3, abs=1e-12)
    assert trigger["fp_area"] == pytest.approx(np.mean(list(areas.values())), abs=1e-12)
    assert tuple(rows[TRIGGER]["ci"]["false_alarm_rate"]) == pytest.approx(wilson(2, 3), abs=1e-12)
    assert tuple(rows[TRIGGER]["ci"]["no_change_fp_area"]) == pytest.approx(
        bootstrap(list(areas.values()), seed=11), abs=1e-12
    )


def test_the_minimum_false_alarm_area_is_a_strict_threshold():
    label = np.zeros((SIZE, SIZE), bool)
    at, above = np.zeros_like(label), np.zeros_like(label)
    at.ravel()[:10] = True  # exactly 0.001 of the pixels
    above.ravel()[:11] = True
    assert pair_metrics(probability(at, 0), at, label)["false_alarm"] is False
    assert pair_metrics(probability(above, 0), above, label)["false_alarm"] is True
    changed = pair_metrics(probability(at, 0), at, at)
    assert changed["has_change"] is True and changed["false_alarm"] is None


@pytest.mark.django_db
def test_pooled_figures_stay_over_every_labelled_pair(constructed_run):
    label = labels()
    for name, row in rows_of(constructed_run).items():
        y = np.concatenate([label[p].ravel() for p in label])
        pred = np.concatenate([predicted(name, p).ravel() for p in label])
        assert row["pooled"]["iou"] == pytest.approx(sk.jaccard_score(y, pred, zero_division=1.0), abs=1e-12)
        assert row["pooled"]["precision"] == pytest.approx(sk.precision_score(y, pred, zero_division=1.0))
        probs = np.concatenate(
            [probability(predicted(name, p.name), seed).ravel()
             for seed, p in enumerate(constructed_run.experiment.dataset.pairs.all())]
        )  # fmt: skip
        y = np.concatenate([label[p.name].ravel() for p in constructed_run.experiment.dataset.pairs.all()])
        assert abs(row["pooled"]["auroc"] - sk.roc_auc_score(y, probs)) <= row["pooled"]["auroc_bound"]
        assert abs(row["pooled"]["ap"] - sk.average_precision_score(y, probs)) <= row["pooled"]["ap_bound"]
        assert row["pooled"]["ap_bound"] < 2e-3  # 50 000 pixels; the 256-level histograms were off by up to 3.5e-3


@pytest.mark.django_db
def test_the_paired_comparison_uses_pairs_with_change_only(constructed_run):
    stored = rows_of(constructed_run)[TRIGGER]["comparison"]  # against SILENT, the run's baseline
    trigger = [sk_scores(predicted(TRIGGER, p), labels()[p])["iou"] for p in sorted(CHANGED_BOXES)]
    assert stored["n"] == 2 and stored["wins"] == 2 and stored["losses"] == 0
    assert stored["mean_difference"] == pytest.approx(np.mean(trigger), abs=1e-12)
    assert stored["wilcoxon_p"] == pytest.approx(stats.wilcoxon(trigger, [0.0, 0.0]).pvalue, rel=1e-12)
    rechosen = {
        r["detector"]: r
        for r in leaderboard_records(constructed_run, LeaderboardState(baseline=TRIGGER))  # computed from the results
    }
    assert rechosen[SILENT]["vs_baseline_n"] == 2 and rechosen[SILENT]["vs_baseline_losses"] == 2


@pytest.mark.django_db
def test_categories_take_means_over_their_pairs_with_change(constructed_run):
    categories = constructed_run.leaderboard["categories"]
    assert categories["mixed"][SILENT]["per_pair_mean"]["iou"] == 0.0
    assert categories["mixed"][SILENT]["n_changed_pairs"] == 1 and categories["mixed"][SILENT]["n_pairs"] == 3
    assert categories["rest"][TRIGGER]["no_change"]["false_alarm_rate"] == 1.0  # p4: 2000 px
    assert categories["mixed"][TRIGGER]["no_change"]["false_alarm_rate"] == 0.5  # p2: 5 px, p3: 100 px


@pytest.mark.django_db
def test_columns_carry_the_new_figures_to_page_and_exports(client, user, constructed_run):
    records = {r["detector"]: r for r in leaderboard_records(constructed_run)}
    trigger = records[TRIGGER]
    assert trigger["false_alarm_rate"] == pytest.approx(2 / 3)
    assert trigger["false_alarm_rate_ci_low"] == pytest.approx(wilson(2, 3)[0])
    assert trigger["no_change_fp_area"] == pytest.approx((5 + 100 + 2000) / 3 / SIZE**2)
    assert (trigger["n_changed_pairs"], trigger["n_no_change_pairs"]) == (2, 3)
    assert trigger["pooled_auroc_bound"] is not None and trigger["pooled_ap_bound"] is not None
    assert records[SILENT]["mean_iou"] == 0.0
    client.force_login(user)
    from django.urls import reverse

    page = client.get(reverse("experiments:run_detail", args=[constructed_run.pk])).content.decode()
    assert "False-alarm rate (no-change pairs)" in page and "FP area (no-change pairs, mean)" in page
    assert "2 with change · 3 without" in page


# --------------------------------------------------------------------------- the REST API alone
def image_from(api, url) -> np.ndarray:
    response = api.get(url)
    assert response.status_code == 200
    return np.array(Image.open(io.BytesIO(b"".join(response.streaming_content))))


@pytest.fixture
def engine_run(user, make_pair_bytes, no_queue):
    """A real run: two pairs with change, two without (one of them with a bright patch that is not
    a change, so detectors fire on it)."""
    rng = np.random.default_rng(5)
    a = rng.integers(60, 120, size=(48, 48, 3), dtype=np.uint8)
    shadow = a.copy()
    shadow[5:20, 5:30] += 100
    empty = png_bytes(np.zeros((48, 48), np.uint8))
    pairs = [
        ("c0", *make_pair_bytes(seed=0)),
        ("c1", *make_pair_bytes(seed=1, box=(20, 4, 40, 30))),
        ("n0", png_bytes(a), png_bytes(a), empty),
        ("n1", png_bytes(a), png_bytes(shadow), empty),
    ]
    dataset = make_dataset(user, pairs=pairs)
    experiment = run_services.experiment_create(
        owner=user, dataset=dataset, name="e", detectors=["absdiff", "ssim"], threshold=0.2, seed=3
    )
    run = run_in_process(run_services.run_start(experiment=experiment))
    assert run.state == "succeeded", run.error
    return run


@pytest.mark.django_db
def test_every_pooled_and_per_pair_figure_is_reproducible_from_the_rest_api(user, engine_run):
    """Masks, labels and valid areas from media URLs (valid = not white in the error map); no
    platform code below. AUROC/AP need the probabilities, which the API does not serve (heatmaps
    are 8-bit renderings): they are only checked to be there."""
    from tests.api.conftest import token_client

    api = token_client(user)
    board = api.get(f"/api/v1/runs/{engine_run.pk}/leaderboard/").json()
    seed = board["settings"]["seed"]
    dataset = api.get(f"/api/v1/datasets/{board['dataset']}/pairs/", {"page_size": 200}).json()["results"]
    label_of = {p["id"]: image_from(api, p["label_url"]) > 127 for p in dataset}
    results = api.get(f"/api/v1/runs/{engine_run.pk}/results/", {"page_size": 200}).json()["results"]
    assert len(results) == 8
    rows = {row["detector"]: row for row in board["rows"]}
    stored = {row["detector"]: row for row in board["leaderboard"]["detectors"]}
    per_detector = {}
    for result in results:
        metrics, label = result["metrics"], label_of[result["pair"]["id"]]
        pred = image_from(api, result["mask_url"]) > 127
        valid = ~np.all(image_from(api, result["error_map_url"])[..., :3] == 255, axis=-1)
        y, p = label[valid], pred[valid]
        counts = {"tp": int(np.sum(y & p)), "fp": int(np.sum(~y & p)), "fn": int(np.sum(y & ~p)),
                  "tn": int(np.sum(~y & ~p))}  # fmt: skip
        assert {k: metrics[k] for k in counts} == counts
        for name, value in sk_scores(p, y).items():
            assert metrics[name] == pytest.approx(value, abs=1e-12)
        assert metrics["oa"] == pytest.approx(sk.accuracy_score(y, p))
        assert metrics["fp_area"] == pytest.approx(counts["fp"] / valid.sum())
        assert metrics["changed_fraction"] == pytest.approx(p.sum() / valid.sum())
        assert metrics["has_change"] == bool(y.any())
        assert metrics["false_alarm"] == (None if y.any() else bool(counts["fp"] / valid.sum() > 0.001))
        eight = np.ones((3, 3))
        pred_ids, n_pred = ndimage.label(pred & valid, structure=eight)
        label_ids, n_label = ndimage.label(label & valid, structure=eight)
        matched = sum(
            1
            for i in range(1, n_pred + 1)
            for j in range(1, n_label + 1)
            if np.sum((pred_ids == i) & (label_ids == j)) >= 0.5 * np.sum((pred_ids == i) | (label_ids == j))
        )
        assert metrics["object_recall"] == pytest.approx(matched / n_label if n_label else 1.0)
        assert metrics["object_precision"] == pytest.approx(matched / n_pred if n_pred else 1.0)
        assert "auroc" in metrics and "ap" in metrics and "hist_pos" not in metrics
        per_detector.setdefault(result["detector"], []).append((result["pair"]["id"], y, p, metrics))
    for name, items in per_detector.items():
        y = np.concatenate([item[1] for item in items])
        p = np.concatenate([item[2] for item in items])
        assert rows[name]["pooled_iou"] == pytest.approx(sk.jaccard_score(y, p, zero_division=1.0), abs=1e-12)
        assert rows[name]["pooled_f1"] == pytest.approx(sk.f1_score(y, p, zero_division=1.0), abs=1e-12)
        assert rows[name]["pooled_kappa"] == pytest.approx(sk.cohen_kappa_score(y, p), abs=1e-12)
        changed = [item for item in items if item[1].any()]
        unchanged = [item for item in items if not item[1].any()]
        assert (rows[name]["n_changed_pairs"], rows[name]["n_no_change_pairs"]) == (2, 2)
        ious = [sk.jaccard_score(item[1], item[2], zero_division=1.0) for item in changed]
        assert rows[name]["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-12)
        if np.ptp(ious) > 0:
            assert (rows[name]["mean_iou_ci_low"], rows[name]["mean_iou_ci_high"]) == pytest.approx(
                bootstrap(ious, seed), abs=1e-12
            )
        areas = [np.sum(item[2]) / item[2].size for item in unchanged]
        alarms = sum(area > 0.001 for area in areas)
        assert rows[name]["false_alarm_rate"] == pytest.approx(alarms / len(areas))
        assert (rows[name]["false_alarm_rate_ci_low"], rows[name]["false_alarm_rate_ci_high"]) == pytest.approx(
            wilson(alarms, len(areas)), abs=1e-12
        )
        assert rows[name]["no_change_fp_area"] == pytest.approx(np.mean(areas), abs=1e-12)
        assert stored[name]["pooled"]["auroc_bound"] is not None
    # the paired comparison: per-pair IoU on the pairs with change
    baseline = board["baseline"]
    other = next(name for name in per_detector if name != baseline)
    iou = {name: {item[0]: sk.jaccard_score(item[1], item[2], zero_division=1.0) for item in items if item[1].any()}
           for name, items in per_detector.items()}  # fmt: skip
    keys = sorted(iou[baseline])
    difference = [iou[other][k] - iou[baseline][k] for k in keys]
    assert rows[other]["vs_baseline_n"] == 2
    assert rows[other]["vs_baseline_mean_difference"] == pytest.approx(np.mean(difference), abs=1e-12)
    if np.any(np.asarray(difference) != 0):
        assert rows[other]["vs_baseline_wilcoxon_p"] == pytest.approx(
            stats.wilcoxon([iou[other][k] for k in keys], [iou[baseline][k] for k in keys]).pvalue, rel=1e-12
        )


@pytest.mark.django_db
def test_results_stored_by_older_code_pool_with_a_looser_bound_and_are_never_mixed(constructed_run):
    """Results from before (256 levels round(p * 255), no `hist_bins`) still pool, with a bound
    that treats every level as an interval; results of both layouts are not summed."""
    from inference.metrics import score_histogram

    pairs = list(constructed_run.experiment.dataset.pairs.all())
    for seed, pair in enumerate(pairs):
        for result in Result.objects.filter(run=constructed_run, pair=pair, detector=TRIGGER):
            prob = probability(predicted(TRIGGER, pair.name), seed)
            pos, neg = score_histogram(prob, labels()[pair.name], bins=256)
            metrics = {k: v for k, v in result.metrics.items() if k != "hist_bins"}
            result.metrics = metrics | {"hist_pos": pos.tolist(), "hist_neg": neg.tolist()}
            result.save()
    pooled = rows_of_built(constructed_run)[TRIGGER]["pooled"]
    probs = np.concatenate([probability(predicted(TRIGGER, p.name), s).ravel() for s, p in enumerate(pairs)])
    y = np.concatenate([labels()[p.name].ravel() for p in pairs])
    assert abs(pooled["auroc"] - sk.roc_auc_score(y, probs)) <= pooled["auroc_bound"]
    assert abs(pooled["ap"] - sk.average_precision_score(y, probs)) <= pooled["ap_bound"]

    fresh = Result.objects.filter(run=constructed_run, pair=pairs[0], detector=TRIGGER).get()
    mask = predicted(TRIGGER, pairs[0].name)
    fresh.metrics = pair_metrics(probability(mask, 0), mask, labels()[pairs[0].name])
    fresh.save()
    pooled = rows_of_built(constructed_run)[TRIGGER]["pooled"]
    assert pooled["auroc"] is None and pooled["ap"] is None and "layout" in pooled["ranking_note"]
    assert pooled["iou"] is not None


def rows_of_built(run) -> dict[str, dict]:
    return {row["detector"]: row for row in build_leaderboard(run)["detectors"]}


@pytest.mark.django_db
def test_agreement_is_each_pairs_mask_iou_and_its_mean(constructed_run):
    """The detectors' agreement, read pair by pair from the stored masks, against scikit-learn's
    Jaccard index of the masks (two empty masks agree fully)."""
    pairs = {str(p.pk): p.name for p in constructed_run.experiment.dataset.pairs.all()}
    built = build_leaderboard(constructed_run)
    by_pair = built["agreement_by_pair"][f"{SILENT}|{TRIGGER}"]
    assert set(by_pair) == set(pairs)
    expected = {}
    for pk, name in pairs.items():
        a, b = predicted(SILENT, name).ravel(), predicted(TRIGGER, name).ravel()
        expected[pk] = sk.jaccard_score(a, b, zero_division=1.0)
        assert by_pair[pk] == pytest.approx(expected[pk])
    (row,) = built["agreement"]
    assert (row["a"], row["b"]) == (SILENT, TRIGGER)
    assert row["mean_iou"] == pytest.approx(np.mean(list(expected.values())))
