"""Settings shared by every environment. Everything variable comes from the environment."""

from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from diffplatform.embedded_redis import embedded_redis_url
from diffplatform.settings.env import database_from_env, env, positive_int, redis_url_from_env, visibility_timeout

BASE_DIR = Path(__file__).resolve().parents[2]
VAR_DIR = Path(env.str("DIFFPLATFORM_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite files, the embedded Redis, cached checkpoints

SECRET_KEY = env.str("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "csp",
    "accounts",
    "experiments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "diffplatform.upload_limit.UploadLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "diffplatform.service_status.ServiceStatusMiddleware",
]

ROOT_URLCONF = "diffplatform.urls"
WSGI_APPLICATION = "diffplatform.wsgi.application"
ASGI_APPLICATION = "diffplatform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "diffplatform.service_status.context",
            ],
        },
    },
]

DATABASES = {"default": database_from_env(VAR_DIR / "db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "experiments:dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Storage: local disk by default, S3 (any S3-compatible endpoint) when a bucket is named.
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
MEDIA_X_ACCEL_REDIRECT = env.bool("MEDIA_X_ACCEL_REDIRECT", default=False)
# The address browsers reach the S3 store at (e.g. nginx proxying the bucket, deploy/nginx.conf):
# presigned media URLs are signed for it instead of AWS_S3_ENDPOINT_URL, which only servers reach.
AWS_S3_PUBLIC_URL = env.str("AWS_S3_PUBLIC_URL", default="").rstrip("/")
if AWS_STORAGE_BUCKET_NAME:
    _media_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("AWS_S3_REGION_NAME", default="us-east-1"),
            "access_key": env.str("AWS_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default="") or None,
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": positive_int("AWS_QUERYSTRING_EXPIRE", 300),
            "file_overwrite": True,
            "addressing_style": env.str("AWS_S3_ADDRESSING_STYLE", default="path"),
            "signature_version": "s3v4",
        },
    }
else:
    _media_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": MEDIA_URL},
    }
