"""Redis faults measured from a second process (talks to PostgreSQL and Redis, and signals or
reconfigures Redis).

A reader process reads one key through its own :class:`~kit.cache.TieredCache` in a loop; the
value lives in PostgreSQL (the truth, as in an application) and this process updates it every
``write_every`` seconds, then invalidates the key — or its table's tag — through a cache of its
own. Meanwhile Redis fails for ``outage_s`` seconds:

* ``hang``: paused (SIGSTOP): the connections stay open and nothing answers;
* ``kill``: killed (SIGKILL), brought back by ``restart``;
* ``write_pause``: ``CLIENT PAUSE <ms> WRITE`` — writes and PUBLISH wait, PING and reads answer;
* ``oom``: out of memory — ``maxmemory`` set below the memory in use (filler keys make the margin,
  so no DEL frees enough) with ``noeviction``: INCR and SET are refused, DEL, PUBLISH, PING and
  reads work. The settings are put back and the filler deleted afterwards.

A read is *stale by* the time between the commit of the first version newer than the one it
returned and the read's start; reads that started before that commit are not stale. Every read is
counted: the ones that raised are errors. The writer counts the invalidations ``invalidate()`` said
were not delivered, independently of what its cache counted and logged.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from kit.cache.invalidation import table_tag
from kit.cache.tiered import LIVENESS_BOUND_S, CacheConfig, TieredCache
from kit.config import libpq_url

TABLE = "kit_fault_truth"
CREATE = f"CREATE /* kit */ TABLE IF NOT EXISTS {TABLE} (k text PRIMARY KEY, v bigint NOT NULL)"
RESET = f"INSERT /* kit */ INTO {TABLE} VALUES ('truth', 0) ON CONFLICT (k) DO UPDATE SET v = 0"
READ = f"SELECT /* kit */ v FROM {TABLE} WHERE k = 'truth'"
WRITE = f"UPDATE /* kit */ {TABLE} SET v = v + 1 WHERE k = 'truth' RETURNING v"
DROP = f"DROP /* kit */ TABLE IF EXISTS {TABLE}"
KEY = "truth"
TAG = table_tag(TABLE)  # what an after-commit invalidation of the table's writes sends
FAULTS = ("hang", "kill", "write_pause", "oom")
FILLER_BYTES = 4 * 2**20  # the oom fault's margin: maxmemory is set this much below the memory in use


@dataclass(frozen=True)
class OutageResult:
    """One fault seen from the reader process, and the writer's invalidations through it."""

    fault: str  # one of FAULTS
    requests: int
    errors: int
    window_ms: float  # the reader's liveness bound: staleness it may show while Redis dies
    staleness_ms: tuple[float, ...] = field(repr=False)  # of every stale read
    l2_resumed: bool  # after the fault, the running reader stores into Redis again and a new cache reads it
    warnings: tuple[str, ...] = field(repr=False)  # what the reader logged
    invalidations: int  # the writer's invalidate() calls
    invalidation_failures: int  # of those, how many returned False (counted by the writer)
    failures_reported: int  # how many the writer's cache counted (stats: l2 invalidation_failures)
    replayed: int  # how many the writer's cache replayed later (stats: l2 invalidations_replayed)
    writer_warnings: tuple[str, ...] = field(repr=False)  # what this process logged meanwhile

    @property
    def stale_reads(self) -> int:
        return len(self.staleness_ms)

    def beyond(self, ms: float) -> int:
        """Reads stale by more than ``ms``."""
        return sum(s > ms for s in self.staleness_ms)

    @property
    def stale_reads_beyond_window(self) -> int:
        return self.beyond(self.window_ms)


