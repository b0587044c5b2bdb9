"""Django's Redis cache, failing open: with Redis down, reads miss and writes are dropped.

Redis is the result cache and throttle store; losing it must slow the platform down, not break
pages and the API that serve stored results from the database. Every swallowed error is logged.
"""

import logging

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionRefusedError)


def _fail_open(default):
    def wrap(method):
        def call(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except UNAVAILABLE:
                logger.warning("Redis unavailable: cache %s skipped", method.__name__)
                return default(*args, **kwargs) if callable(default) else default

        call.__name__ = method.__name__
        return call

    return wrap


class ResilientRedisCache(RedisCache):
    get = _fail_open(lambda key, default=None, version=None: default)(RedisCache.get)
    get_many = _fail_open({})(RedisCache.get_many)
    set = _fail_open(None)(RedisCache.set)
    set_many = _fail_open([])(RedisCache.set_many)
    add = _fail_open(False)(RedisCache.add)
    delete = _fail_open(False)(RedisCache.delete)
    touch = _fail_open(False)(RedisCache.touch)
    has_key = _fail_open(False)(RedisCache.has_key)
    incr = _fail_open(0)(RedisCache.incr)
