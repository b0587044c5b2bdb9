"""The Docker deployment's files, read statically (no Docker engine runs here).

tests/deploy/test_production_topology.py runs the same files for real (nginx, daphne, workers);
these tests pin each fault the deployment once had, so that none comes back unnoticed.
"""

import fnmatch
import hashlib
import hmac
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_ENV = {"SECRET_KEY": "s" * 64, "POSTGRES_PASSWORD": "p", "MINIO_ROOT_USER": "u", "MINIO_ROOT_PASSWORD": "pw"}
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
NGINX = (ROOT / "deploy" / "nginx.conf").read_text()
LONG_RUNNING = [name for name, service in SERVICES.items() if service.get("restart") == "unless-stopped"]


def interpolate(value: str, **env) -> str:
    """`${VAR:-default}` as compose fills it, from `env` (else the default)."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1), m.group(2) or ""), str(value))


def compose_command():
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def nginx_blocks(kind: str) -> dict[str, str]:
    """`location` (or `server`) blocks by their argument, with nested braces kept."""
    blocks, pattern = {}, re.compile(rf"^\s*{kind}\s*(\S*)\s*\{{\s*$", re.M)
    for match in pattern.finditer(NGINX):
        depth, i = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(NGINX[i], 0)
            i += 1
        blocks[match.group(1).strip() or f"#{len(blocks)}"] = NGINX[match.end() : i - 1]
    return blocks


def test_compose_file_has_the_production_services():
    assert {"nginx", "web", "worker-gpu", "worker-cpu", "postgres", "redis", "minio", "migrate"} <= set(SERVICES)
    gpu = SERVICES["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    assert SERVICES["worker-gpu"]["command"][SERVICES["worker-gpu"]["command"].index("-Q") + 1] == "gpu"
    assert "cpu" in SERVICES["worker-cpu"]["command"][SERVICES["worker-cpu"]["command"].index("-Q") + 1]


# --- "web runs as app and copies static files into a volume whose mount point does not exist" ---
def test_folders_the_app_writes_exist_and_belong_to_app_before_it_runs():
    steps = dockerfile_instructions()
    user_at = steps.index(("USER", "app"))
    made = " ".join(arg for op, arg in steps[:user_at] if op == "RUN" and "mkdir" in arg and "chown app:app" in arg)
    for folder in ("/srv/static", "/app/var", "/srv/certs", "/app"):
        assert re.search(rf"chown app:app[^&]*\s{re.escape(folder)}(\s|$)", made), f"{folder} not chowned to app"
    for folder in ("/srv/static", "/app/var", "/srv/certs"):
        assert folder in made.split("chown")[0], f"{folder} not created in the image"
    # Every volume an app container mounts is one of those folders.
    for name, service in SERVICES.items():
        if service.get("image", "").startswith("diffplatform"):
            for volume in service.get("volumes", []):
                target = interpolate(volume).split(":")[1]
                assert target in ("/srv/static", "/srv/certs", "/app/var"), f"{name} mounts {target}"


# --- "collectstatic as root leaves /app/var owned by root" ---
def test_collectstatic_runs_as_app_not_root():
    steps = dockerfile_instructions()
    collect = next(i for i, (op, arg) in enumerate(steps) if op == "RUN" and "collectstatic" in arg)
    assert steps.index(("USER", "app")) < collect


# --- "minio/minio:latest and minio/mc:latest are no longer published" ---
def test_every_image_is_pinned_to_a_published_version():
    for name, service in SERVICES.items():
        image = service["image"]
        if "build" in service:
            continue  # built here
        repository, _, tag = image.partition(":")
        assert tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d+\.\d+", tag) or re.fullmatch(r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", tag), image
        assert not repository.endswith("minio/mc"), (
            "the mc image is not needed (deploy/ensure_bucket.py makes the bucket)"
        )
    assert re.fullmatch(r"(quay\.io/)?minio/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", SERVICES["minio"]["image"])


# --- "SECURE_SSL_REDIRECT is on while nginx listens only on :80; nginx overwrites X-Forwarded-Proto" ---
def test_nginx_terminates_tls_and_plain_http_only_redirects():
    servers = list(nginx_blocks("server").values())
    tls = [s for s in servers if re.search(r"listen\s+\$\{NGINX_HTTPS_PORT\}\s+ssl;", s)]
    plain = [s for s in servers if re.search(r"listen\s+\$\{NGINX_HTTP_PORT\};", s)]
    assert len(tls) == len(plain) == 1
    assert "ssl_certificate ${NGINX_TLS_CERT};" in tls[0] and "ssl_certificate_key ${NGINX_TLS_KEY};" in tls[0]
    assert "proxy_pass" not in plain[0], "plain HTTP must never reach the app"
    assert "return 301 https://$host:${PUBLIC_HTTPS_PORT}$request_uri;" in plain[0]
    assert {"443", "80"} <= {port.rsplit(":", 1)[1] for port in SERVICES["nginx"]["ports"]}


def test_every_proxied_location_sets_the_scheme_nginx_saw():
    proxied = {name: body for name, body in nginx_blocks("location").items() if "proxy_pass" in body}
    assert {"/", "/ws/", "/${S3_BUCKET}/"} <= set(proxied)
    for name, body in proxied.items():
        assert "proxy_set_header X-Forwarded-Proto $scheme;" in body, name
    assert "$http_x_forwarded_proto" not in NGINX  # a client's claim is never passed on


def test_production_trusts_the_proxy_header_and_redirects_to_https():
    answer = settings_in_subprocess(
        "diffplatform.settings.production",
        "print(settings.SECURE_PROXY_SSL_HEADER, settings.SECURE_SSL_REDIRECT, settings.SESSION_COOKIE_SECURE)",
    )
    assert answer == "('HTTP_X_FORWARDED_PROTO', 'https') True True"


# --- "presigned media URLs point at http://minio:9000; the CSP img-src does not allow it" ---
def test_compose_signs_media_for_the_public_address_that_nginx_proxies():
    env = SERVICES["web"]["environment"]
    assert env["AWS_S3_PUBLIC_URL"] == "${PUBLIC_URL:-https://localhost}"
    assert env["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
    bucket = nginx_blocks("location")["/${S3_BUCKET}/"]
    assert "proxy_pass ${S3_UPSTREAM};" in bucket
    assert "proxy_set_header Host $http_host;" in bucket  # the store checks the signature against it
    assert re.search(r"limit_except GET HEAD \{\s*deny all;\s*\}", bucket)


def sigv4_query_signature_is_valid(url: str, host: str, secret: str) -> bool:
    """AWS Signature V4 for a presigned GET, computed from the specification, not by botocore."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = params.pop("X-Amz-Signature")
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
    canonical = "\n".join(["GET", parts.path, canonical_query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
    date, scope = params["X-Amz-Date"], params["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature)


@pytest.mark.parametrize("public", ["https://diff.example.org", "https://127.0.0.1:8443"])
def test_presigned_urls_are_signed_for_the_host_the_browser_sends(settings, public):
    from experiments import storage

    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": "diffplatform-media", "endpoint_url": "http://minio:9000", "access_key": "AKID",
        "secret_key": "s3cr3t", "region_name": "us-east-1", "querystring_auth": True, "default_acl": None,
        "addressing_style": "path", "signature_version": "s3v4", "querystring_expire": 300,
    }}}  # fmt: skip
    settings.AWS_S3_PUBLIC_URL = public
    url = storage.presigned_url("datasets/7/pairs/x/a.png")
    assert url.startswith(f"{public}/diffplatform-media/datasets/7/pairs/x/a.png?"), url
    browser_host = urlsplit(public).netloc  # what the browser sends and nginx passes on ($http_host)
    assert sigv4_query_signature_is_valid(url, browser_host, "s3cr3t")
    assert not sigv4_query_signature_is_valid(url, "minio:9000", "s3cr3t")
    settings.AWS_S3_PUBLIC_URL = ""
    assert storage.presigned_url("datasets/7/pairs/x/a.png").startswith("http://minio:9000/diffplatform-media/")


