"""Load tests: N concurrent virtual users over a weighted mix of endpoints (talks to PostgreSQL).

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
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tqdm.auto import tqdm

from kit.cache import TieredCache
from kit.metrics import ALERT_UTILIZATION, KitMetrics, ResourceSampler, ResourceSummary
from kit.services import batched, naive
from kit.services.cached import CachedServices

QUANTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of the mix: ``call(conn, rng)`` does one request's database work."""

    name: str
    call: Callable[[Connection, random.Random], object]
    weight: float = 1.0


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
        self.capacity = engine.pool.size() + max(getattr(engine.pool, "_max_overflow", 0), 0)
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
        self._stats = {"checkouts": 0, "connects": 0, "waits": 0, "wait_s": 0.0, "max_wait_s": 0.0,
                       "acquire_s": 0.0, "timeouts": 0, "peak_in_use": self._in_use}

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


def latency_summary(latency_ms: np.ndarray, *, n_boot: int = 300, confidence: float = 0.95,
                    seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """``{"p50": (value, lo, hi), ...}``: percentiles with percentile-bootstrap intervals."""
    lat = np.asarray(latency_ms, dtype=float)
    if lat.size == 0:
        return {k: (float("nan"),) * 3 for k in QUANTILES}
    qs = list(QUANTILES.values())
    point = np.percentile(lat, qs)
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, len(qs)))
    for i in range(n_boot):  # one resample at a time: (n_boot x n) at once would not fit for big runs
        boots[i] = np.percentile(lat[rng.integers(0, lat.size, lat.size)], qs)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha], axis=0)
    return {k: (float(point[j]), float(lo[j]), float(hi[j])) for j, k in enumerate(QUANTILES)}


@dataclass(frozen=True)
class LoadResult:
    """One load run. ``requests`` started in the measured phase (the throughput's and latency's
    basis); ``started`` every request, each counted once with its outcome; ``errors`` and
    ``error_kinds`` every failed one, warm-up and ``unfinished`` included."""

    label: str
    users: int
    requests: int
    errors: int
    error_kinds: dict[str, int]
    duration_s: float
    throughput_rps: float
    latency_ms: dict[str, tuple[float, float, float]]  # p50/p95/p99 -> (value, ci_lo, ci_hi)
    pool: dict[str, dict[str, float]]  # phase -> PoolMonitor stats
    hung: bool
    resources: ResourceSummary | None = field(default=None, repr=False)
    samples: pd.DataFrame = field(default=None, repr=False, compare=False)
    started: int = 0
    warmup_requests: int = 0  # started before the measured phase: in errors, not in latency
    unfinished: int = 0  # still running when the run ended: errors of kind "unfinished"

    @property
    def p95_ms(self) -> float:
        return self.latency_ms["p95"][0]

    def wait_quantile_ms(self, q: float = 0.95) -> float:
        """A quantile of the pool wait (checkout time) of the measured, successful requests."""
        m = self.samples[self.samples["measured"] & self.samples["error"].isna()]
        return float(m["wait_ms"].quantile(q)) if len(m) else float("nan")

    def to_frame(self) -> pd.DataFrame:
        row = {"label": self.label, "users": self.users, "requests": self.requests, "errors": self.errors,
               "started": self.started, "warmup_requests": self.warmup_requests, "unfinished": self.unfinished,
               "throughput_rps": self.throughput_rps}
        for k, (v, lo, hi) in self.latency_ms.items():
            row.update({f"{k}_ms": v, f"{k}_lo": lo, f"{k}_hi": hi})
        measure = self.pool.get("measure", {})
        row.update({f"pool_{k}": measure.get(k) for k in ("checkouts", "waits", "wait_s", "timeouts", "peak_in_use")})
        if self.resources is not None:
            row.update({"rss_peak_mb": self.resources.rss_peak_mb, "cpu_mean_pct": self.resources.cpu_mean_pct})
        row["hung"] = self.hung
        return pd.DataFrame([row])

    def by_endpoint(self) -> pd.DataFrame:
        """Per endpoint: measured requests and their latency; every request started and every error."""
        f = self.samples
        measured = f[f["measured"]].groupby("endpoint").agg(
            requests=("latency_ms", "size"), p50_ms=("latency_ms", "median"),
            p95_ms=("latency_ms", lambda s: s.quantile(0.95)), p95_wait_ms=("wait_ms", lambda s: s.quantile(0.95)))
        everything = f.groupby("endpoint").agg(started=("error", "size"),
                                               errors=("error", lambda s: int(s.notna().sum())))
        out = everything.join(measured, how="left").fillna({"requests": 0}).astype({"requests": int})
        return out.reset_index()[["endpoint", "requests", "errors", "started", "p50_ms", "p95_ms", "p95_wait_ms"]]


def _classify(exc: BaseException) -> str:
    if isinstance(exc, PoolTimeout):
        return "pool_timeout"
    if isinstance(exc, DBAPIError):
        return "db_error"
    return type(exc).__name__


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


def _user(i: int, run: _Run, monitor: PoolMonitor, endpoints: Sequence[Endpoint], cum: list[float],
          seed: int, think_s: float, out: list, inflight: list, metrics: KitMetrics | None) -> None:
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
            error = _classify(exc)
        t1 = time.perf_counter()
        out.append((k, t0, t1 - t0, waited, error))
        inflight[i] = None
        run.done += 1  # approximate under races; only the progress bar reads it
        if think_s:
            time.sleep(think_s)


