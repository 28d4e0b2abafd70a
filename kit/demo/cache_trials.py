"""Measurements of the cache: per-level latency, Zipf hit rate, stale reads and the cross-process
stale window (talks to PostgreSQL and Redis). Used by ``kit bench cache`` and the notebooks."""

from __future__ import annotations

import contextlib
import multiprocessing
import random
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, text

from kit.cache.tiered import TieredCache
from kit.db.engine import make_engine
from kit.demo.services import batched
from kit.demo.services.cached import CachedServices

FIRST_PROJECT = "SELECT /* kit */ min(id) FROM projects"
PROJECT_IDS = "SELECT /* kit */ id FROM projects ORDER BY id LIMIT :n"


def per_call_us(fn, *, n: int, trials: int = 5) -> float:
    """Median over ``trials`` of the mean µs per call of ``n`` calls (after one warm-up pass)."""
    for _ in range(min(n, 200)):
        fn()
    runs = []
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) * 1e6 / n)
    return statistics.median(runs)


def paired_us(a, b, *, n: int, trials: int = 31) -> tuple[float, float, float]:
    """Median µs per call of ``a`` and of ``b``, and the median of their ratio trial by trial.

    Short trials of ``n`` calls, ``a`` and ``b`` back to back with the order alternating: a burst
    of load from another process spoils a few pairs and hits both sides of a ratio alike (the
    ratio of two medians of 7 long trials moved by half between calls on a busy machine)."""
    for _ in range(min(n, 200)):
        a(), b()
    runs: dict[Any, list[float]] = {a: [], b: []}
    ratios = []
    for trial in range(trials):
        for fn in (a, b) if trial % 2 else (b, a):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            runs[fn].append((time.perf_counter() - t0) * 1e6 / n)
        ratios.append(runs[a][-1] / runs[b][-1])
    return statistics.median(runs[a]), statistics.median(runs[b]), statistics.median(ratios)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (never above the maximum)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))]


def first_project(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text(FIRST_PROJECT)).scalar_one()


def zipf_hit_rate(
    services: Any, engine: Engine, *, requests: int = 5000, keys: int = 500, s: float = 1.1, seed: int = 42
) -> dict[str, float]:
    """Hit rate per level of get_project under a Zipf(s) popularity over ``keys`` projects."""
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text(PROJECT_IDS), {"n": keys})]
    weights = [1 / (rank + 1) ** s for rank in range(len(ids))]
    picks = random.Random(seed).choices(ids, weights=weights, k=requests)
    services.cache.clear()
    services.cache.stats.pop()
    with engine.connect() as conn:
        for pid in picks:
            services.get_project(conn, pid)
            conn.commit()
    snap = services.cache.stats.pop()
    served = snap["l1"]["hits"] + snap["l2"]["hits"] + snap["db"]["loads"]
    return {
        "hit_rate": (snap["l1"]["hits"] + snap["l2"]["hits"]) / served,
        "l1_hit_rate": snap["l1"]["hits"] / served,
        "l2_hit_rate": snap["l2"]["hits"] / served,
        "requests": requests,
        "distinct_keys": len(set(picks)),
    }


def stale_reads_same_process(
    services: Any, engine: Engine, *, writes: int = 100, readers: int = 4, min_reads: int = 5000
) -> dict[str, int]:
    """Readers in threads, one writer: count reads that started after an update returned and saw
    an older version."""
    pid = first_project(engine)
    original = _name(engine, pid)
    committed, stale, reads, stop = {"v": 0}, [0], [0], threading.Event()

    def reader() -> None:
        with engine.connect() as conn:
            while not stop.is_set():
                floor = committed["v"]
                got = int(services.get_project(conn, pid)["name"].rsplit("-", 1)[-1])
                conn.commit()
                reads[0] += 1
                stale[0] += got < floor

    with engine.connect() as conn:
        services.update_project(conn, pid, name="bench-0")
        threads = [threading.Thread(target=reader, daemon=True) for _ in range(readers)]
        for t in threads:
            t.start()
        # the readers under way before the first update (on a busy machine they may start after the last
        # one, and then no read could be stale): the cache holds the version they read
        started = time.monotonic()
        while reads[0] < readers and time.monotonic() - started < 30:
            time.sleep(0.001)
        for v in range(1, writes + 1):
            services.update_project(conn, pid, name=f"bench-{v}")
            committed["v"] = v
            time.sleep(0.002)
    while reads[0] < min_reads:
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    with engine.connect() as conn:
        services.update_project(conn, pid, name=original)  # leave the data as found
    return {"stale_reads": stale[0], "reads": reads[0], "writes": writes}


def _name(engine: Engine, pid: int) -> str:
    with engine.connect() as conn:
        project = batched.get_project(conn, pid)
    assert project is not None  # pid is first_project's, and nothing here deletes projects
    return project["name"]


def _remote_reader(database_url: str, redis_url: str, namespace: str, pid: int, out: Any, stop: Any) -> None:
    engine = make_engine(database_url, pool_size=1)
    cache = TieredCache(redis_url=redis_url, namespace=namespace)
    services = CachedServices(cache, engine)
    seen: dict[int, float] = {}
    out.put("ready")
    with engine.connect() as conn:
        while not stop.is_set():
            project = services.get_project(conn, pid)
            assert project is not None  # pid is first_project's, and nothing here deletes projects
            v = int(project["name"].rsplit("-", 1)[-1])
            conn.commit()
            seen.setdefault(v, time.time())
    out.put({"seen": seen, "l1_hits": cache.stats.get("l1", "hits")})
    cache.close()
    engine.dispose()


def stale_window_ms(
    services: Any, engine: Engine, *, database_url: str, redis_url: str, writes: int = 50
) -> dict[str, float]:
    """Another process reads get_project in a loop through its own L1; for each update, the time
    from the update's return here to that process's first read of the new version."""
    pid, ctx = first_project(engine), multiprocessing.get_context("spawn")
    original = _name(engine, pid)
    with engine.connect() as conn:  # the reader parses every name it reads: never the original one
        services.update_project(conn, pid, name="window-0")
    out, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_remote_reader, args=(database_url, redis_url, services.cache.l2.ns, pid, out, stop))
    proc.start()
    out.get(timeout=60)
    done: dict[int, float] = {}
    with engine.connect() as conn:
        for v in range(1, writes + 1):
            services.update_project(conn, pid, name=f"window-{v}")
            done[v] = time.time()
            time.sleep(0.02)
    time.sleep(0.2)
    stop.set()
    result = out.get(timeout=60)
    proc.join(10)
    with engine.connect() as conn:
        services.update_project(conn, pid, name=original)
    windows = sorted(max(0.0, (result["seen"][v] - t) * 1000) for v, t in done.items() if v in result["seen"])
    return {
        "p50": percentile(windows, 50),
        "p99": percentile(windows, 99),
        "max": windows[-1],
        "versions_seen": len(windows),
        "writes": writes,
        "remote_l1_hits": result["l1_hits"],
    }


def namespace() -> str:
    return f"bench{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def scratch_cache(redis_url: str | None, **kwargs: Any) -> Iterator[TieredCache]:
    """A TieredCache in a namespace of its own for one measurement: emptied and closed on exit."""
    cache = TieredCache(redis_url=redis_url, namespace=namespace(), **kwargs)
    try:
        yield cache
    finally:
        cache.clear()
        cache.close()