class _Kept(logging.Handler):
    """Keeps the messages of the records it is given."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _reader(
    database_url: str,
    redis_url: str,
    namespace: str,
    cache_kwargs: dict,
    tags: tuple[str, ...],
    out: Any,
    stop: Any,
    restarted: Any,
) -> None:
    kept = _Kept()
    logging.getLogger("kit.cache").addHandler(kept)
    conn = psycopg.connect(libpq_url(database_url), autocommit=True)
    cache = TieredCache(redis_url=redis_url, namespace=namespace, config=CacheConfig(ttl=60, **cache_kwargs))
    l2, channel = cache.l2, cache.channel
    if l2 is None or channel is None:  # the reader reports both at the end: fail now, not after the run
        raise ValueError("the reader needs Redis and the invalidation channel (cross_process=True)")

    def load() -> int:
        row = conn.execute(READ).fetchone()
        assert row is not None  # run_outage inserted the row before starting this process
        return row[0]

    reads: list[tuple[float, int | None]] = []
    out.put("ready")
    sets_at_restart = None
    while not stop.is_set():
        if sets_at_restart is None and restarted.is_set():
            sets_at_restart = cache.stats.get("l2", "sets")
        t0 = time.time()
        try:
            value = cache.get_or_load(KEY, load, tags=tags)
        except Exception:
            value = None
        reads.append((t0, value))
        time.sleep(0.0005)
    stored_again = sets_at_restart is not None and cache.stats.get("l2", "sets") > sets_at_restart
    out.put(
        {
            "reads": reads,
            "warnings": kept.messages,
            "stored_again": stored_again,
            "up": bool(channel.up and l2.available),
        }
    )
    cache.close()
    conn.close()


def staleness(reads: list[tuple[float, int | None]], commits: list[tuple[float, int]]) -> list[float]:
    """For each read of a value older than one committed before the read started: by how long (ms)."""
    committed_at = dict((v, t) for t, v in commits)
    out = []
    for started, value in reads:
        if value is None:
            continue
        newer = committed_at.get(value + 1)
        if newer is not None and newer < started:
            out.append((started - newer) * 1000.0)
    return out


def run_outage(
    database_url: str,
    redis_url: str,
    *,
    fault: str,
    redis_pid: int | None = None,
    restart: Callable[[], object] | None = None,
    before_s: float = 1.0,
    outage_s: float = 3.0,
    after_s: float = 2.0,
    write_every: float = 0.02,
    namespace: str | None = None,
    cache_kwargs: dict | None = None,
    invalidate_by: str = "key",
) -> OutageResult:
    """Read from another process through ``fault`` of the Redis at ``redis_url`` (``redis_pid`` for
    ``hang`` and ``kill``; for ``kill``, ``restart()`` brings Redis back on the same URL when the
    outage ends). ``invalidate_by="tag"``: the reader's loads carry the table's tag and the writer
    invalidates that tag, as the after-commit invalidation of a table's writes does."""
    _check(fault, redis_pid, restart, invalidate_by)
    namespace = namespace or f"fault{os.getpid()}{int(time.time() * 1000) % 10**6}"
    cache_kwargs, tags = dict(cache_kwargs or {}), ((TAG,) if invalidate_by == "tag" else ())
    with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        admin.execute(CREATE)
        admin.execute(RESET)
    ctx = multiprocessing.get_context("spawn")
    out, stop, restarted = ctx.Queue(), ctx.Event(), ctx.Event()
    proc = ctx.Process(
        target=_reader, daemon=True, args=(database_url, redis_url, namespace, cache_kwargs, tags, out, stop, restarted)
    )
    proc.start()
    writer = TieredCache(redis_url=redis_url, namespace=namespace, config=CacheConfig(ttl=60, **cache_kwargs))
    kept = _Kept()
    logging.getLogger("kit.cache").addHandler(kept)
    commits: list[tuple[float, int]] = []
    counts: Counter[str] = Counter()
    writing = threading.Event()
    try:
        if _receive(out, proc) != "ready":
            raise RuntimeError("the reader process did not start")
        writing.set()
        thread = threading.Thread(
            target=_write, daemon=True, args=(database_url, writer, tags, commits, counts, writing, write_every)
        )
        thread.start()
        time.sleep(before_s)
        with _fault(
            fault, redis_url=redis_url, redis_pid=redis_pid, restart=restart, outage_s=outage_s, prefix=namespace
        ):
            time.sleep(outage_s)
        restarted.set()
        time.sleep(after_s)
        writing.clear()
        thread.join(30)
        time.sleep(0.5)  # quiet: the reader reloads the key into Redis
        probe_hit = _probe(redis_url, namespace)
        stop.set()
        result = _receive(out, proc)
        proc.join(30)
        written = writer.stats.snapshot()["l2"]
    finally:
        logging.getLogger("kit.cache").removeHandler(kept)
        stop.set()
        writing.clear()
        if proc.is_alive():
            proc.kill()
        writer.clear()
        writer.close()
        with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
            admin.execute(DROP)
    reads = result["reads"]
    return OutageResult(
        fault=fault,
        requests=len(reads),
        errors=sum(v is None for _, v in reads),
        window_ms=cache_kwargs.get("liveness_bound", LIVENESS_BOUND_S) * 1000.0,
        staleness_ms=tuple(staleness(reads, commits)),
        l2_resumed=bool(result["up"] and result["stored_again"] and probe_hit),
        warnings=tuple(result["warnings"]),
        invalidations=counts["sent"],
        invalidation_failures=counts["failed"],
        failures_reported=written["invalidation_failures"],
        replayed=written["invalidations_replayed"],
        writer_warnings=tuple(kept.messages),
    )