STORAGES = {
    "default": _media_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Upload limits
MAX_UPLOAD_MB = positive_int("MAX_UPLOAD_MB", 50)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_MB * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 3000  # drag-and-drop of many loose A/B/label files at once
MAX_IMAGE_PIXELS = positive_int("MAX_IMAGE_PIXELS", 50_000_000)
# A staged upload (checked, waiting for "Import") is removed this long after it was stored; every
# worker sweeps for expired ones this often.
STAGED_UPLOAD_TTL_S = positive_int("STAGED_UPLOAD_TTL_S", 24 * 3600)
STAGED_UPLOAD_SWEEP_S = positive_int("STAGED_UPLOAD_SWEEP_S", 3600)
# A deleted run's unused result folder is freed this long after the delete (a run reusing it at that
# moment writes its row first), by every worker's sweep every RESULT_FREE_SWEEP_S; 0 frees at once.
RESULT_FREE_GRACE_S = env.float("RESULT_FREE_GRACE_S", default=600.0)
RESULT_FREE_SWEEP_S = env.float("RESULT_FREE_SWEEP_S", default=60.0)
# Per-user storage quota (experiments.quotas): datasets, predictions, models, checkpoints and staged
# uploads together; 0 switches it off. Staff are exempt unless QUOTA_EXEMPT_STAFF is off.
USER_STORAGE_QUOTA_MB = env.int("USER_STORAGE_QUOTA_MB", default=20 * 1024)
if USER_STORAGE_QUOTA_MB < 0:
    raise ImproperlyConfigured(
        f"USER_STORAGE_QUOTA_MB must be 0 (no quota) or a number of MB, got {USER_STORAGE_QUOTA_MB}"
    )
QUOTA_EXEMPT_STAFF = env.bool("QUOTA_EXEMPT_STAFF", default=True)

# --- Uploaded ONNX models (docs/models.md): largest file accepted, time limit of the probe run
ONNX_MAX_MB = positive_int("ONNX_MAX_MB", 200)
ONNX_PROBE_SECONDS = env.float("ONNX_PROBE_SECONDS", default=10.0)  # loading, session creation and the probes
# side (px) of the square probe of a model that takes any size (runs feed it B at B's own size)
ONNX_PROBE_ANY_SIZE = positive_int("ONNX_PROBE_ANY_SIZE", 512)
# wall time of one call of an uploaded model in a run (a batch of pairs or tiles), in its sandboxed child
ONNX_CALL_SECONDS = env.float("ONNX_CALL_SECONDS", default=300.0)

# --- The sandbox for untrusted artefacts (inference/sandbox.py; docs/reliability.md): memory a check
# may use above the checking process's own baseline, and for uploaded checkpoints the time and size limits
SANDBOX_MEMORY_MB = positive_int("SANDBOX_MEMORY_MB", 2048)
CHECKPOINT_CHECK_SECONDS = env.float("CHECKPOINT_CHECK_SECONDS", default=60.0)
CHECKPOINT_MAX_MB = positive_int("CHECKPOINT_MAX_MB", 1024)  # total size its members declare
# --- Model memory (inference/memory_probe.py; docs/engine.md): each detector's own memory, measured once
# per weights, size and device in a fresh process (on the CPU) and cached; off: the column stays empty
MODEL_MEMORY_PROBE = env.bool("MODEL_MEMORY_PROBE", default=True)
# The largest request body an upload needs: nginx's body limit is derived from the same variables
# (deploy/nginx-limits.envsh, one more MB); a new upload limit belongs in this max too.
LARGEST_UPLOAD_MB = max(MAX_UPLOAD_MB, ONNX_MAX_MB)

# --- Redis: Celery broker, channel layer and result cache.
# Every key this deployment puts in Redis starts with this, so that several deployments (or test
# sessions) can share one Redis server without seeing each other's queues, groups or cache.
KEY_NAMESPACE = env.str("DIFFPLATFORM_KEY_NAMESPACE", default="diffplatform")

# With no REDIS_URL the embedded server is used; the experiments app starts it when Django starts.
EMBEDDED_REDIS_PORT = positive_int("EMBEDDED_REDIS_PORT", 6390)
EMBEDDED_REDIS_DIR = VAR_DIR / "redis"
EMBEDDED_REDIS = redis_url_from_env() is None
REDIS_URL = redis_url_from_env() or embedded_redis_url(
    EMBEDDED_REDIS_DIR, EMBEDDED_REDIS_PORT, env.int("EMBEDDED_REDIS_DB", default=0)
)

CACHES = {
    "default": {
        "BACKEND": "diffplatform.cache.ResilientRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": KEY_NAMESPACE,
        "TIMEOUT": 7 * 24 * 3600,
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 times reads out after 5 s, exactly the layer's blocking-pop timeout: give reads slack.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 2}],
            "prefix": f"{KEY_NAMESPACE}:asgi",
            "expiry": 60,
        },
    }
}

