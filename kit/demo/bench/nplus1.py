"""Benchmark and notebook measurements of the N+1 fixes: naive vs batched services on the same
data, in the same process, with warm-up and repeated trials (talks to PostgreSQL).

``run()`` is what ``kit bench nplus1`` calls; :func:`measure_endpoints` is what the notebooks
show (statements and latency per request for each endpoint under capture).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, text

from kit.capture.nplus1 import NPlusOneReport, find_n_plus_one
from kit.capture.recorder import QueryLog, capture
from kit.db.engine import make_engine
from kit.demo import bench
from kit.demo.services import IMPLEMENTATIONS
from kit.demo.services.common import load_job, match_records

ENDPOINTS = ("search_projects", "list_users", "list_projects")


@dataclass(frozen=True)
class EndpointRuns:
    """Per-request statements and latency of one implementation's endpoints."""

    implementation: str
    requests: tuple[tuple[str, int, float], ...]  # (endpoint, statements, ms)
    report: NPlusOneReport
    log: QueryLog

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame(list(self.requests), columns=["endpoint", "queries", "ms"])
        df.insert(0, "implementation", self.implementation)
        return df

    def queries(self, endpoint: str) -> int:
        """Statements per request of ``endpoint`` (the same in every trial)."""
        return max(q for e, q, _ in self.requests if e == endpoint)

    def p50_ms(self, endpoint: str) -> float:
        return statistics.median(ms for e, _, ms in self.requests if e == endpoint)


DEFAULT_QUERY = "acme"  # one company in 20 in the generated names: ~2,500 projects at demo


def _calls(impl: Any, query: str, per_page: int) -> dict[str, Callable[[Connection], Any]]:
    return {
        "search_projects": lambda c: impl.search_projects(c, query=query, page=1, per_page=per_page),
        "list_users": lambda c: impl.list_users(c, page=1, per_page=per_page),
        "list_projects": lambda c: impl.list_projects(c, page=1, per_page=per_page),
    }


def measure_endpoints(
    engine: Engine,
    *,
    implementation: str = "naive",
    trials: int = 5,
    warmup: int = 1,
    per_page: int = 20,
    query: str | None = None,
) -> EndpointRuns:
    """Run each endpoint ``trials`` times under capture, one unit of work per request."""
    impl = IMPLEMENTATIONS[implementation]
    if trials < 1 or warmup < 0:
        raise ValueError(f"trials must be >= 1 and warmup >= 0, got {trials}, {warmup}")
    rows: list[tuple[str, int, float]] = []
    with engine.connect() as conn:
        calls = _calls(impl, query or DEFAULT_QUERY, per_page)
        for call in calls.values():
            for _ in range(warmup):
                call(conn)
        with capture(conn, call_sites=True) as log:  # the findings say where each loop is
            for _ in range(trials):
                for name, call in calls.items():
                    with log.unit(name) as unit:
                        started = time.perf_counter()
                        call(conn)
                        ms = (time.perf_counter() - started) * 1000
                    rows.append((name, sum(1 for s in log.statements if s.unit_id == unit.id), ms))
        conn.rollback()
    return EndpointRuns(implementation, tuple(rows), find_n_plus_one(log, min_repeats=5), log)


def _timed(conn: Connection, call: Callable[[Connection], Any], trials: int) -> list[float]:
    out = []
    for _ in range(trials):
        started = time.perf_counter()
        call(conn)
        out.append((time.perf_counter() - started) * 1000)
    return out


JOBS_WITH_RECORDS = """
SELECT j.id, j.project_id FROM reconciliation_jobs j
WHERE j.project_id IN (SELECT project_id FROM reconciliation_records WHERE project_id <= :max_project)
ORDER BY j.id LIMIT :n
"""


def measure_writes(engine: Engine, *, jobs: int = 50, trials: int = 3) -> dict[str, float]:
    """Rows written per second by each implementation's ``write_job_rows`` for the same jobs'
    rows (matched once beforehand); every trial is rolled back so the data never changes."""
    with engine.connect() as conn:
        picked = conn.execute(text(JOBS_WITH_RECORDS), {"max_project": 500, "n": jobs}).all()
        work = []
        for job_id, project_id in picked:
            results, matches = match_records(load_job(conn, project_id, job_id), project_id=project_id, job_id=job_id)
            work.append((job_id, results, matches))
        conn.rollback()
        rates: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
        for trial in range(trials + 1):  # the first round warms up
            for name, impl in IMPLEMENTATIONS.items():
                started = time.perf_counter()
                rows = sum(impl.write_job_rows(conn, results=r, matches=m) for _j, r, m in work)
                seconds = time.perf_counter() - started
                conn.rollback()
                if trial:
                    rates[name].append(rows / seconds)
    return {name: statistics.median(v) for name, v in rates.items()}


