"""L2: the shared Redis level, with generation-checked stores and a circuit breaker (talks to Redis).

Keys live under a namespace: ``{ns}:v:{key}`` holds ``b"<expires_at>|<epoch>|<json>"``,
``{ns}:g:{key}`` and ``{ns}:tg:{tag}`` are generation counters, ``{ns}:tm:{tag}`` the members of a
tag, ``{ns}:epoch`` the outage epoch and ``{ns}:lock:{key}`` the stampede lock. Invalidation bumps
the generations, deletes the values and publishes on ``{ns}:inval`` in one Lua script, so a loader
that read the database before the write committed holds an old generation and its store is
refused (the refill race). A read is one round trip: a single MGET brings the value with the
current epoch (and, for a load, the generations its store will be checked against).

Any Redis error opens the breaker: for ``cooldown`` seconds no request waits on Redis; the outage
is logged once and counted; invalidations that could not be sent are replayed when Redis answers
again. A write made during an outage could not delete its keys, and its process may replay later
than another process reads them: so a process that saw an outage bumps the epoch when it
recovers (:meth:`L2Cache.recover`), and a value stored under an older epoch is a miss for everyone.

An invalidation is *undelivered* when the script did not run (Redis down, hung, writes paused: the
call times out and Redis drops the command with its connection) or ran only in part (Redis out of
memory refused a generation bump). It is counted (``invalidation_failures``), logged once per
episode, queued, and :attr:`L2Cache.pending` stays true until it has been replayed
(``invalidations_replayed``); meanwhile this cache reads nothing from Redis.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.typing import EncodableT

from kit.cache.base import MISSING, Timer, check_key, check_ttl, describe, dumps, loads
from kit.cache.stats import CacheStats

log = logging.getLogger(__name__)
T = TypeVar("T")
GEN_TTL_MS = 86_400_000  # generations outlive any value and any load

# KEYS: v, epoch, g, tg1..tgN, tm1..tmN; ARGV: expires, px, n, epoch, g, tg1..tgN, member, data
_STORE_IF = """
local n = tonumber(ARGV[3])
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[4] then return 0 end
for i = 0, n do
  if (redis.call('GET', KEYS[3 + i]) or '') ~= ARGV[5 + i] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[4] .. '|' .. ARGV[7 + n], 'PX', ARGV[2])
for i = 1, n do
  local tm = KEYS[3 + n + i]
  redis.call('SADD', tm, ARGV[6 + n])
  redis.call('PEXPIRE', tm, ARGV[2], 'GT')
  if redis.call('PTTL', tm) < 0 then redis.call('PEXPIRE', tm, ARGV[2]) end
end
return 1
"""
# KEYS: epoch, v1..vN; ARGV: expires, px, data1..dataN (stored under the epoch of this moment)
_SET = """
local e = redis.call('GET', KEYS[1]) or ''
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1] .. '|' .. e .. '|' .. ARGV[1 + i], 'PX', ARGV[2])
end
return #KEYS - 1
"""
# ARGV: ns, gen_ttl_ms, message, nkeys, key1..keyN, tag1..tagM -> {receivers, bumps refused, first error}
# The bumps run under pcall: Redis out of memory (maxmemory, noeviction) refuses INCR -- a script's
# first write that may need memory -- but never DEL or PUBLISH, so the values are still deleted
# and every process still drops its L1 copy; the caller treats a refused bump as undelivered.
_INVALIDATE = """
local ns, ttl, nk = ARGV[1], ARGV[2], tonumber(ARGV[4])
local refused, first_error = 0, ''
local function bump(name)
  local r = redis.pcall('INCR', name)
  if type(r) == 'table' and r.err then
    refused = refused + 1
    if first_error == '' then first_error = r.err end
  else
    redis.call('PEXPIRE', name, ttl)
  end
end
local function drop(key)
  redis.call('DEL', ns .. ':v:' .. key)
  bump(ns .. ':g:' .. key)
end
for i = 5, 4 + nk do drop(ARGV[i]) end
for i = 5 + nk, #ARGV do
  local tag = ARGV[i]
  bump(ns .. ':tg:' .. tag)
  for _, key in ipairs(redis.call('SMEMBERS', ns .. ':tm:' .. tag)) do drop(key) end
  redis.call('DEL', ns .. ':tm:' .. tag)