def _check(fault: str, redis_pid: int | None, restart: Callable[[], object] | None, invalidate_by: str) -> None:
    if fault not in FAULTS:
        raise ValueError(f"fault must be one of {', '.join(FAULTS)}, got {fault!r}")
    if fault in ("hang", "kill") and redis_pid is None:
        raise ValueError(f"a {fault} needs redis_pid, the Redis server's process id")
    if fault == "kill" and restart is None:
        raise ValueError("a kill needs restart() to bring Redis back")
    if invalidate_by not in ("key", "tag"):
        raise ValueError(f"invalidate_by must be 'key' or 'tag', got {invalidate_by!r}")


def _probe(redis_url: str, namespace: str) -> bool:
    """Whether a new cache finds the key in Redis (the reader stored it again after the fault)."""
    probe = TieredCache(redis_url=redis_url, namespace=namespace, config=CacheConfig(ttl=60, cross_process=False))
    try:
        served = probe.get_or_load(KEY, lambda: -1)
        return served != -1 and probe.stats.get("l2", "hits") == 1
    finally:
        probe.close()


# -- the faults ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _fault(
    fault: str,
    *,
    redis_url: str,
    redis_pid: int | None,
    restart: Callable[[], object] | None,
    outage_s: float,
    prefix: str,
) -> Iterator[None]:
    """Redis fails from the block's start to its end (then it is back, whatever the block raised)."""
    if fault in ("hang", "kill"):
        assert redis_pid is not None  # _check: a hang or a kill names the Redis process
        os.kill(redis_pid, signal.SIGSTOP if fault == "hang" else signal.SIGKILL)
        try:
            yield
        finally:
            if fault == "hang":
                os.kill(redis_pid, signal.SIGCONT)
            else:
                assert restart is not None  # _check: a kill comes with restart()
                restart()
        return
    admin = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        with writes_paused(admin, outage_s) if fault == "write_pause" else out_of_memory(admin, prefix):
            yield
    finally:
        admin.close()


@contextlib.contextmanager
def writes_paused(admin: redis.Redis, seconds: float) -> Iterator[None]:
    """``CLIENT PAUSE <ms> WRITE``: writes, scripts and PUBLISH wait; PING and reads answer."""
    admin.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "WRITE")
    try:
        yield
    finally:  # the pause ends by itself at the block's end; sooner if the block raised
        admin.execute_command("CLIENT", "UNPAUSE")


@contextlib.contextmanager
def out_of_memory(admin: redis.Redis, prefix: str) -> Iterator[None]:
    """``maxmemory`` below the memory in use by half the filler, ``noeviction``: Redis refuses every
    command that may need memory, and deleting the cache's few small values never frees enough to
    let writes through now and then."""
    saved: dict[str, str] = {}
    for name in ("maxmemory", "maxmemory-policy"):
        value = admin.config_get(name)[name]
        assert value is not None  # redis-py types a reply's value as optional; a parameter Redis has is answered
        saved[name] = value
    filler = [f"{prefix}:filler:{i}" for i in range(8)]
    try:
        for name in filler:
            admin.set(name, b"x" * (FILLER_BYTES // len(filler)))
        admin.config_set("maxmemory-policy", "noeviction")  # first: nothing is evicted by the lower limit
        admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) - FILLER_BYTES // 2)
        try:
            admin.set(filler[0], b"x")
        except redis.exceptions.OutOfMemoryError:
            pass  # refused, as intended
        else:
            raise RuntimeError("Redis still accepts writes with maxmemory below the memory in use")
        yield
    finally:
        admin.config_set("maxmemory", saved["maxmemory"])
        admin.config_set("maxmemory-policy", saved["maxmemory-policy"])
        admin.delete(*filler)


def _receive(out: Any, proc: Any, timeout: float = 120.0) -> Any:
    """The reader's next message; an error as soon as the reader process is gone without one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return out.get(timeout=0.5)
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the reader process exited with code {proc.exitcode}") from None
    raise RuntimeError(f"no word from the reader process in {timeout:.0f} s")


def _write(
    database_url: str,
    cache: TieredCache,
    tags: tuple[str, ...],
    commits: list,
    counts: Counter,
    writing: threading.Event,
    every: float,
) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        while writing.is_set():
            row = conn.execute(WRITE).fetchone()
            assert row is not None  # run_outage inserted the row, and nothing deletes it before the end
            v = row[0]
            commits.append((time.time(), v))  # the commit returned: from now on v is the truth
            delivered = cache.invalidate(tags=tags) if tags else cache.invalidate(keys=[KEY])
            counts["sent"] += 1
            counts["failed"] += not delivered  # counted here, apart from the cache's own count
            time.sleep(every)
