"""Production: refuses to start without a SECRET_KEY, secure cookies, HSTS, CSP.

Behind nginx (deploy/nginx.conf), which terminates TLS, redirects plain HTTP to HTTPS itself and
sets `X-Forwarded-Proto $scheme` on every request it proxies (replacing whatever a client sent):
that header is what tells Django a request came over HTTPS.
"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from diffplatform.settings.base import *  # noqa: F403
from diffplatform.settings.env import env

DEBUG = False
SECRET_KEY = env.str("SECRET_KEY", default="")
if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random string of at least 50 characters in production; "
        'generate one with: python -c "import secrets; print(secrets.token_urlsafe(64))"'
    )

if EMBEDDED_REDIS:  # noqa: F405
    raise ImproperlyConfigured("REDIS_URL must be set in production, e.g. redis://redis:6379/0")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Only a request that bypassed nginx arrives without the header; it is sent to HTTPS. The health
# probe of the container (plain HTTP to daphne itself) is exempt.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
}
# collectstatic writes here (the image: /app/staticfiles); the release step copies it to nginx.
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))  # noqa: F405
