"""The cross-process invalidation channel: a Redis pub/sub listener thread (talks to Redis).

Every process subscribes to ``{ns}:inval``; the invalidation script publishes there in the same
atomic step that bumps generations. The listener reports ``on_state(False)`` the moment it loses
the connection (its owner then flushes L1 and serves no L1 entry) and ``on_state(True)`` only once
a new subscription is confirmed, because a message published while nobody listened is lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from kit.cache.base import loads
from kit.cache.l2 import make_client

log = logging.getLogger(__name__)


class InvalidationChannel:
    """Listens on ``channel`` in a daemon thread; ``start()`` returns once subscribed (or timed out)."""

    def __init__(self, url: str, channel: str, *, origin: str,
                 on_message: Callable[[list[str], list[str]], None],
                 on_state: Callable[[bool], None], timeout: float = 0.25, retry_every: float = 0.2) -> None:
        self.url, self.channel, self.origin = url, channel, origin
        self._on_message, self._on_state = on_message, on_state
        self._timeout, self._retry_every = timeout, retry_every
        self._stop = threading.Event()
        self._up = threading.Event()
        self._thread: threading.Thread | None = None
        self.received = 0

    @property
    def up(self) -> bool:
        return self._up.is_set()

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
            except (redis.RedisError, OSError, ValueError) as exc:
                if self._up.is_set():
                    log.warning("cache invalidation channel lost (%s): L1 flushed and bypassed until back",
                                type(exc).__name__)
                self._set_state(False)
                self._stop.wait(self._retry_every)
            finally:
                client.close()
        self._set_state(False)

    def _listen(self, client: redis.Redis) -> None:
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            while not self._stop.is_set():
                # get_message(timeout) returns None on a quiet channel; a PING keeps a dead peer visible
                msg = pubsub.get_message(timeout=0.5)
                if msg is None:
                    pubsub.ping()
                    continue
                if msg["type"] == "subscribe":
                    self._set_state(True)
                elif msg["type"] == "message":
                    self._handle(msg["data"])
        finally:
            pubsub.close()

    def _handle(self, data: bytes) -> None:
        payload = loads(data)
        if payload.get("o") == self.origin:
            return  # our own invalidation, already applied locally before it was sent
        self.received += 1
        self._on_message(payload.get("k", []), payload.get("t", []))

    def _set_state(self, up: bool) -> None:
        if up == self._up.is_set():
            return
        if up:  # flush before serving again: nothing from before the gap survives it
            self._on_state(True)
            self._up.set()
        else:  # stop serving first, then flush
            self._up.clear()
            self._on_state(False)
