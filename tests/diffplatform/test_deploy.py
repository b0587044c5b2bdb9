import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_ENV = {"SECRET_KEY": "s" * 64, "POSTGRES_PASSWORD": "p", "MINIO_ROOT_USER": "u", "MINIO_ROOT_PASSWORD": "pw"}


def compose_command():
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_has_the_production_services():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"nginx", "web", "worker-gpu", "worker-cpu", "postgres", "redis", "minio"} <= set(services)
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    assert "-Q gpu" in services["worker-gpu"]["command"]
    assert "-Q cpu" in services["worker-cpu"]["command"]


def test_nginx_upgrades_websockets_and_keeps_media_internal():
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade" in conf
    protected = conf.split("location /protected-media/")[1].split("}")[0]
    assert "internal;" in protected


@pytest.mark.skipif(compose_command() is None, reason="no docker compose client on this machine")
def test_compose_config_validates():
    result = subprocess.run([*compose_command(), "config"], cwd=ROOT, env={**os.environ, **COMPOSE_ENV},
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
