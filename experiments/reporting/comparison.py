"""Several finished runs side by side: one table (rows detector x run, the leaderboard's columns)
and paired tests of each detector's per-pair IoU against the baseline run on the pairs they share.

Used by the compare page and `GET /api/v1/compare/` alike. Pairs are matched by what their images
are (`ImagePair.fingerprint`), so the same pair counts whether two runs scored one dataset or two
datasets holding the same images. As on a run's leaderboard, only pairs whose label has change are
compared, and p-values are Holm-adjusted over one family: per detector, the runs compared with the
baseline run.
"""

from experiments.errors import InvalidState, ServiceError
from experiments.models import LEADERBOARD_RUN_STATES, Run
from experiments.reporting import leaderboard
from experiments.reporting.leaderboard import run_identity
from experiments.runs import selectors as run_selectors
from experiments.runs.protocol import protocol_of

MAX_RUNS = 20
MATCHED_BY = "pair fingerprint (the SHA-256 of images A and B): the same images count as one pair in any dataset"


def parse_run_ids(text: str) -> list[int]:
    """`"3,1,3"` -> `[3, 1]` (order kept, repeats dropped); `ValueError` says what to send instead."""
    ids = []
    for part in (text or "").split(","):
        part = part.strip().removeprefix("#")
        if not part:
            continue
        if not (part.isascii() and part.isdigit() and 0 < int(part) < 2**63):
            raise ValueError(f"runs must be run ids separated by commas (runs=12,15); got {part[:40]!r}.")
        if int(part) not in ids:
            ids.append(int(part))
    if len(ids) < 2:
        raise ValueError("pick two or more runs to compare (runs=12,15).")
    if len(ids) > MAX_RUNS:
        raise ValueError(f"compare at most {MAX_RUNS} runs at once; got {len(ids)}.")
    return ids


def runs_by_ids(user, run_ids: list[int]) -> list[Run]:
    """The runs, in the order asked; one the user may not see, or without a leaderboard, is refused."""
    found = {run.pk: run for run in run_selectors.runs_visible_to(user).filter(pk__in=run_ids)}
    missing = [pk for pk in run_ids if pk not in found]
    if missing:
        raise ServiceError(f"Run {missing[0]} not found.", field="runs", status=404)
    unfinished = [found[pk] for pk in run_ids if found[pk].state not in LEADERBOARD_RUN_STATES]
    if unfinished:
        run = unfinished[0]
        raise InvalidState(f"Run {run.pk} is {run.state}; only runs that succeeded (or partly) can be compared.")
    return [found[pk] for pk in run_ids]


def runs_of_detector(user, detector: str) -> list[Run]:
    """The user's newest finished runs that scored `detector` (at most `MAX_RUNS`)."""
    runs = run_selectors.listed_runs(user).filter(
        state__in=LEADERBOARD_RUN_STATES,
        experiment__in=run_selectors.experiments_using(detector).values("pk"),
    )
    return list(runs.order_by("-created_at", "-pk")[:MAX_RUNS])


def run_summary(run: Run) -> dict:
    return {
        "id": run.pk,
        **run_identity(run),
        "detectors": list(run.experiment.detectors),
        "created_at": run.created_at,
        "protocol": protocol_of(run),
    }


def _by_fingerprint(per_pair: dict[int, float], fingerprints: dict[int, str]) -> dict[str, float]:
    """Per-pair values keyed by fingerprint; a run with the same images twice keeps its first pair's value."""
    values: dict[str, float] = {}
    for pair_id in sorted(per_pair):
        values.setdefault(fingerprints[pair_id], per_pair[pair_id])
    return values


def paired_tests(runs: list[Run], baseline: Run, detectors: list[str]) -> list[dict]:
    """Per detector, each other run's per-pair IoU against the baseline run's on the shared pairs."""
    from inference.statistics import compare_with_baseline

    ious = {run.pk: run_selectors.pair_ious(run, changed_only=True) for run in runs}
    pair_ids = {pk for per_run in ious.values() for per_pair in per_run.values() for pk in per_pair}
    fingerprints = run_selectors.pair_fingerprints(pair_ids)
    tests = []
    for detector in detectors:
        values = {
            run.pk: _by_fingerprint(ious[run.pk][detector], fingerprints) for run in runs if ious[run.pk].get(detector)
        }
        if baseline.pk not in values or len(values) < 2:
            continue
        compared = compare_with_baseline(values, baseline.pk, seed=baseline.experiment.seed)
        for run in runs:
            if run.pk in compared:
                tests.append({"detector": detector, "run": run.pk, "baseline_run": baseline.pk, **compared[run.pk]})
    return tests


def compare_runs(
    runs: list[Run], *, baseline_id: int | None = None, detector: str = "", same_protocol: bool = False
) -> dict:
    """The comparison of `runs` (first is the baseline unless `baseline_id` names another of them);
    with `detector`, only that detector's rows. Each row and test says in `protocol_differs` what of
    its protocol differs from the baseline run's for that detector (`experiments.runs.protocol`);
    with `same_protocol`, those are left out."""
    if not runs:
        return {"runs": [], "baseline_run": None, "detectors": [], "rows": [], "tests": [], "matched_by": MATCHED_BY,
                "same_protocol": same_protocol}  # fmt: skip
    baseline = next((run for run in runs if run.pk == baseline_id), runs[0])
    differs = _protocol_differences(runs, baseline)
    rows = []
    for order, run in enumerate(runs):
        for record in leaderboard.leaderboard_records(run):
            if detector and record["detector"] != detector:
                continue
            record = {"run": run.pk} | record | {"protocol_differs": differs.get((run.pk, record["detector"]), [])}
            if not (same_protocol and record["protocol_differs"]):
                rows.append((record["detector"], order, record))
    rows.sort(key=lambda item: (item[0], item[1]))
    detectors = sorted({name for name, _, record in rows if not record["failed"]})
    compared = [run for run in runs if any(record["run"] == run.pk for _, _, record in rows)] if same_protocol else runs
    tests = [
        test | {"protocol_differs": differs.get((test["run"], test["detector"]), [])}
        for test in paired_tests(compared, baseline, detectors)
        if not (same_protocol and differs.get((test["run"], test["detector"])))
    ]
    return {
        "runs": [run_summary(run) for run in runs],
        "baseline_run": baseline.pk,
        "detectors": detectors,
        "rows": [record for _, _, record in rows],
        "tests": tests,
        "matched_by": MATCHED_BY,
        "same_protocol": same_protocol,
    }


def _protocol_differences(runs: list[Run], baseline: Run) -> dict[tuple[int, str], list[str]]:
    """(run, detector) -> what of its protocol differs from the baseline run's for that detector (or,
    when the baseline run did not score it, from the first run that did)."""
    from experiments.runs.protocol import differences, run_comparables

    records = {run.pk: run_comparables(run) for run in runs}
    found = {}
    for run in [baseline, *runs]:
        for name, record in records[run.pk].items():
            found.setdefault(name, record)
    return {(pk, name): differences(found[name], record) for pk, per in records.items() for name, record in per.items()}


def page_columns() -> list[dict]:
    """The leaderboard's on-page columns (the same set and labels as a run's page)."""
    return [
        {"key": c.key, "label": c.label, "digits": c.digits, "higher_is_better": c.higher_is_better,
         "ci_low": f"{c.key}_ci_low" if c.ci else "", "ci_high": f"{c.key}_ci_high" if c.ci else ""}
        for c in leaderboard.COLUMNS
        if c.on_page
    ]  # fmt: skip
