"""The two-level cache: L1 in process, L2 in Redis, the database behind (talks to Redis).

``get_or_load(key, loader, ttl=, tags=)`` looks in L1, then L2, then calls ``loader`` once per key
per process (single flight) and, with ``lock=True``, once per key across processes (a Redis lock).

Why it is never wrong:

* a load registers a *flight* before it reads L2 or the database; an invalidation of its key or
  tags (local, or received from another process) marks the flight dirty and unregisters it, so
  the old value is returned to the readers that started before the write but stored nowhere,
  and readers that start after get a new flight;
* the L2 store is conditional on the generations read with the value (see :mod:`kit.cache.l2`);
  a refused L2 store means L1 is not filled either;
* with ``cross_process=True`` L1 and L2 are only read while the invalidation channel proves that
  invalidations get through: a heartbeat (a write, then a publish) sent less than
  ``liveness_bound`` seconds ago has come back through this process's subscription (see
  :mod:`kit.cache.channel`); losing it — a crash, a hang that answers nothing, writes paused, Redis
  out of memory — flushes L1 and bumps an epoch so that loads which began before the gap do not
  fill L1, and Redis is not used at all (the database serves) until a heartbeat is back and L2 has
  recovered (:meth:`kit.cache.l2.L2Cache.recover`);
* an invalidation this process could not deliver to Redis (:attr:`kit.cache.l2.L2Cache.pending`)
  turns L1 off here and keeps Redis unread until it has been replayed — from the heartbeat thread,
  every ``heartbeat`` seconds — because Redis may still hold what it should have deleted;
  ``invalidate`` returns whether it was delivered.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import cachetools

from kit.cache.base import MISSING, Timer, check_key, check_ttl, dumps, loads
from kit.cache.channel import InvalidationChannel
from kit.cache.l1 import L1Cache
from kit.cache.l2 import L2Cache, RedisDown
from kit.cache.stats import CacheStats

HEARTBEAT_S = 0.05  # a heartbeat (a write, then a publish back to this process) this often ...
LIVENESS_BOUND_S = 0.25  # ... and L1 off when none sent within this bound has come back


@dataclass(frozen=True)
class CacheConfig:
    """How a :class:`TieredCache` behaves; the defaults suit a web app's read-mostly listings."""

    ttl: float = 300.0  # seconds, when a call gives none
    l1_max_entries: int = 2000
    l1_max_bytes: int = 64 * 2**20
    l1_ttl: float | None = None  # L1's own TTL (None: ``ttl``)
    cross_process: bool = True  # invalidations reach the other processes over Redis pub/sub
    lock: bool = False  # one loader per key across processes (a Redis lock)
    lock_ttl: float = 5.0
    lock_poll: float = 0.005
    l2_timeout: float = 0.25  # seconds a Redis call may take before it counts as a failure
    cooldown: float = 1.0  # seconds the circuit stays open after Redis failed
    use_l1: bool = True
    heartbeat: float = HEARTBEAT_S
    liveness_bound: float = LIVENESS_BOUND_S


DEFAULT = CacheConfig()


def _serving_texts(c: CacheConfig) -> tuple[str, str]:
    """What serves while L2's breaker is open, and while an invalidation waits for its replay (for
    L2's log lines: they must say what really serves): L2's ``fallback`` and ``undelivered``."""
    beat = f"{c.heartbeat * 1000:.0f} ms"
    retried = f"every {beat}" if c.cross_process else f"after the {c.cooldown:.1f} s cooldown"
    fallback = (
        f"L1 while heartbeats prove that invalidations get through (every {beat}) and the database"
        if c.cross_process
        else "L1 + database"
    )
    undelivered = (
        f"L1 off and Redis not read in this process, the database serves until it is replayed (retried {retried})"
    )
    return fallback, undelivered


class _Flight:
    __slots__ = ("dirty", "done", "epoch", "error", "key", "tags", "value")

    def __init__(self, key: str, tags: tuple[str, ...], epoch: int) -> None:
        self.key, self.tags, self.epoch = key, tags, epoch
        self.dirty = False
        self.done = threading.Event()
        self.value: Any = MISSING
        self.error: BaseException | None = None


