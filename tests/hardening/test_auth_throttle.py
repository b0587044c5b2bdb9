"""Issue 26, case 6: authentication attempts are limited per real client address.

The log-in and sign-up pages, the admin's log-in and the token API share one budget
(`API_THROTTLE_AUTH`, 20/minute by default) kept in Redis; the client is `REMOTE_ADDR`, or behind
`TRUSTED_PROXY_COUNT` proxies the address that many hops from the right of `X-Forwarded-For`, so a
fresh header per request escapes nothing. Beyond the budget: 429 with `Retry-After` and words
saying when to try again.
"""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.test import RequestFactory

from accounts.attempts import client_address
from tests.api.conftest import fresh_throttles  # noqa: F401 - autouse: no counters from other tests
from tests.factories import PASSWORD
from tests.live_services import daphne_server, service_env  # noqa: F401

LIMIT = 20  # the default API_THROTTLE_AUTH
JSON = "application/json"


def wrong_password(user) -> dict:
    return {"username": user.username, "password": "not " + PASSWORD}


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        (0, "", "192.0.2.1"),
        (0, "203.0.113.7", "192.0.2.1"),  # no proxy trusted: the header is the client's own words
        (1, "", "192.0.2.1"),
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # the client's prefix is ignored
        (1, "6.6.6.6,203.0.113.7 ", "203.0.113.7"),
        (2, "6.6.6.6, 198.51.100.2, 203.0.113.7", "198.51.100.2"),
        (2, "203.0.113.7", "203.0.113.7"),  # fewer hops than proxies: the leftmost
        (1, "6.6.6.6, not-an-address", "192.0.2.1"),
        (1, "6.6.6.6, 2001:db8::1", "2001:db8::1"),
    ],
)
def test_the_client_address_is_taken_that_many_hops_from_the_right(settings, trusted, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = trusted
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected


@pytest.mark.django_db
def test_40_wrong_passwords_with_fresh_forwarded_headers_meet_429_on_the_token_api(client, user):
    statuses = []
    for i in range(40):
        response = client.post(
            "/api/v1/auth/token/",
            wrong_password(user),
            content_type=JSON,
            HTTP_X_FORWARDED_FOR=f"10.{i}.{i}.{i}",
            REMOTE_ADDR="192.0.2.1",
        )
        statuses.append(response.status_code)
    assert statuses == [401] * LIMIT + [429] * (40 - LIMIT)
    wait = int(response["Retry-After"])
    unit = "second" if wait == 1 else "seconds"  # DRF's message says "1 second" when the wait is one
    assert 0 < wait <= 60 and f"{wait} {unit}" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_behind_one_proxy_the_address_it_appended_is_limited_and_others_are_not(client, user, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "172.18.0.5"}  # nginx, the same for everyone

    def attempt(real, fake):
        forwarded = f"{fake}, {real}"  # what the client sent, then what nginx appended
        return client.post(
            "/api/v1/auth/token/", wrong_password(user), content_type=JSON, HTTP_X_FORWARDED_FOR=forwarded, **proxy
        )

    statuses = [attempt("203.0.113.7", f"10.0.0.{i}").status_code for i in range(LIMIT + 5)]
    assert statuses == [401] * LIMIT + [429] * 5
    assert attempt("203.0.113.8", "10.0.0.1").status_code == 401  # another client keeps its budget


@pytest.mark.django_db
def test_the_pages_and_the_api_share_one_budget_and_the_page_says_when(client, user):
    pages = ["/accounts/login/", "/admin/login/"]
    for i in range(LIMIT - 2):
        assert client.post(pages[i % 2], wrong_password(user)).status_code == 200  # the form again, with its error
    sign_up = {"username": "newcomer", "password1": "a long passphrase 42", "password2": "different 42"}
    assert client.post("/accounts/sign-up/", sign_up).status_code == 200
    assert client.post("/api/v1/auth/token/", wrong_password(user), content_type=JSON).status_code == 401
    for path in (*pages, "/accounts/sign-up/"):
        response = client.post(path, wrong_password(user))
        assert response.status_code == 429, path
        wait = int(response["Retry-After"])
        assert 0 < wait <= 60 and re.search(
            rf"Try again in {wait} seconds? \(after \d\d:\d\d:\d\d UTC\)", response.content.decode()
        )
    assert client.post("/api/v1/auth/token/", wrong_password(user), content_type=JSON).status_code == 429
    # Reading the pages is not an attempt.
    assert client.get("/accounts/login/").status_code == 200


@pytest.mark.django_db
def test_a_correct_password_beyond_the_budget_still_waits(client, user):
    for _ in range(LIMIT):
        client.post("/accounts/login/", wrong_password(user))
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429 and "_auth_user_id" not in client.session


@pytest.mark.integration
def test_a_real_daphne_answers_429_to_fresh_forwarded_headers(daphne_server, user):  # noqa: F811
    """Across processes (the counters are in Redis) and concurrently (they are atomic)."""
    statuses = [
        requests.post(f"{daphne_server}/api/v1/auth/token/", json=wrong_password(user),
                      headers={"X-Forwarded-For": f"10.0.{i}.1"}, timeout=10).status_code
        for i in range(LIMIT // 2)
    ]  # fmt: skip

    def attempt(i):
        return requests.post(f"{daphne_server}/api/v1/auth/token/", json=wrong_password(user),
                             headers={"X-Forwarded-For": f"10.1.{i}.1"}, timeout=30)  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(40 - LIMIT // 2)))
    statuses += [answer.status_code for answer in answers]
    assert statuses.count(401) == LIMIT and statuses.count(429) == 40 - LIMIT, statuses
    assert all(int(a.headers["Retry-After"]) > 0 for a in answers if a.status_code == 429)


@pytest.mark.integration
def test_a_real_daphne_limits_the_log_in_page(daphne_server, user):  # noqa: F811
    session = requests.Session()
    page = session.get(f"{daphne_server}/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    statuses = []
    for i in range(LIMIT + 2):
        response = session.post(
            f"{daphne_server}/accounts/login/",
            data={**wrong_password(user), "csrfmiddlewaretoken": token},
            headers={"X-Forwarded-For": f"10.2.{i}.1", "Referer": f"{daphne_server}/accounts/login/"},
            timeout=10,
        )
        statuses.append(response.status_code)
    assert statuses == [200] * LIMIT + [429] * 2, response.text[:3000]
    assert "Try again in" in response.text and int(response.headers["Retry-After"]) > 0


@pytest.fixture
def redis_down(settings, monkeypatch):
    """The cache (the throttles' store) points at a port where nothing listens; each test starts with
    empty in-process counters."""
    from accounts import attempts
    from tests.live_services import free_port

    monkeypatch.setattr(attempts, "_local", attempts._LocalAttempts())
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0"},
    }


@pytest.mark.django_db
def test_with_redis_down_each_process_still_limits_attempts(client, user, redis_down):
    """Failing open would let brute force through exactly while Redis is down; the count moves into
    the web process, per client address, with the same limit and the same answer."""
    statuses = []
    for i in range(LIMIT + 5):
        path = ("/api/v1/auth/token/", "/accounts/login/")[i % 2]
        data = wrong_password(user)
        response = (
            client.post(path, data, content_type=JSON, HTTP_X_FORWARDED_FOR=f"10.9.{i}.1")
            if path.startswith("/api")
            else client.post(path, data, HTTP_X_FORWARDED_FOR=f"10.9.{i}.1")
        )
        statuses.append(response.status_code)
    assert statuses[:LIMIT].count(429) == 0 and statuses[LIMIT:] == [429] * 5, statuses
    assert 0 < int(response["Retry-After"]) <= 60
    other = client.post("/api/v1/auth/token/", wrong_password(user), content_type=JSON, REMOTE_ADDR="192.0.2.99")
    assert other.status_code == 401  # another address keeps its budget: nobody is locked out


def test_the_in_process_counter_remembers_a_bounded_number_of_addresses(monkeypatch):
    from accounts import attempts

    local = attempts._LocalAttempts()
    monkeypatch.setattr(attempts._LocalAttempts, "MAX_ADDRESSES", 100)
    for i in range(1000):
        assert local.take(f"10.0.{i // 256}.{i % 256}", 2, 60, 1000.0) == 0
    assert len(local.times) == 100
    last = "10.0.3.231"  # the 1000th address: its first attempt was at 1000.0
    assert [local.take(last, 2, 60, 1000.0 + s) for s in (1, 2, 3)] == [0, 58, 57]  # the first leaves at 1060
    assert local.take(last, 2, 60, 1061.0) == 0  # the window slid past the first attempt


@pytest.mark.django_db
def test_the_only_password_page_the_admins_password_change_counts_attempts(client, staff_user):
    """accounts/ has no password page (log-in, sign-up, log-out, API token only); the admin's password
    change form takes the old password, so guessing it there counts like a log-in."""
    from django.urls import get_resolver

    names = {str(pattern.pattern) for pattern in get_resolver().url_patterns}
    accounts = {str(p.pattern) for p in get_resolver("accounts.urls").url_patterns}
    assert accounts == {"login/", "logout/", "sign-up/", "token/"} and "admin/password_change/" in names
    client.force_login(staff_user)
    guess = {"old_password": "guess", "new_password1": "a long passphrase 42", "new_password2": "a long passphrase 42"}
    statuses = [client.post("/admin/password_change/", guess).status_code for _ in range(LIMIT + 2)]
    assert statuses == [200] * LIMIT + [429] * 2
