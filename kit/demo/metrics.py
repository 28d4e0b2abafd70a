"""Process and request metrics: psutil RSS/CPU sampling, a bounded request-metrics store, and a
Prometheus exposition with the seed's metric names on a private registry (talks to PostgreSQL
only when an engine is given, to count connections and running jobs at scrape time).

The seed keeps the last 1000 requests per endpoint with no age limit, and its memory and CPU
gauges return 0.0 (seed §5.1, §7.2); here both are bounded and both are real.

The process under load is not the one that serves ``/metrics``: a :class:`MetricsPublisher`
inside the loaded process writes its registry (requests, latency, its own RSS/CPU, its pool)
every second to ``<folder>/<pid>.prom`` with prometheus_client's ``write_to_textfile`` (the
node-exporter textfile format), and ``kit metrics serve`` exposes every live publisher's
metrics with a ``pid`` label, next to the database's own counts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from sqlalchemy import Engine, QueuePool, text

from kit.cache import CacheStats
from kit.db.engine import make_engine
from kit.errors import ConfigError

if TYPE_CHECKING:  # pandas loads where samples are framed, not in the load's own processes
    import pandas as pd

ALERT_UTILIZATION = 0.8  # the seed warns above 80 % pool use and alerts on nothing
_MB = 1024 * 1024


def queue_pool(engine: Engine) -> QueuePool:
    """The engine's pool, whose size and checkouts the load and its metrics read (a QueuePool's)."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        raise TypeError(
            f"the pool's figures need a QueuePool (pool_size, max_overflow), this engine has a "
            f"{type(pool).__name__}: make it with kit.db.engine.make_engine or kit.demo.load.pool.make_pool_engine"
        )
    return pool


# -- process resources ------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceSummary:
    """RSS and CPU of this process sampled over a run."""

    rss_start_mb: float
    rss_peak_mb: float
    rss_end_mb: float
    cpu_mean_pct: float
    cpu_max_pct: float
    samples: pd.DataFrame = field(repr=False, compare=False)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    k: getattr(self, k)
                    for k in ("rss_start_mb", "rss_peak_mb", "rss_end_mb", "cpu_mean_pct", "cpu_max_pct")
                }
            ]
        )


class ResourceSampler:
    """Samples this process's RSS and CPU every ``interval_s`` in a background thread.

    ``with ResourceSampler() as s: ...`` then ``s.summary``. CPU is percent of one core
    (psutil's convention: 200 % is two busy cores).
    """

    def __init__(self, *, interval_s: float = 0.1, pid: int | None = None):
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self._interval = interval_s
        self._proc = psutil.Process(pid)
        self._rows: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.summary: ResourceSummary | None = None

    def _sample(self, t0: float) -> None:
        self._rows.append((time.perf_counter() - t0, self._proc.memory_info().rss / _MB, self._proc.cpu_percent(None)))

    def _run(self, t0: float) -> None:
        while not self._stop.wait(self._interval):
            self._sample(t0)

    def start(self) -> ResourceSampler:
        t0 = time.perf_counter()
        self._proc.cpu_percent(None)  # the first call only sets psutil's reference point
        self._sample(t0)
        self._thread = threading.Thread(target=self._run, args=(t0,), daemon=True, name="kit-sampler")
        self._thread.start()
        self._t0 = t0
        return self

    def stop(self) -> ResourceSummary:
        import pandas as pd

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(self._t0)
        frame = pd.DataFrame(self._rows, columns=["t_s", "rss_mb", "cpu_pct"])
        cpu = frame["cpu_pct"].iloc[1:] if len(frame) > 1 else frame["cpu_pct"]
        self.summary = ResourceSummary(
            rss_start_mb=float(frame["rss_mb"].iloc[0]),
            rss_peak_mb=float(frame["rss_mb"].max()),
            rss_end_mb=float(frame["rss_mb"].iloc[-1]),
            cpu_mean_pct=float(cpu.mean()),
            cpu_max_pct=float(cpu.max()),
            samples=frame,
        )
        return self.summary

    def __enter__(self) -> ResourceSampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- request metrics store --------------------------------------------------------------------