def run_load(engine: Engine, endpoints: Sequence[Endpoint], *, users: int = 100,
             duration_s: float | None = None, requests: int | None = None, warmup_s: float = 1.0,
             seed: int = 42, label: str = "load", think_s: float = 0.0, join_timeout_s: float = 60.0,
             n_boot: int = 300, progress: bool = True, sample_resources: bool = True,
             metrics: KitMetrics | None = None) -> LoadResult:
    """Run ``users`` virtual users over ``endpoints`` and measure (see the module docstring);
    ``metrics`` also counts and times every request (for a :class:`kit.metrics.MetricsPublisher`)."""
    if users < 1 or not endpoints or (duration_s is None) == (requests is None):
        raise ValueError("need users >= 1, at least one endpoint, and exactly one of duration_s / requests")
    cum = list(np.cumsum([e.weight for e in endpoints]))
    monitor, run = PoolMonitor(engine), _Run(requests)
    outs: list[list] = [[] for _ in range(users)]
    inflight: list[tuple[int, float] | None] = [None] * users
    threads = [threading.Thread(target=_user, args=(i, run, monitor, endpoints, cum, seed, think_s, outs[i],
                                                    inflight, metrics), daemon=True, name=f"kit-vu-{i}")
               for i in range(users)]
    sampler = ResourceSampler().start() if sample_resources else None
    bar = tqdm(total=requests or round(duration_s), unit="req" if requests else "s", desc=label,
               disable=not progress, leave=False)
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
            bar.n = min(run.done - done0, requests) if requests else min(round(elapsed), bar.total)
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
    unfinished = [(k, t0, float("nan"), float("nan"), "unfinished") for k, t0 in
                  (slot for slot in list(inflight) if slot is not None)]
    return _result(label, users, endpoints, outs, unfinished, run.measure_start, measure_end, requests, pool,
                   hung, resources, n_boot, seed)


def _result(label, users, endpoints, outs, unfinished, start, end, requests, pool, hung, resources, n_boot,
            seed) -> LoadResult:
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
    ok = m[m["error"].isna()]
    # errors: every request started, whatever its phase (warm-up is left out of latency only)
    kinds = {str(k): int(v) for k, v in frame["error"].value_counts().items()}
    return LoadResult(label=label, users=users, requests=len(m), errors=int(frame["error"].notna().sum()),
                      error_kinds=kinds, duration_s=window, throughput_rps=len(ok) / window,
                      latency_ms=latency_summary(ok["latency_ms"].to_numpy(), n_boot=n_boot, seed=seed),
                      pool=pool, hung=hung, resources=resources,
                      samples=frame[["endpoint", "start_s", "latency_ms", "wait_ms", "error", "measured"]],
                      started=len(frame), warmup_requests=int((frame["start_s"] < 0).sum()),
                      unfinished=len(unfinished))


# -- the seed's endpoints ------------------------------------------------------------------------

FLAVORS = ("naive", "batched", "cached")
# the seed's read endpoints and a plausible share of traffic each
MIX = {"search_projects": 3.0, "list_users": 2.0, "get_project": 3.0, "get_reconciliation_jobs": 2.0}
SEARCH_TERMS = ("Acme", "Globex", "Payroll", "Treasury", "EMEA", "Wonka", "Intercompany", "Hooli")
HOT_SHARE, HOT_FRACTION = 0.8, 0.01  # 80 % of lookups go to the hottest 1 % of projects
MAX_IDS = "/* kit */ SELECT coalesce((SELECT max(id) FROM projects), 1), coalesce((SELECT max(id) FROM users), 1)"


class EndpointSet(list):
    """The endpoints of a mix (a list), with the cache behind them when there is one."""

    cache: TieredCache | None = None


def _project_id(rng: random.Random, n: int) -> int:
    hot = max(int(n * HOT_FRACTION), 1)
    return rng.randint(1, hot) if rng.random() < HOT_SHARE else rng.randint(1, n)


@contextlib.contextmanager
def seed_endpoints(engine: Engine, *, flavor: str = "naive", redis_url: str | None = None,
                   mix: dict[str, float] | None = None) -> Iterator[EndpointSet]:
    """The seed's endpoints over ``kit.services.<flavor>`` (``cached``: batched behind a
    TieredCache on ``redis_url``, L1 only without it; its search is batched, uncached).

    A context manager because the cached flavor owns a cache and its invalidation listener.
    """
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; expected one of {', '.join(FLAVORS)}")
    with engine.connect() as conn:
        n_projects, _ = conn.exec_driver_sql(MAX_IDS).one()
    svc, search, cache, closer = (naive if flavor == "naive" else batched), None, None, None
    if flavor == "cached":
        cache = TieredCache(redis_url=redis_url, namespace=f"kit-load-{random.getrandbits(32):08x}")
        svc = closer = CachedServices(cache, engine)
        search = batched.search_projects
    search = search or svc.search_projects
    calls = {
        "search_projects": lambda c, r: search(c, query=r.choice(SEARCH_TERMS), page=r.randint(1, 3), per_page=20),
        "list_users": lambda c, r: svc.list_users(c, page=r.randint(1, 5), per_page=20),
        "get_project": lambda c, r: svc.get_project(c, _project_id(r, n_projects)),
        "get_reconciliation_jobs": lambda c, r: svc.get_reconciliation_jobs(
            c, project_id=_project_id(r, n_projects), page=1, per_page=20),
    }
    weights = mix or MIX
    unknown = set(weights) - set(calls)
    if unknown:
        raise ValueError(f"unknown endpoints in mix: {sorted(unknown)}; known: {sorted(calls)}")
    endpoints = EndpointSet(Endpoint(name, calls[name], w) for name, w in weights.items() if w > 0)
    endpoints.cache = cache
    try:
        yield endpoints
    finally:
        if closer is not None:
            closer.close()
        if cache is not None:
            cache.clear()
            cache.close()
