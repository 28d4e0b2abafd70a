"""L1: an in-process cache bounded by entries and by bytes, with per-entry TTL (pure, thread-safe).

Built on cachetools' TLRUCache (least-recently-used eviction, time-to-use per entry, injected
timer). The byte bound uses the encoded JSON size of each value; the entry bound is enforced on
top, because cachetools bounds by one size function only. Values are stored as the decoded JSON
round trip of what was set, so the loader's own object is never shared with later readers; the
object a ``get`` returns is shared between readers and must be treated as read-only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import cachetools

from kit.cache.base import MISSING, Timer, check_key, check_ttl, dumps, loads
from kit.cache.stats import CacheStats


class _Entry(NamedTuple):
    value: Any
    ttl: float
    size: int
    tags: tuple[str, ...]


class _Store(cachetools.TLRUCache):
    """TLRUCache that reports evictions (not expirations) to the owner."""

    def __init__(self, *, owner: L1Cache, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._owner = owner

    def popitem(self):
        key, entry = super().popitem()
        self._owner._forget(key, entry, event="evictions")
        return key, entry


class L1Cache:
    """In-process cache: ``get`` returns MISSING on a miss, ``None`` is a value like any other."""

    level = "l1"

    def __init__(
        self,
        *,
        max_entries: int = 2000,
        max_bytes: int = 64 * 2**20,
        ttl: float = 300.0,
        timer: Timer = time.monotonic,
        stats: CacheStats | None = None,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be >= 1")
        self.max_entries, self.max_bytes, self.default_ttl = max_entries, max_bytes, check_ttl(ttl)
        self.stats = stats or CacheStats()
        self._timer = timer
        # the stats' lock guards the store too: a lookup and its hit/miss counter, one acquisition
        self._lock = self.stats.lock
        self._tags: dict[str, set[str]] = {}
        self._store = _Store(
            owner=self, maxsize=max_bytes, ttu=self._ttu, timer=timer, getsizeof=lambda entry: entry.size
        )

    @staticmethod
    def _ttu(_key: str, entry: _Entry, now: float) -> float:
        return now + entry.ttl

    def get(self, key: str) -> Any:
        # one subscript, not cachetools' get(): that is a membership test and then a subscript,
        # each reading the timer (an expired entry raises KeyError like an absent one)
        with self._lock:
            try:
                entry = self._store[key]
            except KeyError:
                self.stats.incr_held("l1", "misses")
                return MISSING
            self.stats.incr_held("l1", "hits")
        return entry.value

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The cached keys among ``keys`` (misses are absent from the result)."""
        return {k: v for k in keys if (v := self.get(k)) is not MISSING}

    def set(self, key: str, value: Any, *, ttl: float | None = None, tags: Iterable[str] = ()) -> Any:
        """Store ``value`` and return the stored (JSON round-tripped) copy."""
        data = dumps(value)
        return self.set_encoded(check_key(key), data, ttl=ttl, tags=tags)

    def set_encoded(self, key: str, data: bytes, *, ttl: float | None = None, tags: Iterable[str] = ()) -> Any:
        entry = _Entry(loads(data), check_ttl(ttl or self.default_ttl), len(data) + len(key), tuple(tags))
        if entry.size > self.max_bytes:
            return entry.value  # too big to ever fit: not cached, not an error
        with self._lock:
            self.delete(key)
            self._store.expire()
            while len(self._store) >= self.max_entries:
                self._store.popitem()
            self._store[key] = entry
            for tag in entry.tags:
                self._tags.setdefault(tag, set()).add(key)
        self.stats.incr("l1", "sets")
        return entry.value

    def set_many(self, mapping: Mapping[str, Any], *, ttl: float | None = None) -> None:
        for key, value in mapping.items():
            self.set(key, value, ttl=ttl)

    def delete(self, key: str) -> bool:
        with self._lock:
            entry = self._store.pop(key, None)
            if entry is not None:
                self._forget(key, entry, event=None)
        return entry is not None

    def delete_many(self, keys: Iterable[str]) -> int:
        return sum(self.delete(k) for k in keys)

    def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Drop every entry carrying one of ``tags``; returns how many were dropped."""
        with self._lock:
            tags = list(tags)
            keys = set().union(*(self._tags.get(t, ()) for t in tags))
            dropped = sum(self.delete(k) for k in keys)
            for tag in tags:  # members that expired silently are forgotten here
                self._tags.pop(tag, None)
            return dropped

    def clear(self) -> None:
        with self._lock:
            self._store.clear()
            self._tags.clear()

    def __len__(self) -> int:
        with self._lock:
            self._store.expire()
            return len(self._store)

    @property
    def currsize(self) -> int:
        with self._lock:  # cachetools types sizes as float; ours are byte counts (int)
            return int(self._store.currsize)

    def _forget(self, key: str, entry: _Entry, *, event: str | None) -> None:
        # called with the lock held (popitem runs inside set_encoded)
        for tag in entry.tags:
            members = self._tags.get(tag)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._tags[tag]
        if event:
            self.stats.incr("l1", event)