class RequestMetricsStore:
    """Recent request metrics per endpoint, bounded by count *and* by age.

    The seed's store keeps the last 1000 per endpoint forever; an endpoint hit once an hour
    then still reports hour-old latencies. Entries older than ``max_age_s`` are evicted on
    every write and read. The clock is injected (``timer``) so expiry is tested without sleep.
    """

    def __init__(
        self, *, max_per_endpoint: int = 1000, max_age_s: float = 300.0, timer: Callable[[], float] = time.monotonic
    ):
        if max_per_endpoint < 1 or max_age_s <= 0:
            raise ValueError("max_per_endpoint must be >= 1 and max_age_s > 0")
        self.max_per_endpoint = max_per_endpoint
        self.max_age_s = max_age_s
        self._timer = timer
        self._lock = threading.Lock()
        self._data: dict[str, deque[tuple[float, float, int]]] = {}

    def record(self, endpoint: str, duration_s: float, status: int = 200) -> None:
        now = self._timer()
        with self._lock:
            q = self._data.get(endpoint)
            if q is None:
                q = self._data[endpoint] = deque(maxlen=self.max_per_endpoint)
            q.append((now, float(duration_s), int(status)))
            self._evict(now)

    def _evict(self, now: float) -> None:
        cutoff = now - self.max_age_s
        for name in list(self._data):
            q = self._data[name]
            while q and q[0][0] < cutoff:  # oldest first: stop at the first young entry
                q.popleft()
            if not q:
                del self._data[name]  # an endpoint gone quiet costs nothing

    def __len__(self) -> int:
        with self._lock:
            self._evict(self._timer())
            return sum(len(q) for q in self._data.values())

    def counts(self) -> dict[str, int]:
        with self._lock:
            self._evict(self._timer())
            return {name: len(q) for name, q in self._data.items()}

    def memory_bytes(self) -> int:
        """Bytes held by the store: the dict, each deque, each entry tuple and its numbers."""
        with self._lock:
            total = sys.getsizeof(self._data)
            for name, q in self._data.items():
                total += sys.getsizeof(name) + sys.getsizeof(q)
                total += sum(sys.getsizeof(e) + sum(sys.getsizeof(v) for v in e) for e in q)
            return total

    def to_frame(self) -> pd.DataFrame:
        """Per endpoint: count, p50/p95 in ms, error count (status >= 500)."""
        import pandas as pd

        with self._lock:
            self._evict(self._timer())
            rows = [(name, d * 1000.0, s) for name, q in self._data.items() for _, d, s in q]
        frame = pd.DataFrame(rows, columns=["endpoint", "ms", "status"])
        return (
            frame.groupby("endpoint")
            .agg(
                count=("ms", "size"),
                p50_ms=("ms", "median"),
                p95_ms=("ms", lambda s: s.quantile(0.95)),
                errors=("status", lambda s: int((s >= 500).sum())),
            )
            .reset_index()
        )


# -- Prometheus -------------------------------------------------------------------------------

DB_CONNECTIONS = "SELECT /* kit */ count(*) FROM pg_stat_activity WHERE datname = current_database()"
RUNNING_JOBS = "SELECT /* kit */ count(*) FROM reconciliation_jobs WHERE status = 'running'"


class _ProcessCollector(Collector):
    """Gauges of this process computed at collection time: RSS, CPU, and the engine's pool."""

    def __init__(self, engine: Engine | None):
        self._engine = engine
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "process_memory_usage_bytes",
            "Resident set size of this process (psutil)",
            value=self._proc.memory_info().rss,
        )
        yield GaugeMetricFamily(
            "process_cpu_usage_percent",
            "CPU of this process since the last scrape, % of one core",
            value=self._proc.cpu_percent(None),
        )
        if self._engine is None:
            return
        pool = queue_pool(self._engine)
        capacity = pool.size() + max(getattr(pool, "_max_overflow", 0), 0)
        used = pool.checkedout()
        ratio = used / capacity if capacity else 0.0
        yield GaugeMetricFamily("db_pool_connections_in_use", "Pool connections checked out", value=used)
        yield GaugeMetricFamily("db_pool_capacity", "pool_size + max_overflow", value=capacity)
        yield GaugeMetricFamily("db_pool_utilization", "Checked out / capacity (0..1)", value=ratio)
        yield GaugeMetricFamily(
            "db_pool_utilization_alert",
            f"1 when utilization > {ALERT_UTILIZATION:.0%}",
            value=float(ratio > ALERT_UTILIZATION),
        )


class _DatabaseCollector(Collector):
    """Counts read from PostgreSQL at scrape time (one connection of the engine's pool each)."""

    def __init__(self, engine: Engine):
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # a scrape must not fail because the database is down, or is not the platform's (no jobs table)
        for name, doc, query in (
            ("database_connections", "Server connections to this database", DB_CONNECTIONS),
            ("reconciliation_jobs_active", "Jobs with status running", RUNNING_JOBS),
        ):
            with contextlib.suppress(Exception), self._engine.connect() as conn:
                value = conn.execute(text(query)).scalar_one()
                yield GaugeMetricFamily(name, doc, value=value)


