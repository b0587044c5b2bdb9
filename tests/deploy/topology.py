"""The production topology on loopback, built from the shipped files.

nginx (Debian's, unprivileged, high ports) serves deploy/nginx.conf filled in by
deploy/render_nginx_conf.py, with a certificate made by deploy/tls_cert.py; daphne and the workers
run the commands docker-compose.yml gives the `web`, `worker-gpu`, `worker-cpu` and `worker-webhooks` services, under
`diffplatform.settings.production`, after the `migrate` service's deploy/release.sh. The S3 store
is moto_server; the database and Redis are the test session's (PostgreSQL when DATABASE_URL names
one, as in CI). Each worker is a machine of its own: its own var folder and TMPDIR, nothing shared
but the services. The stack answers to a real, non-loopback host name, `PUBLIC_HOST`, as in
production (ALLOWED_HOSTS holds only it): `map_public_host` resolves it to loopback in this
process, Chromium is told the same (tests/conftest.py).
"""

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests
import yaml

from tests.live_services import ManagedProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")
BUCKET = "diffplatform-media"
PUBLIC_HOST = "diff.example.test"


def map_public_host(monkeypatch) -> None:
    """Resolve PUBLIC_HOST to loopback in this process (an /etc/hosts entry, as `curl --resolve` does)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return real("127.0.0.1" if host == PUBLIC_HOST else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def fill(word: str, env: dict) -> str:
    """`${VAR:-default}` filled as compose does."""
    return INTERPOLATION.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), word)


def compose_command(service: str, env: dict) -> list[str]:
    """The service's command from docker-compose.yml, filled as compose does."""
    command = [fill(str(word), env) for word in COMPOSE["services"][service]["command"]]
    if command[0] in ("celery", "daphne"):  # the image's console scripts, from this virtualenv
        command = [sys.executable, "-m", command[0], *command[1:]]
    return command


def nginx_values(service_env_overrides: dict) -> dict:
    """The nginx service's template values from docker-compose.yml, with the test's overrides."""
    values = {k: fill(str(v), {}) for k, v in COMPOSE["services"]["nginx"]["environment"].items()}
    return {**values, **service_env_overrides}


