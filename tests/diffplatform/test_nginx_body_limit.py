"""Issue 26, case 8: nginx's body limit silently capped ONNX_MAX_MB. It is now derived from the
app's own upload limits by deploy/nginx-limits.envsh, which the nginx image's entrypoint sources
before it fills deploy/nginx.conf; these tests hold the script and the app to one rule."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SCRIPT = ROOT / "deploy" / "nginx-limits.envsh"


def nginx_body_mb(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", '. "$0" && echo "$NGINX_MAX_BODY_MB"', str(SCRIPT)],
                          env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True)  # fmt: skip


def app_limits(env: dict) -> dict:
    """The app's settings under `env`, read by a fresh process as the web container would."""
    code = (
        "import django, json; from django.conf import settings; django.setup(); "
        "print(json.dumps({k: v for k, v in vars(settings._wrapped).items() if k.endswith('_MB')}))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("MAX_UPLOAD_MB", "ONNX_MAX_MB")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**clean, "DJANGO_SETTINGS_MODULE": "diffplatform.settings.test", **env})  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("env", [{}, {"ONNX_MAX_MB": "1000"}, {"MAX_UPLOAD_MB": "700", "ONNX_MAX_MB": "30"}])
def test_nginx_takes_one_mb_more_than_the_largest_upload_the_app_accepts(env):
    limits = app_limits(env)
    # the request-body limits diffplatform/body_limit.py enforces (other *_MB settings are no body limits)
    assert limits["LARGEST_UPLOAD_MB"] == max(limits["MAX_UPLOAD_MB"], limits["ONNX_MAX_MB"])
    result = nginx_body_mb(env)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == limits["LARGEST_UPLOAD_MB"] + 1


@pytest.mark.parametrize("bad", ["", "abc", "-5", "0", "1.5"])
def test_a_limit_that_is_not_a_whole_number_stops_nginx_from_starting(bad):
    result = nginx_body_mb({"ONNX_MAX_MB": bad} if bad else {"MAX_UPLOAD_MB": "", "ONNX_MAX_MB": "x"})
    assert result.returncode != 0 and "positive whole numbers" in result.stderr


def test_the_template_uses_the_derived_limit_and_compose_feeds_it_the_apps_values():
    assert "client_max_body_size ${NGINX_MAX_BODY_MB}m;" in (ROOT / "deploy" / "nginx.conf").read_text()
    nginx = COMPOSE["services"]["nginx"]
    assert "./deploy/nginx-limits.envsh:/docker-entrypoint.d/15-diffplatform-limits.envsh:ro" in nginx["volumes"]
    assert os.access(SCRIPT, os.X_OK)  # the image's entrypoint sources only executable *.envsh files
    for name in ("MAX_UPLOAD_MB", "ONNX_MAX_MB"):
        assert nginx["environment"][name] == COMPOSE["x-app-env"][name], name


def test_the_rendered_config_carries_it():
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        from render_nginx_conf import render
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    assert render("client_max_body_size ${NGINX_MAX_BODY_MB}m;", {"ONNX_MAX_MB": "350"}) == "client_max_body_size 351m;"
