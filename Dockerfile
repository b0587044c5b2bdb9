# One image for the release step, web (daphne) and workers (celery).
# TORCH_INDEX_URL picks the PyTorch build: the CPU one by default (web, worker-cpu, migrate);
# docker-compose.yml builds the GPU worker's image with a CUDA index instead.
FROM python:3.11-slim
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Recorded with every run (the image has no .git): `GIT_COMMIT=$(git rev-parse HEAD) docker compose build`.
ARG GIT_COMMIT=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=diffplatform.settings.production \
    DIFFPLATFORM_VAR_DIR=/app/var STATIC_ROOT=/app/staticfiles GIT_COMMIT=$GIT_COMMIT
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
    && rm -rf /var/lib/apt/lists/*
# Every folder the app writes to exists before a volume is mounted there and belongs to `app`, so a
# fresh named volume takes that owner (Docker copies the mount point's ownership into it).
RUN useradd --create-home --uid 1000 app \
    && mkdir -p /app/var /app/staticfiles /srv/static /srv/certs \
    && chown app:app /app /app/var /app/staticfiles /srv/static /srv/certs
WORKDIR /app
COPY requirements.txt .
# torch and torchvision from the chosen PyTorch index first (versions as pinned in requirements.txt),
# then the rest, which finds them already satisfied.
RUN grep -E '^(torch|torchvision)==' requirements.txt | cut -d' ' -f1 \
      | xargs pip install --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple \
    && pip install -r requirements.txt
COPY --chown=app:app . .
USER app
# As `app`, so that nothing it creates (staticfiles, the var folder settings make) belongs to root.
# The settings only need to import here; these values exist for this build step alone.
RUN SECRET_KEY=build-only-$(python -c "import secrets; print(secrets.token_urlsafe(64))") \
    REDIS_URL=redis://localhost:6379/0 python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "diffplatform.asgi:application"]
