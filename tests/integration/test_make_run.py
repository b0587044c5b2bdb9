"""`make run` on the embedded defaults: migrates, creates the demo account, serves, stops on Ctrl-C."""

import os
import re
import signal
import subprocess
import time

import pytest
import redis
import requests

from tests.live_services import ROOT, free_port

pytestmark = pytest.mark.integration


def test_make_run_serves_the_login_page_and_admin_and_stops_on_ctrl_c(tmp_path):
    port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(DIFFPLATFORM_VAR_DIR=str(tmp_path / "var"), EMBEDDED_REDIS_PORT=str(redis_port), PORT=str(port),
               PYTHONUNBUFFERED="1", DIFFPLATFORM_KEY_NAMESPACE=f"make-run-{port}")  # fmt: skip
    log = tmp_path / "make-run.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["make", "-s", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 240
            while "diffplatform is running at" not in log.read_text(errors="replace"):
                assert process.poll() is None, log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
                time.sleep(0.5)
            text = log.read_text(errors="replace")
            assert f"http://127.0.0.1:{port}/" in text
            assert "manage.py createsuperuser" in text  # the demo account is not staff: how to get an admin
            password = re.search(r"Demo account: username 'demo', password '([^']+)'", text).group(1)
            base = f"http://127.0.0.1:{port}"
            browser = requests.Session()
            login = browser.get(f"{base}/accounts/login/", timeout=10)
            assert login.status_code == 200
            token = browser.cookies["csrftoken"]
            response = browser.post(f"{base}/accounts/login/", data={"username": "demo", "password": password,
                                    "csrfmiddlewaretoken": token}, headers={"Referer": f"{base}/accounts/login/"},
                                    timeout=10)  # fmt: skip
            assert response.status_code == 200 and "synthetic-demo" in response.text
            assert browser.get(f"{base}/admin/login/", timeout=10).status_code == 200
        finally:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(60)
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(host="127.0.0.1", port=redis_port, socket_connect_timeout=1).ping()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz/", timeout=2)