class Topology:
    def __init__(self, tmp: Path, base_env: dict):
        self.tmp = tmp
        self.processes: list[ManagedProcess] = []
        self.http_port, self.https_port, self.web_port, s3_port = (free_port() for _ in range(4))
        self.origin = f"https://{PUBLIC_HOST}:{self.https_port}"
        self.s3_endpoint = f"http://127.0.0.1:{s3_port}"
        self.cert_dir = tmp / "certs"
        self.static_volume = tmp / "static-volume"
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            **base_env,
            "PATH": f"{venv_bin}:{base_env.get('PATH', '')}",
            "DJANGO_SETTINGS_MODULE": "diffplatform.settings.production",
            "SECRET_KEY": secrets.token_urlsafe(64),
            # What docker-compose.yml gives every app service for this PUBLIC_HOST.
            **{
                name: fill(str(COMPOSE["x-app-env"][name]), {"PUBLIC_HOST": PUBLIC_HOST})
                for name in ("ALLOWED_HOSTS", "TRUSTED_PROXY_COUNT")
            },
            "CSRF_TRUSTED_ORIGINS": self.origin,
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_S3_PUBLIC_URL": self.origin,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "STATIC_ROOT": str(tmp / "collected-static"),
            "DIFFPLATFORM_VAR_DIR": str(tmp / "web-var"),
            "HEALTH_WORKER_QUEUES": "cpu,gpu,webhooks",
            "HEALTH_CACHE_S": "0",
            # Scaled down from 4 h so that a task abandoned by a killed worker comes back in seconds;
            # production refuses a visibility timeout not above the time limit, and so it does here.
            "CELERY_TASK_TIME_LIMIT": "50",
            "CELERY_TASK_SOFT_TIME_LIMIT": "45",
            "CELERY_VISIBILITY_TIMEOUT": "55",
            # A GPU worker runs (the gpu profile), so the cpu worker takes `cpu` only, as README says.
            "CPU_WORKER_QUEUES": "cpu",
            "CPU_WORKER_CONCURRENCY": "1",
            "WEBHOOK_WORKER_CONCURRENCY": "1",
        }
        for key in ("MEDIA_ROOT", "EMBEDDED_REDIS_DB"):
            self.env.pop(key, None)

    # --- the one-shot services -------------------------------------------------------------
    def start_s3(self):
        binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        port = self.s3_endpoint.rsplit(":", 1)[1]
        # Path-style only, as MinIO without MINIO_DOMAIN: moto would read the bucket from PUBLIC_HOST's first label.
        self._start(
            "s3", [binary, "-H", "127.0.0.1", "-p", port], {**self.env, "S3_IGNORE_SUBDOMAIN_BUCKETNAME": "true"}
        )

    def build_static(self):
        """The Dockerfile's collectstatic step, under production settings."""
        self._run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], self.env)

    def release(self):
        """The `migrate` service: deploy/release.sh (schema, bucket, static files for nginx)."""
        self.static_volume.mkdir()
        command = [str(w) for w in COMPOSE["services"]["migrate"]["command"]]
        self._run(command, {**self.env, "STATIC_VOLUME": str(self.static_volume)})

    def make_certificate(self):
        """The `tls-cert` service: a self-signed certificate on first start."""
        command = compose_command("tls-cert", {"PUBLIC_HOST": PUBLIC_HOST})
        command[command.index("/srv/certs")] = str(self.cert_dir)
        self._run([sys.executable if w == "python" else w for w in command], self.env)

    # --- the long-running services ---------------------------------------------------------
    def start_web(self):
        command = compose_command("web", self.env)
        command[command.index("0.0.0.0")] = "127.0.0.1"
        command[command.index("8000")] = str(self.web_port)
        return self._start("web", command, self.env)

    def start_worker(self, service: str, machine: str) -> ManagedProcess:
        """A worker on a machine of its own: nothing on disk shared with the others."""
        home = self.tmp / machine
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        env = {**self.env, "DIFFPLATFORM_VAR_DIR": str(home / "var"), "TMPDIR": str(home / "tmp"),
               **{k: str(v) for k, v in COMPOSE["services"][service]["environment"].items() if k == "INFERENCE_DEVICE"}}  # fmt: skip
        if env.get("INFERENCE_DEVICE") == "cuda" and not _cuda_available():
            env["INFERENCE_DEVICE"] = "auto"  # the gpu queue's worker on a machine without a GPU
        command = compose_command(service, env)
        command = [w.replace("%h", machine) for w in command]
        worker = self._start(machine, command, env)
        worker.ready_line = f"{command[command.index('-n') + 1]} ready."
        return worker

    def web_health_check_passes(self) -> bool:
        """The `web` service's own health check (what nginx waits for), run against this daphne."""
        test = [
            fill(str(word), {"PUBLIC_HOST": PUBLIC_HOST}) for word in COMPOSE["services"]["web"]["healthcheck"]["test"]
        ]
        assert test[0] == "CMD", test
        command = [w.replace("http://localhost:8000/", f"http://127.0.0.1:{self.web_port}/") for w in test[1:]]
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0

    def wait_ready(self, *workers):
        for worker in workers:
            wait_until(lambda w=worker: w.ready_line in w.output(), 90, worker.ready_line, worker)

    def render_nginx(self) -> Path:
        sys.path.insert(0, str(ROOT / "deploy"))
        try:
            from render_nginx_conf import render
        finally:
            sys.path.remove(str(ROOT / "deploy"))
        values = nginx_values(
            {
                "NGINX_HTTP_PORT": str(self.http_port),
                "NGINX_HTTPS_PORT": str(self.https_port),
                "PUBLIC_HTTPS_PORT": str(self.https_port),
                "NGINX_TLS_CERT": str(self.cert_dir / "fullchain.pem"),
                "NGINX_TLS_KEY": str(self.cert_dir / "privkey.pem"),
                "NGINX_STATIC_ROOT": f"{self.static_volume}/",
                "NGINX_MEDIA_ROOT": f"{self.tmp / 'no-local-media'}/",
                "DIFFPLATFORM_WEB": f"127.0.0.1:{self.web_port}",
                "S3_UPSTREAM": self.s3_endpoint,
                "S3_BUCKET": BUCKET,
            }
        )
        prefix = self.tmp / "nginx"
        prefix.mkdir()
        site = prefix / "default.conf"
        site.write_text(render((ROOT / "deploy" / "nginx.conf").read_text(), values))
        # The nginx image's own nginx.conf, reduced to what an unprivileged process may do.
        main = prefix / "nginx.conf"
        temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
        # As root (a CI container) nginx's workers would drop to `nobody`, who cannot read the
        # test's private folders; elsewhere it runs as the test's own unprivileged user.
        user = "user root;\n" if os.geteuid() == 0 else ""
        main.write_text(
            f"{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n"
            f"    access_log {prefix}/access.log;\n{temp}\n    include {site};\n}}\n"
        )
        return prefix

    def start_nginx(self):
        prefix = self.render_nginx()
        command = [nginx_binary(), "-p", str(prefix), "-e", "stderr", "-c", str(prefix / "nginx.conf"),
                   "-g", "daemon off;"]  # fmt: skip
        self._run([*command[:-2], "-t"], self.env)
        nginx = self._start("nginx", command, self.env)
        wait_until(lambda: self._answers(f"http://127.0.0.1:{self.http_port}/nginx-health"), 30, "nginx", nginx)
        return nginx

    def wait_healthy(self, timeout=120):
        """/healthz/ through nginx over HTTPS: database, Redis, broker, a worker on each queue."""
        wait_until(lambda: self._answers(f"{self.origin}/healthz/"), timeout, "healthz through nginx")

    def stop(self):
        """Every service asked to stop at once (a worker's warm shutdown takes seconds), then reaped."""
        for process in self.processes:
            if process.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.output()[-3000:]}" for p in self.processes)

    # --- helpers ---------------------------------------------------------------------------
    def _answers(self, url) -> bool:
        try:
            return requests.get(url, timeout=5, verify=str(self.cert_dir / "fullchain.pem")).status_code == 200
        except requests.RequestException:
            return False

    def _start(self, name, command, env) -> ManagedProcess:
        process = ManagedProcess(command, env, self.tmp / f"{name}-{len(self.processes)}.log").start()
        self.processes.append(process)
        return process

    def _run(self, command, env):
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
