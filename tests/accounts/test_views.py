import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework.authtoken.models import Token


@pytest.mark.django_db
def test_sign_up_creates_the_account_and_logs_in(client):
    response = client.post(reverse("accounts:sign_up"), {"username": "newcomer", "email": "n@example.org",
                           "password1": "a long passphrase 42", "password2": "a long passphrase 42"})  # fmt: skip
    assert response.status_code == 302
    assert get_user_model().objects.filter(username="newcomer").exists()
    assert client.get(reverse("experiments:dashboard")).status_code == 200


@pytest.mark.django_db
def test_sign_up_refuses_a_weak_password_and_creates_nothing(client):
    response = client.post(reverse("accounts:sign_up"), {"username": "weak", "password1": "123", "password2": "123"})
    assert response.status_code == 200
    assert "too short" in response.content.decode()
    assert not get_user_model().objects.filter(username="weak").exists()


@pytest.mark.django_db
def test_the_token_page_shows_a_token_and_rotates_it(client, user):
    client.force_login(user)
    first = client.get(reverse("accounts:api_token"))
    token = Token.objects.get(user=user).key
    assert token in first.content.decode()
    client.post(reverse("accounts:api_token"))
    assert Token.objects.get(user=user).key != token


@pytest.mark.django_db
def test_log_out_needs_a_post_and_ends_the_session(client, user):
    client.force_login(user)
    client.post(reverse("accounts:logout"))
    assert client.get(reverse("experiments:dashboard")).status_code == 302


@pytest.mark.django_db
def test_demo_account_command_prints_working_credentials(client):
    import io
    import re

    from django.core.management import call_command

    out = io.StringIO()
    call_command("ensure_demo_user", stdout=out)
    password = re.search(r"password '([^']+)'", out.getvalue()).group(1)
    assert client.login(username="demo", password=password)
