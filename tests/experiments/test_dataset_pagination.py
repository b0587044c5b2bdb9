"""The dataset page shows its pairs 50 at a time, with page links that keep the category filter."""

import re

import pytest
from django.urls import reverse

from experiments.models import ImagePair
from experiments.pages.datasets import PAIRS_PER_PAGE
from tests.factories import make_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def big_dataset(user, make_pair_bytes):
    dataset = make_dataset(user, pairs=[("p000", *make_pair_bytes(seed=0))])
    first = dataset.pairs.get()
    # Rows only (the page never reads the files): 2.5 pages' worth, half of them "urban".
    fields = {"image_a": first.image_a, "image_b": first.image_b, "label": first.label, "a_bytes": 1, "b_bytes": 1}
    size = {"a_width": 48, "a_height": 48, "b_width": 48, "b_height": 48}
    ImagePair.objects.bulk_create(
        ImagePair(dataset=dataset, name=f"p{i:03d}", category="urban" if i % 2 else "forest", **fields, **size)
        for i in range(1, 125)
    )
    return dataset


def names_on(response) -> list[str]:
    table = response.content.decode().split('id="pairs"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr>\s*<td>(p\d{3})</td>", table)


def test_pairs_come_in_pages_of_50_with_links(client, user, big_dataset):
    assert PAIRS_PER_PAGE == 50
    client.force_login(user)
    url = reverse("experiments:dataset_detail", args=[big_dataset.pk])
    first = client.get(url)
    assert names_on(first) == [f"p{i:03d}" for i in range(50)]
    html = first.content.decode()
    assert "pairs 1–50 of 125" in html and "page 1 of 3" in html
    assert 'href="?page=2" rel="next"' in html and 'href="?page=3"' in html
    assert html.count('loading="lazy"') == 3 * 50  # A, B and label thumbnails, none eager
    assert "all (125)" in html

    last = client.get(url, {"page": 3})
    assert names_on(last) == [f"p{i:03d}" for i in range(100, 125)]
    assert 'rel="next"' not in last.content.decode() and 'href="?page=2" rel="prev"' in last.content.decode()
    assert names_on(client.get(url, {"page": "nonsense"})) == names_on(first)  # a bad page number: the first
    assert names_on(client.get(url, {"page": 99})) == names_on(last)  # past the end: the last


def test_page_links_keep_the_category(client, user, big_dataset):
    client.force_login(user)
    url = reverse("experiments:dataset_detail", args=[big_dataset.pk])
    response = client.get(url, {"category": "urban"})
    urban = sorted(p.name for p in big_dataset.pairs.filter(category="urban"))
    assert len(urban) == 62
    assert names_on(response) == urban[:50]
    assert 'href="?category=urban&amp;page=2" rel="next"' in response.content.decode()
    assert names_on(client.get(url, {"category": "urban", "page": 2})) == urban[50:]


def test_a_small_dataset_has_no_pager(client, user, make_pair_bytes):
    dataset = make_dataset(user, pairs=[("only", *make_pair_bytes(seed=1))])
    client.force_login(user)
    html = client.get(reverse("experiments:dataset_detail", args=[dataset.pk])).content.decode()
    assert 'id="pairs-pager"' not in html
