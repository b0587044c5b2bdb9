# One image for web (daphne) and workers (celery). CUDA-capable torch: workers use a GPU when given one.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=diffplatform.settings.production
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl git \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 app
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY --chown=app:app . .
# collectstatic needs settings to import; these values exist only for this build step.
RUN SECRET_KEY=build-only-$(python -c "import secrets; print(secrets.token_urlsafe(64))") \
    REDIS_URL=redis://localhost:6379/0 python manage.py collectstatic --noinput
USER app
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "diffplatform.asgi:application"]
