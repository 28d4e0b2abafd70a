"""L2: the shared Redis level, with generation-checked stores and a circuit breaker (talks to Redis).

Keys live under a namespace: ``{ns}:v:{key}`` holds ``b"<expires_at>|<json>"``, ``{ns}:g:{key}``
and ``{ns}:tg:{tag}`` are generation counters, ``{ns}:tm:{tag}`` the members of a tag, and
``{ns}:lock:{key}`` the stampede lock. Invalidation bumps the generations, deletes the values and
publishes on ``{ns}:inval`` in one Lua script, so a loader that read the database before the
write committed holds an old generation and its store is refused (the refill race).

Any Redis error opens the breaker: for ``cooldown`` seconds no request waits on Redis; the outage
is logged once and counted; invalidations that could not be sent are replayed first when Redis
answers again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kit.cache.base import MISSING, Timer, check_key, check_ttl, dumps, loads
from kit.cache.stats import CacheStats

log = logging.getLogger(__name__)
T = TypeVar("T")
GEN_TTL_MS = 86_400_000  # generations outlive any value and any load

# KEYS: v, g, tg1..tgN, tm1..tmN; ARGV: data, px, n, expected g, expected tg1..tgN, member name
_STORE_IF = """
local n = tonumber(ARGV[3])
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[4] then return 0 end
for i = 1, n do
  if (redis.call('GET', KEYS[2 + i]) or '') ~= ARGV[4 + i] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 1, n do
  redis.call('SADD', KEYS[2 + n + i], ARGV[5 + n])
  redis.call('PEXPIRE', KEYS[2 + n + i], ARGV[2], 'GT')
  if redis.call('PTTL', KEYS[2 + n + i]) < 0 then redis.call('PEXPIRE', KEYS[2 + n + i], ARGV[2]) end
end
return 1
"""
# ARGV: ns, gen_ttl_ms, message, nkeys, key1..keyN, tag1..tagM
_INVALIDATE = """
local ns, ttl, nk = ARGV[1], ARGV[2], tonumber(ARGV[4])
local function drop(key)
  redis.call('DEL', ns .. ':v:' .. key)
  redis.call('INCR', ns .. ':g:' .. key)
  redis.call('PEXPIRE', ns .. ':g:' .. key, ttl)
end
for i = 5, 4 + nk do drop(ARGV[i]) end
for i = 5 + nk, #ARGV do
  local tag = ARGV[i]
  redis.call('INCR', ns .. ':tg:' .. tag)
  redis.call('PEXPIRE', ns .. ':tg:' .. tag, ttl)
  for _, key in ipairs(redis.call('SMEMBERS', ns .. ':tm:' .. tag)) do drop(key) end
  redis.call('DEL', ns .. ':tm:' .. tag)
end
return redis.call('PUBLISH', ns .. ':inval', ARGV[3])
"""
_UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RedisDown(Exception):
    """Internal: the breaker is open or the call failed (callers fall back to L1 + database)."""


def make_client(url: str, *, timeout: float = 0.25, max_connections: int = 50) -> redis.Redis:
    """A redis-py client with short timeouts and no retries: the breaker decides, not the client."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=Retry(NoBackoff(), 0), max_connections=max_connections)


