"""The cross-process invalidation channel: a Redis pub/sub listener thread that proves Redis alive
by round trips (talks to Redis).

Every process subscribes to ``{ns}:inval``; the invalidation script publishes there in the same
atomic step that bumps generations. A hung Redis (paused, swapping, stuck in a slow command) does
not close the connection: reads just return nothing, which looks like a quiet channel. So the
listener sends a PING on the subscribed connection every ``heartbeat`` seconds. Redis answers on
that connection in order, after every message it published before the PING; a PONG therefore
proves that every invalidation published before the PING was *sent* has been applied.

* :attr:`InvalidationChannel.proven` — L1 may serve — is true while the last answered PING was
  sent less than ``bound`` seconds ago. A reader checks it on every L1 hit, so no entry is served
  after ``bound`` without proof, even when this thread is starved of the GIL.
* A PING left unanswered for ``bound`` seconds means Redis is down or hung: the listener reports
  ``on_state(False)`` (its owner flushes L1 and stops using Redis), as when the connection is
  lost; a PING unanswered for ``reconnect_after`` seconds drops the connection for a new one.
* ``on_state(True)`` comes only once a subscription is confirmed and a PING answered on it: a
  message published while nobody listened is lost, so the owner recovers before serving again.

The clock is injected (``clock=time.monotonic``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import redis

from kit.cache.base import Timer, loads
from kit.cache.l2 import make_client

log = logging.getLogger(__name__)


class _Unanswered(Exception):
    """Internal: no PONG for ``reconnect_after`` seconds; start over on a new connection."""


class InvalidationChannel:
    """Listens on ``channel`` in a daemon thread; ``start()`` returns once up (or timed out)."""

    def __init__(self, url: str, channel: str, *, origin: str,
                 on_message: Callable[[list[str], list[str]], None],
                 on_state: Callable[[bool], None], timeout: float = 0.25, retry_every: float = 0.2,
                 heartbeat: float = 0.05, bound: float = 0.25, reconnect_after: float = 5.0,
                 clock: Timer = time.monotonic) -> None:
        if not 0 < heartbeat < bound <= reconnect_after:
            raise ValueError(f"need 0 < heartbeat < bound <= reconnect_after, got {heartbeat}, {bound}, "
                             f"{reconnect_after}")
        self.url, self.channel, self.origin = url, channel, origin
        self._on_message, self._on_state = on_message, on_state
        self._timeout, self._retry_every = timeout, retry_every
        self.heartbeat, self.bound, self.reconnect_after = heartbeat, bound, reconnect_after
        self._clock = clock
        self._stop = threading.Event()
        self._up = threading.Event()
        self._thread: threading.Thread | None = None
        self._proof = -math.inf  # when the last answered PING was sent (clock)
        self.received = 0
        self.last_loss: str | None = None  # why the channel last went down

    @property
    def up(self) -> bool:
        return self._up.is_set()

    @property
    def proven(self) -> bool:
        """Up, and a round trip sent less than ``bound`` seconds ago has been answered."""
        return self._up.is_set() and self._clock() - self._proof < self.bound

    def start(self, *, wait: float = 2.0) -> bool:
        self._thread = threading.Thread(target=self._run, name=f"cache-inval-{self.channel}", daemon=True)
        self._thread.start()
        return self._up.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            client = make_client(self.url, timeout=self._timeout, max_connections=2)
            try:
                self._listen(client)
            except (redis.RedisError, OSError, ValueError, _Unanswered) as exc:
                self._down(f"connection lost ({type(exc).__name__})")
                self._stop.wait(self._retry_every)
            finally:
                client.close()
        self._set_state(False)

    def _listen(self, client: redis.Redis) -> None:
        pubsub = client.pubsub()
        sent: dict[str, float] = {}  # PING payload -> when it was sent, oldest first
        subscribed, seq, next_ping = False, 0, self._clock()
        try:
            pubsub.subscribe(self.channel)
            while not self._stop.is_set():
                now = self._clock()
                if now >= next_ping:
                    seq += 1
                    token = f"{self.origin}:{seq}"
                    sent[token] = now
                    pubsub.ping(token)
                    next_ping = now + self.heartbeat
                # wait for the next message or the next PING; then drain what has arrived, so a
                # late answer is never mistaken for a missing one
                msg = pubsub.get_message(timeout=max(next_ping - self._clock(), 0.0))
                while msg is not None:
                    subscribed = self._handle(msg, sent, subscribed)
                    msg = pubsub.get_message(timeout=0.0)
                oldest = next(iter(sent.values()), None)
                if oldest is not None and self._clock() - oldest > self.bound:
                    self._down(f"gave no reply within {self.bound * 1000:.0f} ms")
                    if self._clock() - oldest > self.reconnect_after:
                        raise _Unanswered(f"no reply for {self.reconnect_after:.0f} s")
        finally:
            pubsub.close()

    def _handle(self, msg: dict, sent: dict[str, float], subscribed: bool) -> bool:
        kind = msg["type"]
        if kind == "subscribe":
            return True
        if kind == "message":
            payload = loads(msg["data"])
            if payload.get("o") != self.origin:  # our own was applied locally before it was sent
                self.received += 1
                self._on_message(payload.get("k", []), payload.get("t", []))
        elif kind == "pong":
            token = msg["data"].decode() if isinstance(msg["data"], bytes) else str(msg["data"])
            when = sent.get(token)
            if when is None:
                return subscribed
            for earlier in [t for t, at in sent.items() if at <= when]:  # answered in order
                del sent[earlier]
            if subscribed:
                self._proof = max(self._proof, when)
                self._set_state(True)
        return subscribed

    def _down(self, why: str) -> None:
        if self._up.is_set():
            self.last_loss = why
            log.warning("Redis %s: L1 flushed and off, serving from the database only until Redis answers",
                        why)
        self._set_state(False)

    def _set_state(self, up: bool) -> None:
        if up == self._up.is_set():
            return
        if up:  # recover and flush before serving again: nothing from before the gap survives it
            self._on_state(True)
            self._up.set()
        else:  # stop serving first, then flush
            self._up.clear()
            self._on_state(False)
