"""The cross-process invalidation channel: a pub/sub listener thread, and a heartbeat thread that
proves invalidations get through (talks to Redis).

Every process subscribes to ``{ns}:inval``; the invalidation script publishes there in the same
atomic step that bumps generations. Redis fails in parts: a hang (paused, swapping, stuck in a
slow command) answers nothing on connections that stay open; ``CLIENT PAUSE WRITE`` holds every
write and PUBLISH while PING and reads still answer; out of memory (``maxmemory`` with
``noeviction``) refuses INCR and SET while DEL, PUBLISH and PING work. A PING answered proves none
of what an invalidation needs, so the proof takes the invalidation's own path:

* every ``heartbeat`` seconds a sender thread runs :data:`_BEAT` on an ordinary connection: a SET
  (refused out of memory, like the invalidation script's INCR), then a PUBLISH of the send time on
  this process's beat channel ``{ns}:beat:{origin}``; a write pause holds the whole script;
* the listener's one connection subscribes to ``{ns}:inval`` and to that beat channel. Redis writes
  a connection's messages in publish order, so a beat that arrives proves that every invalidation
  published before it has been applied here; it was published after it was sent at *t*, so this
  covers every invalidation published before *t*. Only this process hears its beats: N processes
  cost N deliveries a period, not N².

* :attr:`InvalidationChannel.proven` — L1 may serve — is true while the last beat received was
  sent less than ``bound`` seconds ago. A reader checks it on every L1 hit, so no entry is served
  after ``bound`` without proof, even when these threads are starved of the GIL.
* No proof for ``bound`` seconds means Redis is down, hung or refusing writes: the listener reports
  ``on_state(False)`` (its owner flushes L1 and stops using Redis), as when the connection is lost;
  no proof for ``reconnect_after`` seconds drops the pub/sub connection for a new one.
* ``on_state(True)`` comes with the first beat after a gap, and only after the gap itself has been
  reported: a message published while nobody listened is lost, so the owner flushes and recovers
  before serving again.
* After each beat the sender calls ``on_beat``: the owner replays undelivered invalidations there,
  promptly and off the request path.

Why a sender thread of its own: a paused or hung Redis holds the beat script until the client's
timeout, and the owner's replay after it as long again; in the listener that would hold back the
invalidations still arriving and the report of the gap.

The clock is injected (``clock=time.monotonic``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import redis

from kit.cache.base import Timer, describe, loads
from kit.cache.l2 import make_client

log = logging.getLogger(__name__)
BEAT_KEY_TTL_MS = 60_000

# KEYS: the process's beat key; ARGV: send time, key TTL (ms), beat channel. The SET is the script's
# first write, so out of memory Redis refuses it (as it refuses the invalidation's INCR) and the
# PUBLISH never happens. NX: once the key exists the SET changes nothing, so a beat is not a write
# that replicas and the AOF must carry 20 times a second per process; it is still refused.
_BEAT = """
redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2])
return redis.call('PUBLISH', ARGV[3], ARGV[1])
"""


class _Unanswered(Exception):
    """Internal: no beat for ``reconnect_after`` seconds; start over on a new connection."""


class InvalidationChannel:
    """Listens on ``channel`` in a daemon thread and beats in another; ``start()`` returns once up
    (or timed out)."""

    def __init__(
        self,
        url: str,
        channel: str,
        *,
        origin: str,
        on_message: Callable[[list[str], list[str]], None],
        on_state: Callable[[bool], None],
        on_beat: Callable[[], object] | None = None,
        timeout: float = 0.25,
        retry_every: float = 0.2,
        heartbeat: float = 0.05,
        bound: float = 0.25,
        reconnect_after: float = 5.0,
        clock: Timer = time.monotonic,
    ) -> None:
        if not 0 < heartbeat < bound <= reconnect_after:
            raise ValueError(
                f"need 0 < heartbeat < bound <= reconnect_after, got {heartbeat}, {bound}, {reconnect_after}"
            )
        self.url, self.channel, self.origin = url, channel, origin
        namespace = channel.rsplit(":", 1)[0]
        self.beat_channel, self.beat_key = f"{namespace}:beat:{origin}", f"{namespace}:alive:{origin}"
        self._beat_name = self.beat_channel.encode()
        self._on_message, self._on_state = on_message, on_state
        self._on_beat = on_beat or (lambda: None)
        self._timeout, self._retry_every = timeout, retry_every
        self.heartbeat, self.bound, self.reconnect_after = heartbeat, bound, reconnect_after
        self._clock = clock
        self._stop = threading.Event()
        self._up = threading.Event()
        self._threads: list[threading.Thread] = []
        self._proof = -math.inf  # when the last beat received was sent (clock)
        self._beat_error: str | None = None  # why the sender's last beat failed, None after a success
        self.received = 0  # invalidations from other processes
        self.beats = 0  # own beats received
        self.last_loss: str | None = None  # why the channel last went down

    @property
    def up(self) -> bool:
        return self._up.is_set()

    @property
    def proven(self) -> bool:
        """Up, and a beat sent less than ``bound`` seconds ago has come back through pub/sub."""
        return self._up.is_set() and self._clock() - self._proof < self.bound

    def start(self, *, wait: float = 2.0) -> bool:
        self._threads = [
            threading.Thread(target=self._run, name=f"cache-inval-{self.channel}", daemon=True),
            threading.Thread(target=self._beat, name=f"cache-beat-{self.channel}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self._up.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)

    # -- the sender -----------------------------------------------------------------------------
    def _beat(self) -> None:
        client = make_client(self.url, timeout=self._timeout, max_connections=1)
        script = client.register_script(_BEAT)
        next_at = self._clock()
        try:
            while not self._stop.wait(max(next_at - self._clock(), 0.0)):
                sent = self._clock()
                next_at = sent + self.heartbeat
                try:
                    script(keys=[self.beat_key], args=[repr(sent), BEAT_KEY_TTL_MS, self.beat_channel])
                    self._beat_error = None
                except redis.RedisError as exc:  # the listener reports the gap if it lasts
                    self._beat_error = describe(exc)
                self._after_beat()
        finally:
            client.close()

    def _after_beat(self) -> None:
        try:
            self._on_beat()
        except Exception as exc:
            log.warning("the heartbeat's hook failed (%s); beats go on", describe(exc))

    # -- the listener ---------------------------------------------------------------------------
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
        since = self._clock()
        try:
            pubsub.subscribe(self.channel, self.beat_channel)
            while not self._stop.is_set():
                # wake at least once a beat period; then drain what has arrived, so a late beat is
                # never mistaken for a missing one
                msg = pubsub.get_message(timeout=self.heartbeat)
                while msg is not None:
                    self._handle(msg)
                    msg = pubsub.get_message(timeout=0.0)
                now = self._clock()
                if now - self._proof >= self.bound:
                    self._down(self._unproven())
                    if now - max(self._proof, since) > self.reconnect_after:
                        raise _Unanswered(f"no beat for {self.reconnect_after:.0f} s")
        finally:
            pubsub.close()

    def _handle(self, msg: dict) -> None:
        if msg["type"] != "message":
            return  # the subscriptions' confirmations: a beat that arrives proves them
        if msg["channel"] == self._beat_name:
            self._beat_received(float(msg["data"]))
            return
        payload = loads(msg["data"])
        if payload.get("o") != self.origin:  # our own was applied locally before it was sent
            self.received += 1
            self._on_message(payload.get("k", []), payload.get("t", []))

    def _beat_received(self, sent: float) -> None:
        self.beats += 1
        now = self._clock()
        if now - self._proof >= self.bound:
            # a gap the loop has not reported yet: flush before this beat lets L1 serve again, or an
            # entry loaded before an invalidation that was lost in the gap would be served
            self._down(self._unproven())
        self._proof = max(self._proof, sent)
        if now - self._proof < self.bound:
            self._set_state(True)

    def _unproven(self) -> str:
        return (
            f"delivered no heartbeat within {self.bound * 1000:.0f} ms (last try: {self._beat_error or 'no reply yet'})"
        )

    def _down(self, why: str) -> None:
        if self._up.is_set():
            self.last_loss = why
            log.warning(
                "Redis %s: L1 flushed and off, L2 not read, serving from the database only until "
                "a heartbeat gets through",
                why,
            )
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