class L2Cache:
    """Redis level. ``get`` returns MISSING on a miss and when Redis is down (never raises)."""

    level = "l2"

    def __init__(self, url: str, *, namespace: str = "kit", ttl: float = 300.0, timeout: float = 0.25,
                 cooldown: float = 1.0, timer: Timer = time.time, breaker_timer: Timer = time.monotonic,
                 origin: str | None = None, stats: CacheStats | None = None) -> None:
        if not namespace or ":" in namespace:
            raise ValueError(f"namespace must be non-empty without ':', got {namespace!r}")
        self.url, self.ns, self.default_ttl = url, namespace, check_ttl(ttl)
        self.cooldown, self.origin = cooldown, origin or uuid.uuid4().hex
        self.stats = stats or CacheStats()
        self.client = make_client(url, timeout=timeout)
        self._timer, self._btimer = timer, breaker_timer
        self._open_until: float | None = None
        self._replay: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        self._store_if = self.client.register_script(_STORE_IF)
        self._invalidate = self.client.register_script(_INVALIDATE)
        self._unlock = self.client.register_script(_UNLOCK)

    # -- key names ------------------------------------------------------------------------------
    def vkey(self, key: str) -> str:
        return f"{self.ns}:v:{key}"

    @property
    def channel(self) -> str:
        return f"{self.ns}:inval"

    # -- breaker --------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self._open_until is None or self._btimer() >= self._open_until

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` against Redis through the breaker; RedisDown when open or on any Redis error."""
        if self._open_until is not None:
            if self._btimer() < self._open_until:
                raise RedisDown("breaker open")
            self._half_open()
        try:
            return fn()
        except redis.RedisError as exc:
            self._trip(exc)
            raise RedisDown(str(exc)) from exc

    def _half_open(self) -> None:
        # a probe: replay the invalidations this process could not send, then close
        try:
            self.client.ping()
            while self._replay:
                keys, tags = self._replay[0]
                self._send_invalidation(keys, tags)
                self._replay.pop(0)
        except redis.RedisError as exc:
            self._trip(exc)
            raise RedisDown(str(exc)) from exc
        self._open_until = None
        log.warning("Redis at %s answers again: L2 resumed", self.client.connection_pool.connection_kwargs.get("host"))

    def _trip(self, exc: BaseException) -> None:
        self.stats.incr("l2", "errors")
        if self._open_until is None:
            log.warning("Redis unavailable (%s): serving from L1 + database until it answers", type(exc).__name__)
        self._open_until = self._btimer() + self.cooldown

    # -- reads ----------------------------------------------------------------------------------
    def _decode(self, raw: bytes | None) -> bytes | None:
        if raw is None:
            return None
        expires, _, data = raw.partition(b"|")
        return data if float(expires) > self._timer() else None

    def get_raw(self, key: str) -> bytes | None:
        try:
            return self._count(self._decode(self.call(lambda: self.client.get(self.vkey(key)))))
        except RedisDown:
            return None

    def _count(self, data: bytes | None) -> bytes | None:
        self.stats.incr("l2", "misses" if data is None else "hits")
        return data

    def get(self, key: str) -> Any:
        data = self.get_raw(check_key(key))
        return MISSING if data is None else loads(data)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        try:
            raws = self.call(lambda: self.client.mget([self.vkey(k) for k in keys])) if keys else []
        except RedisDown:
            return {}
        found = {k: self._count(self._decode(r)) for k, r in zip(keys, raws)}
        return {k: loads(d) for k, d in found.items() if d is not None}

    def lookup(self, key: str, tags: Iterable[str]) -> tuple[bytes | None, tuple[str, ...]]:
        """The value and the generation token (key's and tags') in one MGET; RedisDown when down."""
        tags = tuple(tags)
        names = [self.vkey(key), f"{self.ns}:g:{key}", *(f"{self.ns}:tg:{t}" for t in tags)]
        raw, *gens = self.call(lambda: self.client.mget(names))
        return self._count(self._decode(raw)), tuple((g or b"").decode() for g in gens)

    # -- writes ---------------------------------------------------------------------------------
    def _envelope(self, data: bytes, ttl: float) -> bytes:
        return b"%.6f|%s" % (self._timer() + ttl, data)

    def set(self, key: str, value: Any, *, ttl: float | None = None, tags: Iterable[str] = ()) -> bool:
        ttl, tags = check_ttl(ttl or self.default_ttl), tuple(tags)
        data, px = self._envelope(dumps(value), ttl), int(ttl * 1000)

        def run() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.set(self.vkey(check_key(key)), data, px=px)
            for tag in tags:
                pipe.sadd(f"{self.ns}:tm:{tag}", key)
                pipe.pexpire(f"{self.ns}:tm:{tag}", GEN_TTL_MS)
            pipe.execute()
        return self._write(run)

    def set_many(self, mapping: Mapping[str, Any], *, ttl: float | None = None) -> bool:
        """One pipeline of SET ... PX for all of ``mapping``."""
        ttl = check_ttl(ttl or self.default_ttl)
        items = [(self.vkey(check_key(k)), self._envelope(dumps(v), ttl)) for k, v in mapping.items()]

        def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            for name, data in items:
                pipe.set(name, data, px=int(ttl * 1000))
            pipe.execute()
        return self._write(run)

    def store_if(self, key: str, data: bytes, *, ttl: float, tags: tuple[str, ...],
                 token: tuple[str, ...]) -> bool:
        """Store unless the key or a tag was invalidated since ``token`` was read (refill race)."""
        keys = [self.vkey(key), f"{self.ns}:g:{key}", *(f"{self.ns}:tg:{t}" for t in tags),
                *(f"{self.ns}:tm:{t}" for t in tags)]
        args = [self._envelope(data, ttl), int(ttl * 1000), len(tags), *token, key]
        try:
            stored = bool(self.call(lambda: self._store_if(keys=keys, args=args)))
        except RedisDown:
            return False
        self.stats.incr("l2", "sets" if stored else "stores_refused")
        return stored

    def _write(self, run: Callable[[], None]) -> bool:
        try:
            self.call(run)
        except RedisDown:
            return False
        self.stats.incr("l2", "sets")
        return True

    # -- invalidation ---------------------------------------------------------------------------
    def invalidate(self, keys: Iterable[str] = (), tags: Iterable[str] = ()) -> bool:
        """Delete ``keys`` and every member of ``tags`` everywhere, bump generations, publish."""
        keys, tags = tuple(keys), tuple(tags)
        if not keys and not tags:
            return True
        try:
            self.call(lambda: self._send_invalidation(keys, tags))
        except RedisDown:
            self._replay.append((keys, tags))  # sent first when Redis answers again
            return False
        return True

    def _send_invalidation(self, keys: tuple[str, ...], tags: tuple[str, ...]) -> None:
        message = dumps({"o": self.origin, "k": list(keys), "t": list(tags)})
        self._invalidate(keys=[], args=[self.ns, GEN_TTL_MS, message, len(keys), *keys, *tags])
        self.stats.incr("l2", "invalidations_sent", len(keys) + len(tags))

    def delete(self, key: str) -> bool:
        return self.invalidate(keys=[key])

    def invalidate_tags(self, tags: Iterable[str]) -> bool:
        return self.invalidate(tags=tags)

    def clear(self) -> int:
        """Delete every key of this namespace (SCAN, not KEYS: never blocks the server)."""
        def run() -> int:
            names = list(self.client.scan_iter(match=f"{self.ns}:*", count=1000))
            return self.client.delete(*names) if names else 0
        try:
            return self.call(run)
        except RedisDown:
            return 0

    # -- stampede lock --------------------------------------------------------------------------
    def acquire(self, key: str, *, ttl: float) -> str | None:
        """The lock token if this process now holds ``key``'s recompute lock, else None."""
        token = uuid.uuid4().hex
        ok = self.call(lambda: self.client.set(f"{self.ns}:lock:{key}", token, nx=True, px=int(ttl * 1000)))
        return token if ok else None

    def release(self, key: str, token: str) -> None:
        try:
            self.call(lambda: self._unlock(keys=[f"{self.ns}:lock:{key}"], args=[token]))
        except RedisDown:
            pass  # the lock expires on its own

    def close(self) -> None:
        self.client.close()
