"""Connection-pool configurations and a pool monitor fed by SQLAlchemy pool events (talks to PostgreSQL).

The seed configures r2d2/sqlx pools; SQLAlchemy's QueuePool has different knobs, mapped so:

* ``max_size`` / ``max_connections`` (a hard cap on open connections) -> ``pool_size`` with
  ``max_overflow=0``. r2d2 keeps every opened connection until its idle timeout (minutes), so
  the QueuePool must keep them too; ``pool_size=min_idle, max_overflow=cap-min_idle`` would
  instead close every connection above ``min_idle`` on check-in and reconnect on the next
  checkout — connection churn the seed's pool does not have.
* ``min_idle`` / ``min_connections`` (pre-warmed connections) -> :func:`prewarm` opens that
  many at engine creation; QueuePool has no minimum of its own.
* ``connection_timeout`` (how long a checkout may wait) -> ``pool_timeout``.
* ``test_on_check_out`` -> ``pool_pre_ping``; ``max_lifetime`` -> ``pool_recycle``.

Scenarios: :func:`compare_configs` (the seed's two pools under the same load),
:func:`sweep_pool_sizes` (the smallest pool meeting a p95 target under ``max_connections``),
:func:`exhaustion` (more requests than connections: clean timeouts, no hang, recovery).
The seed's mix runs on Locust (:mod:`kit.demo.load.engine`), custom endpoints on threads
(:mod:`kit.demo.load.threads`, whose :class:`~kit.demo.load.threads.PoolMonitor` watches the pool).

Fairness. On threads, QueuePool starves some waiters: a thread that returns a connection and
asks again takes it before the woken waiter runs (100 closed-loop users, no think time: p50 13 ms
and a 26 s pool wait). Under Locust the waiters are greenlets queued on gevent's condition, and
the open model has no user that asks again at once. ``kit bench load`` reports the p99 and the max
pool wait at each pool size of the sweep: starvation shows as a max far above the p99, and the
max wait is a criterion of :func:`sweep_pool_sizes`. The kit keeps QueuePool (SQLAlchemy's
events, pre-ping, recycle); psycopg_pool, which serves waiters in order, is the way out if it starves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, text

from kit.db.engine import url_of
from kit.demo.load.connections import (  # noqa: F401 - the configurations are part of this module's API
    OPTIMIZED,
    PRODUCTION,
    SEED_CONFIGS,
    PoolConfig,
    make_pool_engine,
    server_connection_limit,
)
from kit.demo.load.engine import run_locust
from kit.demo.load.mix import Endpoint
from kit.demo.load.stats import LoadResult
from kit.demo.load.threads import run_load
from kit.demo.metrics import queue_pool

# -- scenarios ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolComparison:
    """The same load against several pool configurations."""

    configs: tuple[PoolConfig, ...]
    results: tuple[LoadResult, ...]

    def to_frame(self) -> pd.DataFrame:
        frame = pd.concat([r.to_frame() for r in self.results], ignore_index=True)
        frame.insert(1, "pool_size", [c.pool_size for c in self.configs])
        frame.insert(2, "pool_timeout_s", [c.pool_timeout for c in self.configs])
        return frame


def _url(url: str | Engine) -> str:
    return url_of(url) if isinstance(url, Engine) else url


def _run(
    url: str,
    config: PoolConfig,
    endpoints: Sequence[Endpoint] | None,
    measured: Mapping[PoolConfig, LoadResult] | None = None,
    **load,
) -> LoadResult:
    """``endpoints`` on threads in this process, or the seed's mix on Locust when None
    (``flavor``/``redis_url``/``model``/``rate_rps``... in ``load``); a pool ``measured`` already
    under this load (the caller's word: the same ``load`` and services) is not run again."""
    for done, result in (measured or {}).items():
        if replace(done, name="") == replace(config, name=""):  # the name is a label only
            return result
    if endpoints is None:
        return seed_load(url, config=config, label=config.name, **load)
    engine = make_pool_engine(url, config)
    try:
        return run_load(engine, endpoints, label=config.name, **load)
    finally:
        engine.dispose()


def seed_load(
    url: str | Engine,
    *,
    flavor: str = "naive",
    config: PoolConfig = PRODUCTION,
    redis_url: str | None = None,
    publish_to: Path | None = None,
    **load,
) -> LoadResult:
    """The seed's endpoint mix on ``flavor`` services, on Locust in processes of its own, each
    with a pool built from ``config`` (``url`` may be an engine: its URL is reused, its pool is not);
    ``load`` holds :func:`kit.demo.load.engine.run_locust` keywords (model, rate_rps, users, processes...).
    With ``publish_to``, every loaded process publishes its metrics there while the load runs."""
    return run_locust(_url(url), flavor=flavor, config=config, redis_url=redis_url, publish_to=publish_to, **load)


def compare_configs(
    url: str | Engine,
    endpoints: Sequence[Endpoint] | None = None,
    *,
    configs: Sequence[PoolConfig] = SEED_CONFIGS,
    measured: Mapping[PoolConfig, LoadResult] | None = None,
    **load,
) -> PoolComparison:
    """Run the same load against each configuration, one engine each; ``load`` holds ``run_load``
    keywords, or ``run_locust``'s for the seed's mix when ``endpoints`` is None. A configuration in
    ``measured`` (its result under this same load) is taken from there, not run again."""
    return PoolComparison(tuple(configs), tuple(_run(_url(url), c, endpoints, measured, **load) for c in configs))


@dataclass(frozen=True)
class PoolSweep:
    """p95 and pool wait by pool size, and the size recommended (per load process: the database
    sees ``processes`` x size connections)."""

    rows: pd.DataFrame = field(repr=False)
    p95_target_ms: float
    connection_limit: int
    recommended_size: int | None
    max_wait_target_ms: float = 1000.0
    processes: int = 1

    def to_frame(self) -> pd.DataFrame:
        return self.rows.copy()


def sweep_pool_sizes(
    url: str | Engine,
    endpoints: Sequence[Endpoint] | None = None,
    *,
    sizes: Sequence[int] = (5, 10, 20, 30, 50),
    base: PoolConfig = PRODUCTION,
    p95_target_ms: float | None = None,
    max_wait_target_ms: float = 1000.0,
    headroom: float = 0.2,
    instances: int = 1,
    min_throughput_share: float = 0.9,
    measured: Mapping[PoolConfig, LoadResult] | None = None,
    **load,
) -> PoolSweep:
    """Run the same load at each pool size; recommend the smallest size whose p95 meets the target
    and whose longest pool wait stays under ``max_wait_target_ms``, while the connections it opens —
    ``size`` x load processes (``processes`` of the Locust run, 1 on threads) x ``instances`` —
    stay under the server's limit (``max_connections`` less headroom).

    Only sizes with no errors and at least ``min_throughput_share`` of the best throughput are
    eligible: QueuePool is not FIFO, so with too few connections some requests starve for seconds
    while the others stay fast — a good p95, a terrible max wait. Without a target, the target is
    the best eligible p95 plus 10 %. Run it in the open model at the offered rate: a closed loop
    with no think time measures saturation, not the pool the rate needs. A size already in
    ``measured`` under this same load (the base pool at that size, whatever its name) is not run again.
    """
    url = _url(url)
    probe = make_pool_engine(url, base.with_size(1))
    try:
        limit = server_connection_limit(probe, headroom=headroom)
    finally:
        probe.dispose()
    processes = max(load.get("processes", 2), 1) if endpoints is None else 1
    rows = []
    for size in sorted(set(sizes)):
        fits = size * processes * instances <= limit
        r = _run(url, base.with_size(size), endpoints, measured, **load) if fits else None
        m = r.pool["measure"] if r else {}
        rows.append(
            {
                "size": size,
                "connections": size * processes * instances,
                "fits_server": fits,
                "p95_ms": r.p95_ms if r else float("nan"),
                "p95_lo": r.latency_ms["p95"][1] if r else float("nan"),
                "p95_hi": r.latency_ms["p95"][2] if r else float("nan"),
                "throughput_rps": r.throughput_rps if r else float("nan"),
                "errors": r.errors if r else 0,
                "waits": m.get("waits", 0),
                "p99_ms": r.latency_ms["p99"][0] if r else float("nan"),
                "mean_wait_ms": 1000.0 * m.get("wait_s", 0.0) / max(m.get("checkouts", 0), 1),
                "p95_wait_ms": r.wait_quantile_ms(0.95) if r else float("nan"),
                "p99_wait_ms": r.wait_quantile_ms(0.99) if r else float("nan"),
                "max_wait_ms": r.max_wait_ms if r else float("nan"),
                "peak_in_use": m.get("peak_in_use", 0),
            }
        )
    frame = pd.DataFrame(rows)
    ran = frame[frame["fits_server"]]
    eligible = ran[
        (ran["errors"] == 0)
        & (ran["max_wait_ms"] <= max_wait_target_ms)
        & (ran["throughput_rps"] >= min_throughput_share * ran["throughput_rps"].max())
    ]
    target = p95_target_ms if p95_target_ms is not None else float(eligible["p95_ms"].min()) * 1.1
    ok = eligible[eligible["p95_ms"] <= target]
    best = int(ok["size"].min()) if len(ok) else None
    frame["recommended"] = frame["size"] == best
    return PoolSweep(frame, target, limit, best, max_wait_target_ms, processes)


# -- exhaustion --------------------------------------------------------------------------------

HOLD = "SELECT /* kit */ pg_sleep(:s)"


def hold_endpoint(hold_s: float) -> Endpoint:
    """An endpoint that keeps its connection ``hold_s`` seconds: a slow request, deterministic."""
    stmt = text(HOLD)
    return Endpoint("hold", lambda conn, rng: conn.execute(stmt, {"s": hold_s}))


@dataclass(frozen=True)
class ExhaustionResult:
    """More users than connections with a short pool timeout, then a recovery run."""

    config: PoolConfig
    users: int
    timeouts: int
    other_errors: int
    hung: bool
    recovered: bool
    load: LoadResult = field(repr=False)
    recovery: LoadResult = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "pool_size": self.config.pool_size,
                    "max_overflow": self.config.max_overflow,
                    "pool_timeout_s": self.config.pool_timeout,
                    "users": self.users,
                    "requests": self.load.requests,
                    "timeouts": self.timeouts,
                    "other_errors": self.other_errors,
                    "hung": self.hung,
                    "recovered": self.recovered,
                    "recovery_requests": self.recovery.requests,
                    "recovery_errors": self.recovery.errors,
                }
            ]
        )