class TieredCache:
    """L1 + optional L2; the same get/set/delete/invalidate_tags contract as each level."""

    level = "tiered"

    def __init__(
        self,
        redis_url: str | None = None,
        namespace: str = "kit",
        config: CacheConfig = DEFAULT,
        *,
        timer: Timer | None = None,
    ) -> None:
        c = config
        self.stats = CacheStats()
        self.default_ttl, self.lock, self.lock_ttl, self.lock_poll = check_ttl(c.ttl), c.lock, c.lock_ttl, c.lock_poll
        self.origin = uuid.uuid4().hex
        self.use_l1 = c.use_l1
        self.l1 = L1Cache(
            max_entries=c.l1_max_entries,
            max_bytes=c.l1_max_bytes,
            ttl=c.l1_ttl or c.ttl,
            stats=self.stats,
            **({"timer": timer} if timer else {}),
        )
        self.l2: L2Cache | None = None
        self.channel: InvalidationChannel | None = None
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._epoch = 0
        self._access: dict[str, int] = {}
        # the loader last used per key, for warming; bounded like L1
        self._loaders: cachetools.LRUCache = cachetools.LRUCache(maxsize=c.l1_max_entries)
        if redis_url:
            # with the channel, L1 is governed by the heartbeats, not by the breaker: it serves while
            # they prove that invalidations get through, whatever one failed call did
            fallback, undelivered = _serving_texts(c)
            self.l2 = l2 = L2Cache(
                redis_url,
                namespace=namespace,
                ttl=c.ttl,
                timeout=c.l2_timeout,
                cooldown=c.cooldown,
                origin=self.origin,
                stats=self.stats,
                bump_on_trip=not c.cross_process,
                fallback=fallback,
                undelivered=undelivered,
                timer=timer,
            )
            if c.cross_process:
                self.channel = InvalidationChannel(
                    redis_url,
                    l2.channel,
                    origin=self.origin,
                    on_message=self._on_remote,
                    on_state=self._on_channel,
                    on_beat=l2.retry,
                    timeout=c.l2_timeout,
                    heartbeat=c.heartbeat,
                    bound=c.liveness_bound,
                    reconnect_after=max(5.0, 4 * c.liveness_bound),
                )
                self.channel.start()

    # -- reading --------------------------------------------------------------------------------
    @property
    def l1_serving(self) -> bool:
        """Whether L1 serves: not while an invalidation of this process waits for its replay, and
        with the channel only while heartbeats prove that invalidations get through."""
        return (
            self.use_l1 and (self.l2 is None or not self.l2.pending) and (self.channel is None or self.channel.proven)
        )

    @property
    def l2_serving(self) -> bool:
        """Whether reads use Redis: with the channel, only while it is proven (else the database).
        Writes paused or memory full, Redis still answers reads, with values an undelivered
        invalidation should have deleted."""
        return self._serving_l2() is not None

    def _serving_l2(self) -> L2Cache | None:
        """L2 when reads use it (see :attr:`l2_serving`), else None: the one check, typed for callers
        (a call, as the property was, on the L2 hit path)."""
        l2 = self.l2
        return l2 if l2 is not None and (self.channel is None or self.channel.proven) else None

    def get_or_load(
        self,
        key: str,
        loader: Callable[[], Any],
        *,
        ttl: float | None = None,
        tags: Iterable[str] = (),
        reload: Callable[[], Any] | None = None,
    ) -> Any:
        """The cached value of ``key``, or ``loader()``'s (stored unless invalidated meanwhile).

        ``reload`` is a loader that still works later (its own connection) for warming; by
        default ``loader`` is kept.
        """
        check_key(key)
        self._access[key] = self._access.get(key, 0) + 1  # approximate under threads: it ranks keys
        if self.l1_serving and (value := self.l1.get(key)) is not MISSING:
            return value
        # checked where they are used, off the hit path (a key's first call always gets here)
        ttl, tags = check_ttl(ttl or self.default_ttl), tuple(tags)
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight(key, tags, self._epoch)
                self._loaders[key] = (reload or loader, ttl, tags)
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = self._lead(flight, loader, ttl)
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.done.set()

    def _lead(self, flight: _Flight, loader: Callable[[], Any], ttl: float) -> Any:
        key, tags, token, lock_token = flight.key, flight.tags, None, None
        l2 = self._serving_l2()
        if l2 is not None:
            try:
                data, token = l2.lookup(key, tags)
                if data is not None:
                    return self._fill_l1(flight, data, ttl)
                if self.lock:
                    lock_token = l2.acquire(key, ttl=self.lock_ttl)
                    if lock_token is None and (data := self._wait_for(l2, key)) is not None:
                        return self._fill_l1(flight, data, ttl)
            except RedisDown:
                token = None
        try:
            self.stats.incr("db", "loads")
            data = dumps(loader())
            stored = True
            if l2 is not None and token is not None:  # a token is only read from L2
                stored = l2.store_if(key, data, ttl=ttl, tags=tags, token=token)
            return self._fill_l1(flight, data, ttl) if stored else loads(data)
        finally:
            if l2 is not None and lock_token is not None:  # a lock is only taken in L2
                l2.release(key, lock_token)

    def _wait_for(self, l2: L2Cache, key: str) -> bytes | None:
        """Another process holds the recompute lock: poll L2 for its value until the lock's TTL."""
        self.stats.incr("l2", "lock_waits")
        deadline = time.monotonic() + self.lock_ttl
        while time.monotonic() < deadline:
            time.sleep(self.lock_poll)
            data = l2.get_raw(key)
            if data is not None:
                return data
        return None

    def _fill_l1(self, flight: _Flight, data: bytes, ttl: float) -> Any:
        """``data`` decoded, and stored in L1 unless the flight was invalidated: decoded once, the
        object L1 holds is the one returned (as every later L1 hit returns it)."""
        # the dirty check and the store under one lock: an invalidation cannot slip between them
        with self._lock:
            if not (flight.dirty or flight.epoch != self._epoch or not self.l1_serving):
                return self.l1.set_encoded(flight.key, data, ttl=min(ttl, self.l1.default_ttl), tags=flight.tags)
            self.stats.incr("l1", "stores_refused")
        return loads(data)

    def get(self, key: str) -> Any:
        if self.l1_serving and (value := self.l1.get(key)) is not MISSING:
            return value
        l2 = self._serving_l2()
        return l2.get(key) if l2 is not None else MISSING

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        found = self.l1.get_many(keys) if self.l1_serving else {}
        rest = [k for k in keys if k not in found]
        if rest and (l2 := self._serving_l2()) is not None:
            found.update(l2.get_many(rest))
        return found

    # -- writing --------------------------------------------------------------------------------
    def set(self, key: str, value: Any, *, ttl: float | None = None, tags: Iterable[str] = ()) -> None:
        """Store unconditionally (write-through); prefer invalidate + get_or_load for DB data."""
        tags = tuple(tags)
        self.invalidate(keys=[key])
        l2 = self._serving_l2()
        if l2 is not None:
            l2.set(key, value, ttl=ttl, tags=tags)
        if self.l1_serving:
            self.l1.set(key, value, ttl=min(ttl or self.l1.default_ttl, self.l1.default_ttl), tags=tags)

    def set_many(self, mapping: dict[str, Any], *, ttl: float | None = None) -> None:
        for key, value in mapping.items():
            self.set(key, value, ttl=ttl)

    def delete(self, key: str) -> None:
        self.invalidate(keys=[key])

    def invalidate_tags(self, tags: Iterable[str]) -> None:
        self.invalidate(tags=tags)

    def invalidate(self, *, keys: Iterable[str] = (), tags: Iterable[str] = ()) -> bool:
        """Drop ``keys`` and ``tags`` here, in Redis, and (through the channel) in every process;
        whether Redis took it (if not, L1 is off here until it is replayed: see the module doc)."""
        keys, tags = tuple(keys), tuple(tags)
        # Redis first, then here: a flight that read the old L2 value before the DEL is still
        # registered when the local step marks it dirty; local first would let one slip into L1.
        # Undelivered, the L2 queue is not empty before the local step: from then on no flight
        # fills L1 (l1_serving is false) and none reads Redis before the replay.
        delivered = self.l2.invalidate(keys, tags) if self.l2 is not None else True
        self._invalidate_local(keys, tags)
        self.stats.incr("l1", "invalidations_sent", len(keys) + len(tags))
        return delivered

    def _invalidate_local(self, keys: Iterable[str], tags: Iterable[str]) -> None:
        keys, tags = set(keys), set(tags)
        with self._lock:
            for key, flight in list(self._flights.items()):
                if key in keys or tags.intersection(flight.tags):
                    flight.dirty = True
                    del self._flights[key]  # later readers start a new flight
            self.l1.delete_many(keys)
            self.l1.invalidate_tags(tags)

    def _on_remote(self, keys: list[str], tags: list[str]) -> None:
        self.stats.incr("l1", "invalidations_received", len(keys) + len(tags))
        self._invalidate_local(keys, tags)

    def _on_channel(self, up: bool) -> None:
        l2 = self.l2
        assert l2 is not None  # invariant: __init__ makes the channel only together with L2
        if up:  # before L1 serves again: a new epoch if Redis was lost, the unsent invalidations
            l2.recover()
        else:
            l2.mark_outage()
        with self._lock:
            self._epoch += 1
            for flight in self._flights.values():
                flight.dirty = True
            self._flights.clear()
            self.l1.clear()

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._flights.clear()
            self.l1.clear()
        if self.l2 is not None:
            self.l2.clear()

    # -- warming support ------------------------------------------------------------------------
    def hot_keys(self, n: int) -> list[str]:
        """The ``n`` most requested keys since start (ties by key)."""
        return [k for k, _ in sorted(self._access.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]

    def loader_of(self, key: str) -> tuple[Callable[[], Any], float, tuple[str, ...]] | None:
        with self._lock:
            return self._loaders.get(key)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.stop()
        if self.l2 is not None:
            self.l2.close()

    def __enter__(self) -> TieredCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
