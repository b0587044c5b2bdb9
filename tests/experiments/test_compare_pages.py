"""The experiments and runs lists, an experiment's page, comparing runs and the benchmark matrix, as pages."""

import re

import pytest

from experiments.models import Run
from experiments.pages.lists import PAGE_SIZE
from tests.api.test_lists_and_compare import finished, noisy_pairs, queued, reference_wilcoxon
from tests.factories import make_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(user, other_user, no_queue):
    dataset = make_dataset(user, name="noisy", pairs=noisy_pairs(8, seed=3))
    low = finished(user, dataset, name="low threshold", detectors=("absdiff", "ssim"), threshold=0.15)
    high = finished(user, dataset, name="high threshold", detectors=("absdiff",), threshold=0.45)
    waiting = queued(user, make_dataset(user, name="other", pairs=noisy_pairs(1)), name="waiting one")
    theirs = finished(other_user, make_dataset(other_user, name="noisy", pairs=noisy_pairs(2)), name="secret",
                      detectors=("absdiff",))  # fmt: skip
    return {"low": low, "high": high, "waiting": waiting, "theirs": theirs}


def listed_run_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-run-id="(\d+)"', response.content.decode())]


def test_the_runs_page_lists_yours_with_links_to_each_experiment(client, user, runs):
    client.force_login(user)
    page = client.get("/runs/")
    assert page.status_code == 200
    assert listed_run_ids(page) == [runs["waiting"].pk, runs["high"].pk, runs["low"].pk]
    html = page.content.decode()
    assert f'href="/experiments/{runs["low"].experiment_id}/"' in html and "secret" not in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("search=threshold", ["high", "low"]),
        ("search=WAITING", ["waiting"]),
        ("state=succeeded", ["high", "low"]),
        ("state=queued", ["waiting"]),
        ("detector=ssim", ["low"]),
        ("detector=abs", []),
    ],
)
def test_the_runs_page_filters_from_the_url(client, user, runs, query, expected):
    client.force_login(user)
    assert listed_run_ids(client.get(f"/runs/?{query}")) == [runs[name].pk for name in expected]


def test_the_runs_page_filters_by_dataset_and_keeps_filters_in_page_links(client, user, runs, no_queue):
    client.force_login(user)
    dataset = runs["low"].experiment.dataset
    assert listed_run_ids(client.get(f"/runs/?dataset={dataset.pk}")) == [runs["high"].pk, runs["low"].pk]
    for _ in range(PAGE_SIZE + 1):
        Run.objects.create(experiment=runs["waiting"].experiment, state="cancelled")
    first = client.get("/runs/?state=cancelled").content.decode()
    assert "page 1 of 2" in first and 'href="?state=cancelled&amp;page=2"' in first
    second = client.get("/runs/?state=cancelled&page=2")
    assert len(listed_run_ids(second)) == 1 and "page 2 of 2" in second.content.decode()
    assert len(listed_run_ids(client.get("/runs/?state=cancelled"))) == PAGE_SIZE


def test_a_bad_filter_answers_400_saying_what_to_send(client, user, runs):
    client.force_login(user)
    page = client.get("/runs/?created_after=someday")
    assert page.status_code == 400 and "created_after must be a date" in page.content.decode()
    assert listed_run_ids(page) == []


def test_the_experiments_page_and_an_experiments_page(client, user, other_user, runs):
    client.force_login(user)
    html = client.get("/experiments/?state=succeeded").content.decode()
    assert "low threshold" in html and "high threshold" in html and "waiting one" not in html
    detail = client.get(f"/experiments/{runs['low'].experiment_id}/")
    assert detail.status_code == 200 and listed_run_ids(detail) == [runs["low"].pk]
    assert client.get(f"/experiments/{runs['theirs'].experiment_id}/").status_code == 404


def test_the_dashboard_and_run_page_link_experiment_names(client, user, runs):
    client.force_login(user)
    link = f'href="/experiments/{runs["low"].experiment_id}/"'
    assert link in client.get("/").content.decode()
    assert link in client.get(f"/runs/{runs['low'].pk}/").content.decode()
    nav = client.get("/").content.decode()
    assert all(f'href="/{path}/"' in nav for path in ("experiments", "runs", "compare", "benchmarks"))


def test_the_compare_page_shows_the_table_and_scipys_wilcoxon(client, user, runs):
    client.force_login(user)
    low, high = runs["low"], runs["high"]
    page = client.get(f"/compare/?runs={low.pk},{high.pk}")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'<tr data-detector="absdiff" data-run="{high.pk}">' in html
    assert html.count('data-detector="absdiff" data-run=') == 3  # two table rows and one test
    _, p, _ = reference_wilcoxon(low, high, "absdiff")
    cell = re.search(rf'data-detector="absdiff" data-run="{high.pk}"><td>absdiff.*?class="num p-value">([^<]+)<',
                     html, re.S)  # fmt: skip
    assert cell and cell.group(1) == f"{p:.4f}"


def test_the_list_checkboxes_open_a_comparison(client, user, runs):
    client.force_login(user)
    low, high = runs["low"], runs["high"]
    page = client.get(f"/compare/?runs={low.pk}&runs={high.pk}")
    assert page.status_code == 200 and "Paired tests against run" in page.content.decode()


def test_comparing_another_users_run_is_a_404(client, user, runs):
    client.force_login(user)
    assert client.get(f"/compare/?runs={runs['low'].pk},{runs['theirs'].pk}").status_code == 404


def test_bad_comparisons_say_why(client, user, runs):
    client.force_login(user)
    one = client.get(f"/compare/?runs={runs['low'].pk}")
    assert one.status_code == 400 and "two or more" in one.content.decode()
    unfinished = client.get(f"/compare/?runs={runs['low'].pk},{runs['waiting'].pk}")
    assert unfinished.status_code == 409 and "queued" in unfinished.content.decode()


def test_all_runs_of_a_detector(client, user, runs):
    client.force_login(user)
    html = client.get("/compare/?detector=absdiff").content.decode()
    assert f'data-run="{runs["high"].pk}"' in html and f'data-run="{runs["theirs"].pk}"' not in html
    assert 'data-detector="ssim"' not in html


def test_the_benchmarks_page_links_each_cell_to_its_run(client, user, other_user, runs):
    client.force_login(user)
    html = client.get("/benchmarks/").content.decode()
    f1 = runs["high"].leaderboard["detectors"][0]["pooled"]["f1"]
    assert f'href="/runs/{runs["high"].pk}/" data-run="{runs["high"].pk}"' in html and f"F1 {f1:.3f}" in html
    assert f'data-run="{runs["low"].pk}"' in html  # ssim's newest run
    client.force_login(other_user)
    assert f'data-run="{runs["high"].pk}"' not in client.get("/benchmarks/").content.decode()