# --- Celery
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = positive_int("CELERY_TASK_TIME_LIMIT", 4 * 3600)
CELERY_TASK_SOFT_TIME_LIMIT = positive_int("CELERY_TASK_SOFT_TIME_LIMIT", 4 * 3600 - 60)
CELERY_TASK_DEFAULT_QUEUE = "cpu"
# A worker process whose resident memory passes this (KiB) is replaced after its current task
# (prefork pool), so a leak or a fragmented heap cannot grow without bound. Default 4 GiB.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = positive_int("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 4 * 1024 * 1024)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # An unacknowledged task (its worker died) is handed out again after this many seconds: above the
    # hard time limit (default: limit + 15 min), so a task still running is never handed out twice.
    "visibility_timeout": visibility_timeout(CELERY_TASK_TIME_LIMIT),
    "global_keyprefix": f"{KEY_NAMESPACE}:celery:",
    "socket_connect_timeout": 2,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{KEY_NAMESPACE}:celery:",
    # Chords keep state in the result store; a dead Redis should fail a publish in about a second.
    "retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
}
# Fail fast when the broker is down: the request answers at once and the outbox retries later.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
OUTBOX_INTERVAL_S = env.float("OUTBOX_INTERVAL_S", default=10.0)
# Run, validation, webhook and training tasks hold a lease (`experiments.task_leases`): their worker beats every
# TASK_HEARTBEAT_S; a lease silent for TASK_HEARTBEAT_TIMEOUT_S (its worker died) is handed out again,
# looked for by every worker every TASK_STALE_CHECK_INTERVAL_S. After TASK_MAX_WORKER_DEATHS deliveries
# that died with their worker, the work fails with that reason instead of killing the next worker.
TASK_HEARTBEAT_S = env.float("TASK_HEARTBEAT_S", default=15.0)
TASK_HEARTBEAT_TIMEOUT_S = env.float("TASK_HEARTBEAT_TIMEOUT_S", default=75.0)
TASK_STALE_CHECK_INTERVAL_S = env.float("TASK_STALE_CHECK_INTERVAL_S", default=20.0)
TASK_MAX_WORKER_DEATHS = positive_int("TASK_MAX_WORKER_DEATHS", 3)
if not 0 < TASK_HEARTBEAT_S * 2 < TASK_HEARTBEAT_TIMEOUT_S or TASK_STALE_CHECK_INTERVAL_S <= 0:
    raise ImproperlyConfigured(
        f"TASK_HEARTBEAT_TIMEOUT_S ({TASK_HEARTBEAT_TIMEOUT_S:g} s) must be more than twice TASK_HEARTBEAT_S "
        f"({TASK_HEARTBEAT_S:g} s, above 0), and TASK_STALE_CHECK_INTERVAL_S above 0: else a live worker's "
        "task would be handed out again."
    )
# A running training job's worker beats every TASK_HEARTBEAT_S too; with no beat for this long its
# worker is taken as dead and the job is failed (checked by every worker at start-up and every
# interval below). The defaults are the leases', so a dead worker's job is failed within two minutes.
TRAINING_HEARTBEAT_TIMEOUT_S = env.float("TRAINING_HEARTBEAT_TIMEOUT_S", default=TASK_HEARTBEAT_TIMEOUT_S)
TRAINING_STALE_CHECK_INTERVAL_S = env.float("TRAINING_STALE_CHECK_INTERVAL_S", default=TASK_STALE_CHECK_INTERVAL_S)
if not TASK_HEARTBEAT_S * 2 < TRAINING_HEARTBEAT_TIMEOUT_S or TRAINING_STALE_CHECK_INTERVAL_S <= 0:
    raise ImproperlyConfigured(
        f"TRAINING_HEARTBEAT_TIMEOUT_S ({TRAINING_HEARTBEAT_TIMEOUT_S:g} s) must be more than twice TASK_HEARTBEAT_S "
        f"({TASK_HEARTBEAT_S:g} s, how often a training job beats), and TRAINING_STALE_CHECK_INTERVAL_S above 0: "
        "else a live worker's job would be failed."
    )
CELERY_RESULT_EXPIRES = 24 * 3600

# --- Leaderboard: resamples of the pair-level bootstrap of pooled F1/IoU and of the paired tests that
# give rank groups (experiments.reporting.ranking); fewer leave the 2.5% tails to a handful of values.
RANKING_BOOTSTRAP_RESAMPLES = positive_int("RANKING_BOOTSTRAP_RESAMPLES", 2000)
if RANKING_BOOTSTRAP_RESAMPLES < 1000:
    raise ImproperlyConfigured(f"RANKING_BOOTSTRAP_RESAMPLES must be 1000 or more, got {RANKING_BOOTSTRAP_RESAMPLES}")

