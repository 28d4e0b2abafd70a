"""Load on threads in this process: N virtual users over any endpoints, closed loop (talks to PostgreSQL).

The platform's mix runs on Locust (:mod:`kit.demo.load.engine`), in processes of its own; this engine
stays for endpoints that are closures of the caller — the pool-exhaustion scenario and the fault
bench hold connections with ``pg_sleep`` — where a deterministic closed loop is the point.
Each virtual user is a thread (psycopg releases the GIL while it waits on the server) that
picks an endpoint, checks a connection out of the engine's pool, calls the endpoint and
returns the connection — one web request. A warm-up phase runs first; the measured phase runs
for ``duration_s`` seconds or ``requests`` requests. Latency percentiles (with bootstrap
confidence intervals) and throughput come from the measured requests that succeeded; errors count
every request started, warm-up included, and a request still running when the run ends counts
as an error of kind ``unfinished``. Pool statistics are popped per phase.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tqdm.auto import tqdm

from kit.demo.load.mix import Endpoint, classify
from kit.demo.load.stats import LoadResult, summarize
from kit.demo.metrics import ALERT_UTILIZATION, KitMetrics, ResourceSampler, queue_pool

QUANTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}


class PoolMonitor:
    """Pool statistics measured from the engine's pool events; one instance per engine.

    The events do not say when a caller started waiting, so acquire and wait times are known
    for checkouts made through :meth:`connect`; other checkouts are still counted. A *wait* is
    a checkout that found every connection of the pool (``pool_size + max_overflow``) in use or
    promised to callers already queued: the in-use count alone misses the thread that returns a
    connection and asks again before the queued one wakes up.
    """

    def __init__(self, engine: Engine, *, timer: Callable[[], float] = time.perf_counter):
        self.engine = engine
        pool = queue_pool(engine)
        self.capacity = pool.size() + max(getattr(pool, "_max_overflow", 0), 0)
        self._timer = timer
        self._lock = threading.Lock()
        self._local = threading.local()
        self._in_use = 0
        self._pending = 0  # callers inside connect() not yet served
        self._reset()
        event.listen(engine, "checkout", self._on_checkout)
        event.listen(engine, "checkin", self._on_checkin)
        event.listen(engine, "connect", self._on_connect)

    def _reset(self) -> None:
        self._stats = {
            "checkouts": 0,
            "connects": 0,
            "waits": 0,
            "wait_s": 0.0,
            "max_wait_s": 0.0,
            "acquire_s": 0.0,
            "timeouts": 0,
            "peak_in_use": self._in_use,
        }

    def close(self) -> None:
        event.remove(self.engine, "checkout", self._on_checkout)
        event.remove(self.engine, "checkin", self._on_checkin)
        event.remove(self.engine, "connect", self._on_connect)

    def _on_connect(self, dbapi_conn, record) -> None:
        with self._lock:
            self._stats["connects"] += 1

    def _on_checkout(self, dbapi_conn, record, proxy) -> None:
        started = getattr(self._local, "started", None)
        waited = started is not None and self._local.waited
        elapsed = self._timer() - started if started is not None else 0.0
        with self._lock:
            self._in_use += 1
            if started is not None and not self._local.served:
                self._pending -= 1
                self._local.served = True
            s = self._stats
            s["checkouts"] += 1
            s["acquire_s"] += elapsed
            s["peak_in_use"] = max(s["peak_in_use"], self._in_use)
            if waited:
                s["waits"] += 1
                s["wait_s"] += elapsed
                s["max_wait_s"] = max(s["max_wait_s"], elapsed)

    def _on_checkin(self, dbapi_conn, record) -> None:
        with self._lock:
            self._in_use = max(self._in_use - 1, 0)

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """``engine.connect()`` with its acquire time measured; a pool timeout is counted, then raised."""
        with self._lock:
            self._local.waited = self._in_use + self._pending >= self.capacity
            self._pending += 1
        self._local.served = False
        self._local.started = self._timer()
        try:
            conn = self.engine.connect()
        except Exception as exc:
            with self._lock:
                if not self._local.served:  # the checkout event never ran
                    self._pending -= 1
            if not isinstance(exc, PoolTimeout):
                raise
            with self._lock:
                self._stats["timeouts"] += 1
                self._stats["waits"] += 1
                self._stats["wait_s"] += self._timer() - self._local.started
            raise
        finally:
            self._local.started = None
        with conn:
            yield conn

    @property
    def in_use(self) -> int:
        return self._in_use

    def get_stats(self) -> dict[str, float]:
        with self._lock:
            stats = dict(self._stats)
        stats["capacity"] = self.capacity
        stats["in_use"] = self._in_use
        stats["peak_utilization"] = stats["peak_in_use"] / self.capacity if self.capacity else 0.0
        stats["alert"] = stats["peak_utilization"] > ALERT_UTILIZATION
        return stats

    def pop_stats(self) -> dict[str, float]:
        """The statistics since the last pop, then reset (one call per phase)."""
        stats = self.get_stats()
        with self._lock:
            self._reset()
        return stats


class _Run:
    """Shared state of one run: the phase, the ticket counter, the stop flag."""

    def __init__(self, requests: int | None):
        self.measuring = False
        self.measure_start = 0.0
        self.stop = threading.Event()
        self.left = requests
        self.done = 0
        self._lock = threading.Lock()

    def ticket(self) -> bool | None:
        """In request-count mode, claim one measured request: False when none is left."""
        if not self.measuring or self.left is None:
            return None
        with self._lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def _user(
    i: int,
    run: _Run,
    monitor: PoolMonitor,
    endpoints: Sequence[Endpoint],
    cum: list[float],
    seed: int,
    think_s: float,
    out: list,
    inflight: list,
    metrics: KitMetrics | None,
) -> None:
    rng = random.Random(seed * 1_000_003 + i)
    while not run.stop.is_set():
        if run.ticket() is False:
            return
        k = rng.choices(range(len(endpoints)), cum_weights=cum)[0]
        t0 = time.perf_counter()
        inflight[i] = (k, t0)  # reported as unfinished if the run ends before this request does
        error, waited = None, float("nan")
        try:
            with metrics.track(endpoints[k].name) if metrics else contextlib.nullcontext():
                with monitor.connect() as conn:
                    waited = time.perf_counter() - t0
                    endpoints[k].call(conn, rng)
        except Exception as exc:  # a failed request is a measurement, not a crash of the run
            error = classify(exc)
        t1 = time.perf_counter()
        out.append((k, t0, t1 - t0, waited, error))
        inflight[i] = None
        run.done += 1  # approximate under races; only the progress bar reads it
        if think_s:
            time.sleep(think_s)


def run_load(
    engine: Engine,
    endpoints: Sequence[Endpoint],
    *,
    users: int = 100,
    duration_s: float | None = None,
    requests: int | None = None,
    warmup_s: float = 1.0,
    seed: int = 42,
    label: str = "load",
    think_s: float = 0.0,
    join_timeout_s: float = 60.0,
    n_boot: int = 300,
    progress: bool = True,
    sample_resources: bool = True,
    metrics: KitMetrics | None = None,
) -> LoadResult:
    """Run ``users`` virtual users over ``endpoints`` and measure (see the module docstring);
    ``metrics`` also counts and times every request (for a :class:`kit.demo.metrics.MetricsPublisher`)."""
    if users < 1 or not endpoints or (duration_s is None) == (requests is None):
        raise ValueError("need users >= 1, at least one endpoint, and exactly one of duration_s / requests")
    if requests is not None and requests < 1:  # a run of no request would never end
        raise ValueError(f"requests must be >= 1, got {requests}")
    cum = list(itertools.accumulate(e.weight for e in endpoints))
    monitor, run = PoolMonitor(engine), _Run(requests)
    outs: list[list] = [[] for _ in range(users)]
    inflight: list[tuple[int, float] | None] = [None] * users
    threads = [
        threading.Thread(
            target=_user,
            args=(i, run, monitor, endpoints, cum, seed, think_s, outs[i], inflight, metrics),
            daemon=True,
            name=f"kit-vu-{i}",
        )
        for i in range(users)
    ]
    sampler = ResourceSampler().start() if sample_resources else None
    total = requests if duration_s is None else round(duration_s)
    bar = tqdm(
        total=total,
        unit="req" if requests else "s",
        desc=label,
        disable=not progress,
        leave=False,
    )
    try:
        if warmup_s <= 0:  # no warm-up: the first requests are measured too
            pool = {"warmup": monitor.pop_stats()}
            run.measure_start, run.measuring = time.perf_counter(), True
        for t in threads:
            t.start()
        if warmup_s > 0:
            run.stop.wait(warmup_s)
            pool = {"warmup": monitor.pop_stats()}
            run.measure_start, run.measuring = time.perf_counter(), True
        done0 = run.done
        while not run.stop.is_set():
            time.sleep(0.1)
            elapsed = time.perf_counter() - run.measure_start
            bar.n = min(run.done - done0, requests) if requests else min(round(elapsed), total or 0)
            bar.refresh()
            if (duration_s is not None and elapsed >= duration_s) or (requests and run.left == 0):
                run.stop.set()
        measure_end = time.perf_counter()
        deadline = measure_end + join_timeout_s
        for t in threads:
            t.join(max(deadline - time.perf_counter(), 0.0))
        hung = any(t.is_alive() for t in threads)
        pool["measure"] = monitor.pop_stats()
    finally:
        run.stop.set()
        bar.close()
        monitor.close()
        resources = sampler.stop() if sampler else None
    unfinished = [
        (k, t0, float("nan"), float("nan"), "unfinished")
        for k, t0 in (slot for slot in list(inflight) if slot is not None)
    ]
    return _result(
        label,
        users,
        endpoints,
        outs,
        unfinished,
        run.measure_start,
        measure_end,
        requests,
        pool,
        hung,
        resources,
        n_boot,
        seed,
    )


def _result(
    label, users, endpoints, outs, unfinished, start, end, requests, pool, hung, resources, n_boot, seed
) -> LoadResult:
    import pandas as pd

    rows = [r for out in outs for r in list(out)] + unfinished
    frame = pd.DataFrame(rows, columns=["k", "start", "latency_s", "wait_s", "error"])
    frame["endpoint"] = [endpoints[k].name for k in frame["k"]]
    frame["start_s"] = frame["start"] - start
    frame["latency_ms"] = frame["latency_s"] * 1000.0
    frame["wait_ms"] = frame["wait_s"] * 1000.0
    # duration mode: requests started inside the window; request mode: the last `requests` started
    frame["measured"] = frame["start_s"] >= 0
    if requests is None:
        frame["measured"] &= frame["start"] < end
    else:
        frame["measured"] &= frame["start_s"].where(frame["measured"]).rank(method="first") <= requests
    m = frame[frame["measured"]]
    window = max(float((m["start"] + m["latency_s"]).max() - start) if m["latency_s"].notna().any() else 0.0, 1e-9)
    return summarize(
        frame,
        label=label,
        users=users,
        duration_s=window,
        pool=pool,
        hung=hung,
        resources=resources,
        n_boot=n_boot,
        seed=seed,
    )