# a small pool with a short timeout: exhausted within a second by a handful of users
EXHAUSTION = PoolConfig("exhaustion", pool_size=4, max_overflow=2, pool_timeout=0.25)


def exhaustion(
    url: str | Engine,
    *,
    config: PoolConfig = EXHAUSTION,
    users: int | None = None,
    hold_s: float = 0.5,
    duration_s: float = 2.0,
    recovery_requests: int = 100,
    endpoints: Sequence[Endpoint] | None = None,
    seed: int = 42,
    progress: bool = False,
) -> ExhaustionResult:
    """Exhaust the pool (``users`` defaults to 4x its capacity, each request holding a connection
    ``hold_s`` > ``pool_timeout``), then run ``recovery_requests`` with as many users as
    connections on the same engine: recovered means no errors there and every connection back."""
    users = users or 4 * config.capacity
    if users <= config.capacity:
        raise ValueError(f"users ({users}) must exceed pool capacity ({config.capacity}) to exhaust it")
    engine = make_pool_engine(_url(url), config)
    try:
        load = run_load(
            engine,
            endpoints or [hold_endpoint(hold_s)],
            users=users,
            duration_s=duration_s,
            warmup_s=0.0,
            seed=seed,
            label="exhaustion",
            progress=progress,
            join_timeout_s=config.pool_timeout + hold_s + 10.0,
            sample_resources=False,
        )
        recovery = run_load(
            engine,
            [hold_endpoint(0.0)],
            users=config.capacity,
            requests=recovery_requests,
            warmup_s=0.0,
            seed=seed,
            label="recovery",
            progress=progress,
            sample_resources=False,
        )
        back = queue_pool(engine).checkedout() == 0
    finally:
        engine.dispose()
    timeouts = load.error_kinds.get("pool_timeout", 0)
    return ExhaustionResult(
        config,
        users,
        timeouts,
        load.errors - timeouts,
        load.hung or recovery.hung,
        recovery.errors == 0 and not recovery.hung and back,
        load,
        recovery,
    )
