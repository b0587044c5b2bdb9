"""Developer default: DEBUG on, SQLite and the embedded Redis unless variables say otherwise."""

from diffplatform.settings.base import *  # noqa: F403
from diffplatform.settings.env import env

DEBUG = env.bool("DEBUG", default=True)
# Local only: a fixed development key so `make run` works with no variables. Production refuses this.
SECRET_KEY = env.str("SECRET_KEY", default="local-development-only-not-secret")
# daphne serves static files through WhiteNoise straight from the app folders, no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