end
return {redis.call('PUBLISH', ns .. ':inval', ARGV[3]), refused, first_error}
"""
_UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RedisDown(Exception):
    """Internal: the breaker is open or the call failed (callers fall back to L1 + database)."""


class BumpRefused(redis.ResponseError):
    """Internal: the invalidation script deleted and published, but Redis refused a generation bump."""


def make_client(url: str, *, timeout: float = 0.25, max_connections: int = 50) -> redis.Redis:
    """A redis-py client with short timeouts and no retries: the breaker decides, not the client."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
    )


class L2Cache:
    """Redis level. ``get`` returns MISSING on a miss and when Redis is down (never raises)."""

    level = "l2"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "kit",
        ttl: float = 300.0,
        timeout: float = 0.25,
        cooldown: float = 1.0,
        timer: Timer | None = None,
        breaker_timer: Timer = time.monotonic,
        origin: str | None = None,
        stats: CacheStats | None = None,
        fallback: str = "the database",
        bump_on_trip: bool = True,
        undelivered: str | None = None,
    ) -> None:
        """``timer`` stamps expiry (None: ``time.time``, the wall clock: the stamps are read by
        every process); ``fallback`` names what serves while the breaker is open and
        ``undelivered`` what serves while an invalidation waits for its replay (for the log
        lines); ``bump_on_trip=False`` leaves outage detection to the owner (:meth:`mark_outage`)."""
        if not namespace or ":" in namespace:
            raise ValueError(f"namespace must be non-empty without ':', got {namespace!r}")
        self.url, self.ns, self.default_ttl = url, namespace, check_ttl(ttl)
        self.cooldown, self.origin = cooldown, origin or uuid.uuid4().hex
        self.stats = stats or CacheStats()
        self.client = make_client(url, timeout=timeout)
        self._timer, self._btimer = timer or time.time, breaker_timer
        self._open_until: float | None = None
        self._last_error = ""
        self._replay: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        self._queue = threading.Lock()  # the replay queue: appended by writers, emptied by a recovery
        # the channel's threads and a request's half-open probe may recover at the same moment:
        # one of them bumps the epoch and replays, the other finds nothing left to do
        self._recovering = threading.Lock()
        self.fallback, self._bump_on_trip, self._outage = fallback, bump_on_trip, False
        self.undelivered = undelivered or (
            f"this cache reads nothing from Redis until it is replayed (retried after the {cooldown:.1f} s cooldown)"
        )
        self._store_if = self.client.register_script(_STORE_IF)
        self._set = self.client.register_script(_SET)
        self._invalidate = self.client.register_script(_INVALIDATE)
        self._unlock = self.client.register_script(_UNLOCK)

    # -- key names ------------------------------------------------------------------------------
    def vkey(self, key: str) -> str:
        return f"{self.ns}:v:{key}"

    @property
    def channel(self) -> str:
        return f"{self.ns}:inval"

    @property
    def epoch_key(self) -> str:
        return f"{self.ns}:epoch"

    # -- breaker --------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self._open_until is None or self._btimer() >= self._open_until

    @property
    def pending(self) -> bool:
        """An invalidation waits for its replay: values in Redis may be older than the database."""
        return bool(self._replay)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` against Redis through the breaker; RedisDown when open or on any Redis
        error. Undelivered invalidations are replayed first: Redis may hold what they delete."""
        if self._open_until is not None and self._btimer() < self._open_until:
            raise RedisDown(f"breaker open after {self._last_error}")
        if self._open_until is not None or self._replay:
            self._half_open()
        try:
            return fn(*args)
        except redis.RedisError as exc:
            self._trip(exc)
            raise RedisDown(describe(exc)) from exc

    def _half_open(self) -> None:
        try:
            self.recover()
        except redis.RedisError as exc:
            self._trip(exc)
            raise RedisDown(describe(exc)) from exc

    def recover(self) -> None:
        """Probe Redis; after an outage, bump the epoch (values stored before it are misses from
        now on, for every process), replay the invalidations this process could not send, then
        close the breaker. Raises ``redis.RedisError`` when Redis does not answer."""
        self.client.ping()
        with self._recovering:
            was_down = self._open_until is not None or self._outage
            if self._outage:
                self.client.incr(self.epoch_key)
                self._outage = False
            replayed = self._replay_all()
            self._open_until = None
        if was_down:
            log.warning(
                "Redis at %s answers again: L2 resumed", self.client.connection_pool.connection_kwargs.get("host")
            )
        if replayed:
            log.warning(
                "replayed %d undelivered invalidation(s): Redis has them all, the cache serves as usual again", replayed
            )

    def retry(self) -> bool:
        """Replay now, cooldown or not (for a thread that runs anyway, e.g. the heartbeat's): whether
        nothing is left undelivered. A failure is expected while Redis is in trouble: not logged."""
        if not self._replay:
            return True
        try:
            self.recover()
        except redis.RedisError:
            return False
        return not self._replay

    def _replay_all(self) -> int:
        """Send the queued invalidations oldest first; each leaves the queue once Redis ran it whole."""
        done = 0
        while True:
            with self._queue:
                if not self._replay:
                    return done
                keys, tags = self._replay[0]
            self._send_invalidation(keys, tags)  # raises: it stays first in the queue
            with self._queue:
                self._replay.pop(0)
            self.stats.incr("l2", "invalidations_replayed")
            done += 1

    def mark_outage(self) -> None:
        """The owner lost Redis (e.g. no reply within its liveness bound): bump the epoch on recovery."""
        self._outage = True

    def _trip(self, exc: BaseException) -> None:
        self.stats.incr("l2", "errors")
        if self._bump_on_trip:
            self._outage = True
        self._last_error = describe(exc)
        if self._open_until is None:
            log.warning(
                "Redis call failed (%s): L2 skipped for %.1f s, serving from %s",
                self._last_error,
                self.cooldown,
                self.fallback,
            )
        self._open_until = self._btimer() + self.cooldown

    # -- reads ----------------------------------------------------------------------------------
    def _decode(self, raw: bytes | None, epoch: bytes | None) -> bytes | None:
        """The value of an envelope, unless it expired or was stored under another epoch."""
        if raw is None:
            return None
        expires, stored_epoch, data = raw.split(b"|", 2)
        return data if float(expires) > self._timer() and stored_epoch == (epoch or b"") else None

    def _mget(self, *names: str) -> list[bytes | None]:
        """One MGET: a hit's only round trip. Sent with ``execute_command``: redis-py's ``mget()``
        runs an import statement and rebuilds the argument list on every call, a sixth of a bare
        GET's own client time (redis-py 8.2)."""
        return self.call(self.client.execute_command, "MGET", *names)

    def get_raw(self, key: str) -> bytes | None:
        # the value and the epoch it must carry in one round trip: the epoch is never cached here,
        # another process bumps it when it recovers from an outage
        try:
            raw, epoch = self._mget(self.vkey(key), self.epoch_key)
        except RedisDown:
            return None
        return self._count(self._decode(raw, epoch))

    def _count(self, data: bytes | None) -> bytes | None:
        self.stats.incr("l2", "misses" if data is None else "hits")
        return data

    def get(self, key: str) -> Any:
        data = self.get_raw(check_key(key))
        return MISSING if data is None else loads(data)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        try:
            *raws, epoch = self._mget(*(self.vkey(k) for k in keys), self.epoch_key) if keys else [None]
        except RedisDown:
            return {}
        found = {k: self._count(self._decode(r, epoch)) for k, r in zip(keys, raws, strict=False)}
        return {k: loads(d) for k, d in found.items() if d is not None}

    def lookup(self, key: str, tags: Iterable[str]) -> tuple[bytes | None, tuple[str, ...]]:
        """The value and the token (epoch, the key's and the tags' generations) in one MGET;
        RedisDown when down."""
        tags = tuple(tags)
        names = [self.vkey(key), self.epoch_key, f"{self.ns}:g:{key}", *(f"{self.ns}:tg:{t}" for t in tags)]
        raw, *gens = self._mget(*names)
        return self._count(self._decode(raw, gens[0])), tuple((g or b"").decode() for g in gens)

    # -- writes ---------------------------------------------------------------------------------
    def _expires(self, ttl: float) -> bytes:
        return b"%.6f" % (self._timer() + ttl)

    def set(self, key: str, value: Any, *, ttl: float | None = None, tags: Iterable[str] = ()) -> bool:
        ttl, tags = check_ttl(ttl or self.default_ttl), tuple(tags)
        data, px = dumps(value), int(ttl * 1000)

        def run() -> None:
            pipe = self.client.pipeline(transaction=True)
            self._set(
                keys=[self.epoch_key, self.vkey(check_key(key))], args=[self._expires(ttl), px, data], client=pipe
            )
            for tag in tags:
                pipe.sadd(f"{self.ns}:tm:{tag}", key)
                pipe.pexpire(f"{self.ns}:tm:{tag}", GEN_TTL_MS)
            pipe.execute()

        return self._write(run)

    def set_many(self, mapping: Mapping[str, Any], *, ttl: float | None = None) -> bool:
        """One script call that SETs ... PX all of ``mapping``."""
        ttl = check_ttl(ttl or self.default_ttl)
        names = [self.vkey(check_key(k)) for k in mapping]
        datas = [dumps(v) for v in mapping.values()]
        if not names:
            return True
        return self._write(
            lambda: self._set(keys=[self.epoch_key, *names], args=[self._expires(ttl), int(ttl * 1000), *datas])
        )

    def store_if(self, key: str, data: bytes, *, ttl: float, tags: tuple[str, ...], token: tuple[str, ...]) -> bool:
        """Store unless the epoch changed or the key or a tag was invalidated since ``token`` was
        read (the refill race)."""
        keys = [
            self.vkey(key),
            self.epoch_key,
            f"{self.ns}:g:{key}",
            *(f"{self.ns}:tg:{t}" for t in tags),
            *(f"{self.ns}:tm:{t}" for t in tags),
        ]
        args: list[EncodableT] = [self._expires(ttl), int(ttl * 1000), len(tags), *token, key, data]
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
        """Delete ``keys`` and every member of ``tags`` everywhere, bump generations, publish;
        whether Redis ran all of it (else it is queued, see :meth:`_undelivered`)."""
        keys, tags = tuple(keys), tuple(tags)
        if not keys and not tags:
            return True
        try:
            self.call(lambda: self._send_invalidation(keys, tags))
        except RedisDown as exc:
            self._undelivered(keys, tags, str(exc))
            return False
        return True

    def _undelivered(self, keys: tuple[str, ...], tags: tuple[str, ...], why: str) -> None:
        # Until the replay, Redis may hold the old value (the script never ran) or old generations
        # (a bump was refused), so a loader elsewhere that read its token before the write and the
        # database before the commit can still store the old value. The replay bumps and deletes
        # again, but only the keys it can name: a value whose tag-member SADD was refused is not in
        # SMEMBERS. Hence the epoch bump on recovery too: every value stored before it is a miss for
        # every process, and a loader that read the new epoch read the database after the recovery,
        # so after the commit. Other processes do not read the old value meanwhile only when the same
        # fault stops their heartbeats (a pause or OOM does); a writer cut off alone cannot warn them.
        self._outage = True
        with self._queue:
            first = not self._replay
            self._replay.append((keys, tags))  # sent first when Redis answers again
        self.stats.incr("l2", "invalidation_failures")
        if first:
            log.warning(
                "invalidation of %d key(s) and %d tag(s) not delivered to Redis (%s): %s",
                len(keys),
                len(tags),
                why,
                self.undelivered,
            )

    def _send_invalidation(self, keys: tuple[str, ...], tags: tuple[str, ...]) -> None:
        message = dumps({"o": self.origin, "k": list(keys), "t": list(tags)})
        _, refused, error = self._invalidate(keys=[], args=[self.ns, GEN_TTL_MS, message, len(keys), *keys, *tags])
        if refused:
            error = error.decode() if isinstance(error, bytes) else error
            raise BumpRefused(f"{refused} generation bump(s) refused, values deleted, message sent: {error}")
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