def test_the_csp_allows_media_on_another_public_origin():
    code = "d = settings.CONTENT_SECURITY_POLICY['DIRECTIVES']; print(d['img-src'], d['connect-src'])"
    other = settings_in_subprocess(
        "diffplatform.settings.test", code,
        AWS_STORAGE_BUCKET_NAME="m", AWS_S3_PUBLIC_URL="https://media.example.org/base/",
    )  # fmt: skip
    assert other.count("'https://media.example.org'") == 2, other
    same = settings_in_subprocess("diffplatform.settings.test", code, AWS_STORAGE_BUCKET_NAME="", AWS_S3_PUBLIC_URL="")
    assert "example" not in same and "'self'" in same


def settings_in_subprocess(module: str, code: str, **env) -> str:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": module, "SECRET_KEY": secrets.token_urlsafe(64),
                   "REDIS_URL": "redis://127.0.0.1:1/0", "DIFFPLATFORM_VAR_DIR": "/tmp/diffplatform-settings-probe",
                   **env}  # fmt: skip
    script = f"import django; django.setup(); from django.conf import settings; {code}"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


# --- "no .dockerignore: .env, .git, .venv, var/ go into the image" ---
@pytest.mark.parametrize("path", [".env", ".env.production", ".git/config", ".venv/bin/python", "var/db.sqlite3",
                                  "var/redis/dump.rdb", "staticfiles/app.css", "experiments/__pycache__/m.pyc"])  # fmt: skip
