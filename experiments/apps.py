from django.apps import AppConfig
from django.conf import settings


class ExperimentsConfig(AppConfig):
    name = "experiments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from inference.registry import load_detector_modules

        load_detector_modules(settings.DIFFPLATFORM_DETECTOR_MODULES)
        if settings.EMBEDDED_REDIS:
            from diffplatform.embedded_redis import ensure_embedded_redis

            ensure_embedded_redis(settings.EMBEDDED_REDIS_DIR, settings.EMBEDDED_REDIS_PORT)