class KitMetrics:
    """The seed's Prometheus metrics on a private :class:`CollectorRegistry`.

    Instrument requests with :meth:`track`; the ingest moves ``file_uploads_active``; cache
    counters come from a :class:`kit.cache.CacheStats` when one is given (with a ``level``
    label), else from this object's own ``cache_hits``/``cache_misses``. ``database_connections``
    and ``reconciliation_jobs_active`` are read from PostgreSQL at scrape time when an engine is
    given, unless ``database_gauges=False`` (a loaded process publishing its metrics must not take
    connections from the pool it measures).
    """

    def __init__(
        self, *, engine: Engine | None = None, cache_stats: CacheStats | None = None, database_gauges: bool = True
    ):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter("http_requests_total", "HTTP requests", ["endpoint", "status"], registry=r)
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Request latency",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.active_connections = Gauge("active_connections", "Requests in flight", registry=r)
        if cache_stats is not None:  # the cache's own counters: cache_hits_total{level=...} etc.
            cache_stats.export_prometheus(r)
            self.cache_hits = self.cache_misses = None
        else:
            self.cache_hits = Counter("cache_hits_total", "Cache hits", registry=r)
            self.cache_misses = Counter("cache_misses_total", "Cache misses", registry=r)
        self.file_uploads_active = Gauge("file_uploads_active", "Files being ingested", registry=r)
        r.register(_ProcessCollector(engine))
        if engine is not None and database_gauges:
            r.register(_DatabaseCollector(engine))

    @contextlib.contextmanager
    def track(self, endpoint: str) -> Iterator[None]:
        """Count and time one request; status 500 when the body raises."""
        self.active_connections.inc()
        t0 = time.perf_counter()
        status = "500"
        try:
            yield
            status = "200"
        finally:
            self.http_duration.labels(endpoint).observe(time.perf_counter() - t0)
            self.http_requests.labels(endpoint, status).inc()
            self.active_connections.dec()


@dataclass
class MetricsServer:
    """A running ``/metrics`` HTTP endpoint; :meth:`close` stops it."""

    metrics: KitMetrics
    port: int
    _httpd: WSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def start_server(
    port: int = 0,
    *,
    metrics: KitMetrics | None = None,
    engine: Engine | None = None,
    registry: CollectorRegistry | None = None,
    addr: str = "127.0.0.1",
) -> MetricsServer:
    """Serve ``registry``, ``metrics`` or a new :class:`KitMetrics` on ``engine`` at ``addr:port``;
    0 picks a port."""
    metrics = metrics or KitMetrics(engine=engine)
    try:
        httpd, thread = start_http_server(port, addr=addr, registry=registry or metrics.registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}; choose another "
            "port with --port (0 picks a free one)"
        ) from None
    return MetricsServer(metrics, httpd.server_port, httpd, thread)


# -- the process under load publishes, `kit metrics serve` exposes -------------------------------


class MetricsPublisher:
    """Writes ``metrics``' registry to ``<folder>/<pid>.prom`` every ``interval_s`` (atomically) until
    closed, then removes the file. ``with MetricsPublisher(metrics, folder): run the load``."""

    def __init__(self, metrics: KitMetrics, folder: Path, *, interval_s: float = 1.0):
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.metrics, self.interval_s = metrics, interval_s
        self.path = Path(folder) / f"{os.getpid()}.prom"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self) -> None:
        write_to_textfile(str(self.path), self.metrics.registry)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(OSError):  # a full disk must not fail the load it describes
                self.publish()

    def __enter__(self) -> MetricsPublisher:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.publish()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kit-metrics-publisher")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.path.unlink(missing_ok=True)


class _PublishedCollector(Collector):
    """The metrics every live process published in ``folder``, each sample labelled with its ``pid``;
    files of processes that are gone, or older than ``max_age_s``, are left out (and the former removed)."""

    def __init__(self, folder: Path, *, max_age_s: float = 10.0):
        self.folder, self.max_age_s = Path(folder), max_age_s

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        live = 0
        for path in sorted(self.folder.glob("*.prom")):
            pid = path.stem
            if not pid.isdigit() or not psutil.pid_exists(int(pid)):
                path.unlink(missing_ok=True)
                continue
            try:
                if time.time() - path.stat().st_mtime > self.max_age_s:
                    continue
                families = list(text_string_to_metric_families(path.read_text()))
            except (OSError, ValueError):
                continue
            live += 1
            for fam in families:
                out = merged.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type))
                for sample in fam.samples:
                    out.add_sample(sample.name, {**sample.labels, "pid": pid}, sample.value)
        yield from merged.values()
        yield GaugeMetricFamily("kit_publishing_processes", "Processes under load publishing their metrics", value=live)


def exposition_registry(folder: Path, *, engine: Engine | None = None) -> CollectorRegistry:
    """What ``kit metrics serve`` exposes: the published metrics of ``folder`` and, given an engine,
    the database's counts."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_PublishedCollector(folder))
    if engine is not None:
        registry.register(_DatabaseCollector(engine))
    return registry


def serve(port: int, *, folder: Path, database_url: str | None = None, addr: str = "127.0.0.1") -> None:
    """``kit metrics serve --port P``: serve ``/metrics`` until interrupted."""
    engine = make_engine(database_url) if database_url else None
    server = start_server(port, registry=exposition_registry(folder, engine=engine), addr=addr)
    print(
        f"serving {server.url} (Ctrl-C to stop): the processes publishing in {folder} "
        "(`kit load` does) and the database's counts"
    )
    stop = threading.Event()
    # explicit handlers: a process started with SIGINT ignored (a background job, a test runner's
    # worker) would not stop on Ctrl-C, and a service manager stops with SIGTERM
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.close()
        if engine is not None:
            engine.dispose()
