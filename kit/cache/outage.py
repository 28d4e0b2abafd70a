"""Redis faults measured from a second process (talks to PostgreSQL and Redis, and signals Redis).

A reader process reads one key through its own :class:`~kit.cache.TieredCache` in a loop; the
value lives in PostgreSQL (the truth, as in an application) and this process updates it every
``write_every`` seconds, then invalidates the key through a cache of its own. Meanwhile Redis is
paused (SIGSTOP, a hang: the connections stay open and nothing answers) or killed (SIGKILL) and
brought back by ``restart``. A read is *stale by* the time between the commit of the first version
newer than the one it returned and the read's start; reads that started before that commit are
not stale. Every read is counted: the ones that raised are errors.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from kit.cache.tiered import LIVENESS_BOUND_S, CacheConfig, TieredCache
from kit.config import libpq_url

TABLE = "kit_fault_truth"
CREATE = f"/* kit */ CREATE TABLE IF NOT EXISTS {TABLE} (k text PRIMARY KEY, v bigint NOT NULL)"
RESET = f"/* kit */ INSERT INTO {TABLE} VALUES ('truth', 0) ON CONFLICT (k) DO UPDATE SET v = 0"
READ = f"/* kit */ SELECT v FROM {TABLE} WHERE k = 'truth'"
WRITE = f"/* kit */ UPDATE {TABLE} SET v = v + 1 WHERE k = 'truth' RETURNING v"
DROP = f"/* kit */ DROP TABLE IF EXISTS {TABLE}"
KEY = "truth"
FILLER_BYTES = 4 * 2**20  # the oom fault's margin: maxmemory is set this much below the memory in use


@dataclass(frozen=True)
class OutageResult:
    """One fault seen from the reader process."""

    fault: str  # "hang" | "kill"
    requests: int
    errors: int
    window_ms: float  # the reader's liveness bound: staleness it may show while Redis dies
    staleness_ms: tuple[float, ...] = field(repr=False)  # of every stale read
    l2_resumed: bool  # after the fault, the running reader stores into Redis again and a new cache reads it
    warnings: tuple[str, ...] = field(repr=False)  # what the reader logged

    @property
    def stale_reads(self) -> int:
        return len(self.staleness_ms)

    def beyond(self, ms: float) -> int:
        """Reads stale by more than ``ms``."""
        return sum(s > ms for s in self.staleness_ms)

    @property
    def stale_reads_beyond_window(self) -> int:
        return self.beyond(self.window_ms)


def _reader(database_url: str, redis_url: str, namespace: str, cache_kwargs: dict, out: Any,
            stop: Any, restarted: Any) -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logging.getLogger("kit.cache").addHandler(Keep(level=logging.WARNING))
    conn = psycopg.connect(libpq_url(database_url), autocommit=True)
    cache = TieredCache(redis_url=redis_url, namespace=namespace, config=CacheConfig(ttl=60, **cache_kwargs))
    reads: list[tuple[float, int | None]] = []
    out.put("ready")
    sets_at_restart = None
    while not stop.is_set():
        if sets_at_restart is None and restarted.is_set():
            sets_at_restart = cache.stats.get("l2", "sets")
        t0 = time.time()
        try:
            value = cache.get_or_load(KEY, lambda: conn.execute(READ).fetchone()[0])
        except Exception:  # noqa: BLE001 - a failed read is a measurement
            value = None
        reads.append((t0, value))
        time.sleep(0.0005)
    stored_again = sets_at_restart is not None and cache.stats.get("l2", "sets") > sets_at_restart
    out.put({"reads": reads, "warnings": records, "stored_again": stored_again,
             "up": bool(cache.channel.up and cache.l2.available)})
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


def run_outage(database_url: str, redis_url: str, *, fault: str, redis_pid: int,
               restart: Callable[[], None] | None = None, before_s: float = 1.0, outage_s: float = 3.0,
               after_s: float = 2.0, write_every: float = 0.02, namespace: str | None = None,
               cache_kwargs: dict | None = None) -> OutageResult:
    """Read from another process through ``fault`` of the Redis at ``redis_pid``; for ``kill``,
    ``restart()`` brings Redis back (same URL) when the outage ends."""
    if fault not in ("hang", "kill"):
        raise ValueError(f"fault must be 'hang' or 'kill', got {fault!r}")
    if fault == "kill" and restart is None:
        raise ValueError("a kill needs restart() to bring Redis back")
    namespace = namespace or f"fault{os.getpid()}{int(time.time() * 1000) % 10**6}"
    cache_kwargs = dict(cache_kwargs or {})
    with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        admin.execute(CREATE)
        admin.execute(RESET)
    ctx = multiprocessing.get_context("spawn")
    out, stop, restarted = ctx.Queue(), ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_reader, args=(database_url, redis_url, namespace, cache_kwargs, out, stop, restarted),
                       daemon=True)
    proc.start()
    writer = TieredCache(redis_url=redis_url, namespace=namespace, config=CacheConfig(ttl=60, **cache_kwargs))
    commits: list[tuple[float, int]] = []
    writing = threading.Event()
    try:
        if _receive(out, proc) != "ready":
            raise RuntimeError("the reader process did not start")
        writing.set()
        thread = threading.Thread(target=_write, args=(database_url, writer, commits, writing, write_every), daemon=True)
        thread.start()
        time.sleep(before_s)
        os.kill(redis_pid, signal.SIGSTOP if fault == "hang" else signal.SIGKILL)
        try:
            time.sleep(outage_s)
        finally:
            if fault == "hang":
                os.kill(redis_pid, signal.SIGCONT)
            else:
                restart()
        restarted.set()
        time.sleep(after_s)
        writing.clear()
        thread.join(30)
        time.sleep(0.5)  # quiet: the reader reloads the key into Redis
        probe = TieredCache(redis_url=redis_url, namespace=namespace, config=CacheConfig(ttl=60, cross_process=False))
        served = probe.get_or_load(KEY, lambda: -1)
        probe_hit = served != -1 and probe.stats.get("l2", "hits") == 1
        probe.close()
        stop.set()
        result = _receive(out, proc)
        proc.join(30)
    finally:
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
        fault=fault, requests=len(reads), errors=sum(v is None for _, v in reads),
        window_ms=cache_kwargs.get("liveness_bound", LIVENESS_BOUND_S) * 1000.0,
        staleness_ms=tuple(staleness(reads, commits)),
        l2_resumed=bool(result["up"] and result["stored_again"] and probe_hit),
        warnings=tuple(result["warnings"]))


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
    saved = {name: admin.config_get(name)[name] for name in ("maxmemory", "maxmemory-policy")}
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


def _write(database_url: str, cache: TieredCache, commits: list, writing: threading.Event, every: float) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        while writing.is_set():
            v = conn.execute(WRITE).fetchone()[0]
            commits.append((time.time(), v))  # the commit returned: from now on v is the truth
            cache.invalidate(keys=[KEY])
            time.sleep(every)