# --- Health (`/healthz/`, diffplatform/health.py): database, Redis, broker, live workers per queue.
HEALTH_WORKER_QUEUES = env.list("HEALTH_WORKER_QUEUES", default=["cpu", "gpu", "webhooks"])
HEALTH_CHECK_TIMEOUT_S = env.float("HEALTH_CHECK_TIMEOUT_S", default=1.0)
HEALTH_WORKER_TIMEOUT_S = env.float("HEALTH_WORKER_TIMEOUT_S", default=1.0)
HEALTH_CACHE_S = env.float("HEALTH_CACHE_S", default=5.0)

# --- Clients behind proxies: how many proxies in front of daphne append the address they received
# from to X-Forwarded-For (docker-compose.yml: nginx, 1). Throttles key on the address that many
# hops from the right; 0 (`make run`, daphne facing clients) ignores the header.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured(f"TRUSTED_PROXY_COUNT must be 0 or more, got {TRUSTED_PROXY_COUNT}")

# --- REST framework
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its `WWW-Authenticate` header makes a missing login a 401, not a 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "experiments.api.errors.exception_handler",
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,  # what DRF's own get_ident reads; ours read TRUSTED_PROXY_COUNT
    "DEFAULT_THROTTLE_CLASSES": [
        "experiments.api.throttling.AnonThrottle",
        "experiments.api.throttling.UserThrottle",
        "experiments.api.throttling.ScopedThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="60/minute"),
        "user": env.str("API_THROTTLE_USER", default="1200/minute"),
        # authentication attempts per client address: log-in, sign-up and password pages and the token API
        "auth": env.str("API_THROTTLE_AUTH", default="20/minute"),
        "uploads": env.str("API_THROTTLE_UPLOADS", default="300/minute"),
        "diff": env.str("API_THROTTLE_DIFF", default="120/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "diffplatform API",
    "DESCRIPTION": "Compare change-detection models on image pairs. Guide: docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}},
    # a pair's split may be empty (unassigned); the splits a run scores name real splits only
    "ENUM_NAME_OVERRIDES": {"ScoredSplitEnum": "experiments.api.serializers.common.SPLIT_CHOICES"},
    # Swagger UI from the drf-spectacular-sidecar package: served from here, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "experiments.api.schema_hooks.collapse_blank_alternatives",
        "experiments.api.schema_hooks.forbid_unknown_request_fields",
    ],
}

# --- Content Security Policy (django-csp 4): no inline scripts, everything served from here.
# Media redirect to presigned URLs: on AWS_S3_PUBLIC_URL's origin when it is another one.
_public = urlsplit(AWS_S3_PUBLIC_URL)
_MEDIA_ORIGINS = [f"{_public.scheme}://{_public.netloc}"] if AWS_STORAGE_BUCKET_NAME and _public.netloc else []
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:", *_MEDIA_ORIGINS, *env.list("CSP_EXTRA_IMG_SRC", default=[])],
        "style-src": ["'self'", "'unsafe-inline'"],
        "script-src": ["'self'"],
        "connect-src": ["'self'", "ws:", "wss:", *_MEDIA_ORIGINS],
        "frame-ancestors": ["'none'"],
    }
}

SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- Inference
INFERENCE_DEVICE = env.str("INFERENCE_DEVICE", default="auto")
# Detector plug-ins: modules that register detectors with `@register_detector` (see docs/detectors.md).
# Every process imports them (web, workers, CLI), so keep torch imports inside their builders.
DIFFPLATFORM_DETECTOR_MODULES = env.list("DIFFPLATFORM_DETECTOR_MODULES", default=[])
DEMO_USERNAME = env.str("DEMO_USERNAME", default="demo")

# Webhooks (experiments.notifications): loopback and private addresses are refused unless allowed.
WEBHOOK_ALLOW_PRIVATE = env.bool("DIFFPLATFORM_WEBHOOK_ALLOW_PRIVATE", default=False)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=5)
WEBHOOK_BACKOFF_S = env.float("WEBHOOK_BACKOFF_S", default=30.0)
WEBHOOK_TIMEOUT_S = env.float("WEBHOOK_TIMEOUT_S", default=10.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