def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image(path):
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]

    def ignored(candidate):
        return any(fnmatch.fnmatch(candidate, p.removeprefix("**/")) or fnmatch.fnmatch(candidate, p)
                   or candidate.startswith(p.rstrip("/") + "/") for p in patterns)  # fmt: skip

    assert ignored(path) or any(ignored(str(Path(*Path(path).parts[:i]))) for i in range(1, len(Path(path).parts)))
    for kept in ("weights/siamese-unet.pt", "manage.py", "deploy/nginx.conf", "requirements.txt"):
        assert not ignored(kept), kept


# --- "migrations run inside web while workers start" ---
def test_a_one_shot_migrate_service_runs_before_web_and_workers():
    assert SERVICES["migrate"]["restart"] == "no"
    assert "manage.py migrate --noinput" in (ROOT / "deploy" / "release.sh").read_text()
    assert SERVICES["migrate"]["command"] == ["sh", "deploy/release.sh"]
    for name in ("web", "worker-cpu", "worker-gpu"):
        assert SERVICES[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        assert "migrate" not in " ".join(SERVICES[name]["command"]), name
    assert SERVICES["nginx"]["depends_on"]["tls-cert"] == {"condition": "service_completed_successfully"}
    assert SERVICES["nginx"]["depends_on"]["web"] == {"condition": "service_healthy"}


# --- "the GPU reservation is mandatory, so the stack fails on a host without a GPU" ---
def test_only_the_gpu_profile_asks_for_a_gpu():
    assert SERVICES["worker-gpu"]["profiles"] == ["gpu"]
    for name, service in SERVICES.items():
        if name != "worker-gpu":
            assert "deploy" not in service and "profiles" not in service, name
    # Without the GPU worker the cpu worker takes the gpu queue too, so every queue has a worker.
    assert "${CPU_WORKER_QUEUES:-cpu,gpu}" in SERVICES["worker-cpu"]["command"]


# --- "web and worker-cpu carry the CUDA torch build" ---
def test_web_and_the_cpu_worker_build_the_cpu_torch():
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in DOCKERFILE
    install = next(arg for op, arg in dockerfile_instructions() if op == "RUN" and "torch" in arg)
    assert '--index-url "$TORCH_INDEX_URL"' in install
    for name in ("web", "worker-cpu", "migrate"):
        assert SERVICES[name]["build"]["args"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu", name
    assert "/whl/cu" in SERVICES["worker-gpu"]["build"]["args"]["TORCH_INDEX_URL"]
    assert SERVICES["worker-gpu"]["image"] != SERVICES["web"]["image"]


def test_every_long_running_service_has_a_health_check():
    assert set(LONG_RUNNING) >= {"nginx", "web", "worker-cpu", "worker-gpu", "postgres", "redis", "minio"}
    for name in LONG_RUNNING:
        assert SERVICES[name].get("healthcheck", {}).get("test"), name
    assert "http://localhost:8000/healthz/" in SERVICES["web"]["healthcheck"]["test"]


# --- issue 26: "the web health check sends Host: localhost:8000 while ALLOWED_HOSTS holds only PUBLIC_HOST" ---
@pytest.mark.parametrize("public_host", [None, "diff.example.org"])
def test_the_web_health_check_sends_a_host_that_allowed_hosts_holds(public_host):
    env = {"PUBLIC_HOST": public_host} if public_host else {}
    allowed = interpolate(COMPOSE["x-app-env"]["ALLOWED_HOSTS"], **env).split(",")
    test = [interpolate(word, **env) for word in SERVICES["web"]["healthcheck"]["test"]]
    host = test[test.index("-H") + 1]
    assert host == f"Host: {allowed[0]}" and allowed == [public_host or "localhost"]


def test_behind_nginx_one_proxy_is_trusted_and_webhooks_have_a_worker_of_their_own():
    assert COMPOSE["x-app-env"]["TRUSTED_PROXY_COUNT"] == "1"
    command = SERVICES["worker-webhooks"]["command"]
    assert command[command.index("-Q") + 1] == "webhooks" and "webhooks" not in SERVICES["worker-cpu"]["command"]
    assert SERVICES["worker-webhooks"]["environment"]["WORKER_NAME"] == "webhooks"


def test_the_nginx_template_is_filled_from_the_compose_file_and_valid(tmp_path):
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        from render_nginx_conf import DERIVED, placeholders, render
        from tls_cert import ensure_certificate
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    values = {k: interpolate(v) for k, v in SERVICES["nginx"]["environment"].items()}
    assert placeholders(NGINX) - set(DERIVED) <= set(values), placeholders(NGINX) - set(values)
    assert "./deploy/nginx.conf:/etc/nginx/templates/default.conf.template:ro" in SERVICES["nginx"]["volumes"]
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if nginx is None:
        pytest.skip("nginx is not installed (make browser)")
    assert ensure_certificate(tmp_path / "certs", "localhost") is True
    assert ensure_certificate(tmp_path / "certs", "localhost") is False  # a certificate there is kept
    values.update(NGINX_TLS_CERT=str(tmp_path / "certs/fullchain.pem"), NGINX_TLS_KEY=str(tmp_path / "certs/privkey.pem"),
                  DIFFPLATFORM_WEB="127.0.0.1:9", S3_UPSTREAM="http://127.0.0.1:9")  # fmt: skip
    (tmp_path / "site.conf").write_text(render(NGINX, values))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; events {{}} http {{ include /etc/nginx/mime.types; include {tmp_path}/site.conf; }}"
    )
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-e", "stderr", "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(compose_command() is None, reason="no docker compose client on this machine")
def test_compose_config_validates():
    result = subprocess.run([*compose_command(), "config"], cwd=ROOT, env={**os.environ, **COMPOSE_ENV},
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "worker-gpu" not in yaml.safe_load(result.stdout)["services"]  # only with --profile gpu
