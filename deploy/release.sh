#!/bin/sh
# One-shot step before web and workers start (compose service `migrate`, and by hand on upgrades:
# `docker compose run --rm migrate`): database schema, media bucket, static files for nginx.
set -eu
python manage.py migrate --noinput
python deploy/ensure_bucket.py
# The trained weights shipped in weights/, as public checkpoints (idempotent; no demo dataset).
python manage.py setup_demo --weights-only
if [ -n "${STATIC_VOLUME:-}" ]; then
    # nginx serves /static/ from this volume; the image's collected files replace what is there.
    cp -R "${STATIC_ROOT:-/app/staticfiles}/." "$STATIC_VOLUME/"
fi
echo "release step done"