PK_LOOKUP = text("SELECT id, email FROM users WHERE id = :id")


def capture_overhead(
    engine: Engine, *, statements: int = 200, pairs: int = 61, call_sites: bool = False
) -> dict[str, float]:
    """Extra time per statement under capture, in percent of the same statements uncaptured
    (cheap primary-key lookups, so the overhead is not hidden behind server work), and the µs per
    statement spent later reading the log (the Statements are built then, not in the hook).

    Short trials in pairs, plain and captured back to back (the order alternating), and the
    median of the pairs' ratios: a burst of load from another process then spoils a few pairs
    instead of deciding which side's one quiet trial is kept (the minimum of long trials swung
    from 7 % to 49 % between calls on a busy machine)."""

    def loop(conn: Connection) -> None:
        for i in range(statements):
            conn.execute(PK_LOOKUP, {"id": i % 100 + 1}).all()

    ratios: list[float] = []
    reads: list[float] = []
    with engine.connect() as conn:
        for _ in range(5):  # warm-up
            loop(conn)
        for pair in range(pairs):
            times = {}
            for side in ("plain", "captured") if pair % 2 else ("captured", "plain"):
                if side == "plain":
                    times[side] = _timed(conn, loop, 1)[0]
                    continue
                with capture(conn, call_sites=call_sites) as log:
                    times[side] = _timed(conn, loop, 1)[0]
                started = time.perf_counter()
                len(log)  # builds the Statements
                reads.append((time.perf_counter() - started) * 1e6 / statements)
            ratios.append(times["captured"] / times["plain"])
        conn.rollback()
    return {"overhead_pct": (statistics.median(ratios) - 1) * 100, "read_us_per_statement": statistics.median(reads)}


def paired_speedup(
    engine: Engine, endpoint: str, *, pairs: int, warmup: int = 2, per_page: int = 20, query: str | None = None
) -> dict[str, Any]:
    """Naive over batched latency of ``endpoint``: each pair runs both back to back on one
    connection (the order alternating), uncaptured, and the speedup is the median of the pairs'
    ratios, so a change of load on the machine hits both sides of a ratio alike."""
    calls = {name: _calls(impl, query or DEFAULT_QUERY, per_page)[endpoint] for name, impl in IMPLEMENTATIONS.items()}
    ms: dict[str, list[float]] = {name: [] for name in calls}
    ratios: list[float] = []
    with engine.connect() as conn:
        for call in calls.values():
            _timed(conn, call, warmup)
        for pair in range(pairs):
            for name in ("naive", "batched") if pair % 2 else ("batched", "naive"):
                ms[name] += _timed(conn, calls[name], 1)
            ratios.append(ms["naive"][-1] / ms["batched"][-1])
        conn.rollback()
    return {"p50_ms": {name: statistics.median(v) for name, v in ms.items()}, "speedup": statistics.median(ratios)}


SCALES = bench.SCALES


def run(*, database_url: str, redis_url: str, scale: str, seed: int, trials: int | None = None) -> dict:
    """The bench keys of issue 3 (see the module docstring); ``redis_url`` is unused.

    Statements per request come from one captured run of each implementation; latencies and
    speedups from uncaptured pairs (the capture's own cost, larger for 41 statements than for
    one, is not the fix's)."""
    bench.seed_platform(database_url, scale=scale, seed=seed)
    trials = trials or (21 if scale != "tiny" else 5)
    engine = make_engine(database_url)
    try:
        runs = {name: measure_endpoints(engine, implementation=name, trials=1, warmup=1) for name in IMPLEMENTATIONS}
        out: dict[str, Any] = {"scale": scale, "seed": seed, "trials": trials}
        for endpoint in ("search_projects", "list_users"):
            out[endpoint] = {
                "queries": {n: r.queries(endpoint) for n, r in runs.items()},
                **paired_speedup(engine, endpoint, pairs=trials),
            }
        rates = measure_writes(engine)
        out["reconciliation_write"] = {"rows_per_s": rates, "speedup": rates["batched"] / rates["naive"]}
        default, with_sites = capture_overhead(engine), capture_overhead(engine, call_sites=True)
        out["capture"] = {**default, "overhead_pct_call_sites": with_sites["overhead_pct"]}
        return out
    finally:
        engine.dispose()
