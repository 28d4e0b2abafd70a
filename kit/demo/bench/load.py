"""``kit bench load``: the platform's mix on Locust (two worker processes, open model at an offered
rate) on the naive vs fixed services, the saturation knee of each, pool sizing, exhaustion, RSS, ingest.

Order matters and is part of the measurement: the naive runs go first on the database as the
audit found it (no secondary index); then the migration's indexes are applied and the fixed
services (batched + cached) run under the same production pool and the same load.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TypedDict

from kit.db.engine import make_engine
from kit.demo import bench
from kit.demo.load.engine import run_locust, saturation
from kit.demo.load.pool import PRODUCTION, PoolConfig, exhaustion, sweep_pool_sizes
from kit.demo.metrics import ResourceSampler
from kit.demo.services.ingest import CHUNK_SIZES, compare_ingest, generate_csv, ingest_files
from kit.indexes.apply import apply_indexes

USERS, RATE_RPS, WORKERS, MODEL = 100, 50.0, 2, "open"
DURATION_S = {"tiny": 3.0, "demo": 15.0, "large": 20.0}
WARMUP_S = {"tiny": 1.0, "demo": 3.0, "large": 3.0}
DRAIN_S = 10.0  # a request still running this long after the schedule ends is an "unfinished" error
# the saturation search: offered rates stepped x2 from where each side is still comfortable, then refined
STEP_S = {"tiny": 2.0, "demo": 6.0, "large": 6.0}
SATURATION_RATES = {"naive": (1, 2, 4, 8, 16, 32, 64), "fixed": (25, 50, 100, 200, 400, 800, 1600)}
REFINE = 2  # steps of bisection between the last rate that held and the first that did not
SWEEP_SIZES = (1, 2, 5, 10, 20)
INGEST_FILES, INGEST_ROWS = 5, {"tiny": 5_000, "demo": 60_000, "large": 60_000}
BIG_FILE_BYTES = 110 * 2**20


class _Common(TypedDict):
    """The :func:`run_locust` keywords a side's run and its saturation steps share."""

    flavor: str
    redis_url: str | None
    users: int
    processes: int
    config: PoolConfig
    seed: int


def _side(url: str, redis_url: str | None, flavor: str, scale: str, seed: int) -> tuple:
    common: _Common = {
        "flavor": flavor,
        "redis_url": redis_url,
        "users": USERS,
        "processes": WORKERS,
        "config": PRODUCTION,
        "seed": seed,
    }
    run = run_locust(
        url,
        model=MODEL,
        rate_rps=RATE_RPS,
        duration_s=DURATION_S[scale],
        warmup_s=WARMUP_S[scale],
        drain_s=DRAIN_S,
        **common,
    )
    side = "naive" if flavor == "naive" else "fixed"
    knee = saturation(
        url,
        rates=SATURATION_RATES[side],
        duration_s=STEP_S[scale],
        warmup_s=STEP_S[scale] / 3,
        refine=REFINE,
        n_boot=50,
        drain_s=5.0,
        **common,
    )
    return run, knee


def _load_block(url: str, redis_url: str, scale: str, seed: int) -> dict:
    naive, naive_knee = _side(url, None, "naive", scale, seed)
    engine = make_engine(url)
    try:
        apply_indexes(engine, apply=True, progress=None, out=None)
    finally:
        engine.dispose()
    fixed, fixed_knee = _side(url, redis_url, "cached", scale, seed)
    runs, knees = {"naive": naive, "fixed": fixed}, {"naive": naive_knee, "fixed": fixed_knee}
    return {
        "engine": "locust",
        "workers": fixed.workers,
        "model": MODEL,
        "rate_rps": RATE_RPS,
        "users": USERS,
        "duration_s": DURATION_S[scale],
        "p95_ms": {k: r.p95_ms for k, r in runs.items()},
        "p95_ci_ms": {k: list(r.latency_ms["p95"][1:]) for k, r in runs.items()},
        "p50_ms": {k: r.latency_ms["p50"][0] for k, r in runs.items()},
        "p99_ms": {k: r.latency_ms["p99"][0] for k, r in runs.items()},
        "p95_ratio": naive.p95_ms / fixed.p95_ms,
        "errors": {k: r.errors for k, r in runs.items()},
        "error_kinds": {k: r.error_kinds for k, r in runs.items()},
        "max_wait_ms": {k: r.max_wait_ms for k, r in runs.items()},
        "p99_wait_ms": {k: r.wait_quantile_ms(0.99) for k, r in runs.items()},
        "p95_wait_ms": {k: r.wait_quantile_ms(0.95) for k, r in runs.items()},
        "saturation_rps": {k: s.saturation_rps for k, s in knees.items()},
        "saturation_ratio": fixed_knee.saturation_rps / naive_knee.saturation_rps
        if naive_knee.saturation_rps
        else None,
        "saturation_target_ms": {k: s.p95_target_ms for k, s in knees.items()},
        "saturation_steps": {k: s.steps.to_dict(orient="records") for k, s in knees.items()},
        "saturation_rule": "the highest offered rate whose p95 stayed under 3x the p95 at the lowest rate (at least "
        "100 ms) with no error; rates x2, then 2 bisection steps",
        "throughput_rps": {k: r.throughput_rps for k, r in runs.items()},
        "requests": {k: r.requests for k, r in runs.items()},
        "started": {k: r.started for k, r in runs.items()},
        "hung": {k: r.hung for k, r in runs.items()},
        "pool_measure": {k: r.pool["measure"] for k, r in runs.items()},
        # RSS of the load's worker processes together (each process's own: published for Prometheus)
        "rss_mb": {
            "start": fixed.resources.rss_start_mb,
            "peak": fixed.resources.rss_peak_mb,
            "end": fixed.resources.rss_end_mb,
        },
        "rss_mb_naive": {
            "start": naive.resources.rss_start_mb,
            "peak": naive.resources.rss_peak_mb,
            "end": naive.resources.rss_end_mb,
        },
        "cpu_mean_pct": {k: r.resources.cpu_mean_pct for k, r in runs.items()},
    }


def _pool_block(url: str, redis_url: str, scale: str, seed: int) -> dict:
    sweep = sweep_pool_sizes(
        url,
        sizes=SWEEP_SIZES,
        flavor="cached",
        redis_url=redis_url,
        model=MODEL,
        rate_rps=RATE_RPS,
        users=USERS,
        processes=WORKERS,
        duration_s=STEP_S[scale],
        warmup_s=STEP_S[scale] / 3,
        seed=seed,
        n_boot=50,
    )
    ex = exhaustion(url, seed=seed)
    rows = sweep.rows.set_index("size")
    return {
        "pool": {
            "recommended_size": sweep.recommended_size,
            "p95_target_ms": sweep.p95_target_ms,
            "max_wait_target_ms": sweep.max_wait_target_ms,
            "connection_limit": sweep.connection_limit,
            "processes": sweep.processes,
            "rate_rps": RATE_RPS,
            "model": MODEL,
            "recommended_connections": (sweep.recommended_size or 0) * sweep.processes,
            "sweep": {
                str(s): {
                    "p95_ms": r["p95_ms"],
                    "p99_ms": r["p99_ms"],
                    "mean_wait_ms": r["mean_wait_ms"],
                    "p95_wait_ms": r["p95_wait_ms"],
                    "p99_wait_ms": r["p99_wait_ms"],
                    "max_wait_ms": r["max_wait_ms"],
                    "waits": int(r["waits"]),
                    "connections": int(r["connections"]),
                    "throughput_rps": r["throughput_rps"],
                    "errors": int(r["errors"]),
                }
                for s, r in rows.iterrows()
            },
        },
        "exhaustion": {
            "timeouts": ex.timeouts,
            "other_errors": ex.other_errors,
            "hung": ex.hung,
            "recovered": ex.recovered,
            "users": ex.users,
            "capacity": ex.config.capacity,
            "pool_timeout_s": ex.config.pool_timeout,
            "requests": ex.load.requests,
        },
    }


def _ingest_block(url: str, scale: str, seed: int) -> dict:
    engine = make_engine(url, pool_size=5, max_overflow=0)
    try:
        with tempfile.TemporaryDirectory(prefix="kit-ingest-") as tmp:
            paths = [
                generate_csv(Path(tmp) / f"f{i}.csv", rows=INGEST_ROWS[scale], seed=seed + i)
                for i in range(INGEST_FILES)
            ]
            frame = compare_ingest(engine, paths, chunk_sizes=CHUNK_SIZES, concurrencies=(1, 5), trials=3)
            big = generate_csv(Path(tmp) / "big.csv", target_bytes=BIG_FILE_BYTES, seed=seed)
            with ResourceSampler(interval_s=0.05) as sampler:
                load = ingest_files(engine, [big], chunk_size=1024 * 1024, concurrency=1, keep=False)
            s = sampler.summary
            assert s is not None  # set when the with block stopped the sampler
    finally:
        engine.dispose()
    by = {
        f"{c}": {r["chunk"]: r["rows_per_s"] for _, r in frame[frame["concurrency"] == c].iterrows()}
        for c in sorted(frame["concurrency"].unique())
    }
    return {
        "ingest": {
            "rows_per_s": by["5"],
            "rows_per_s_by_concurrency": by,
            "mb_per_s": {r["chunk"] + f" x{r['concurrency']}": r["mb_per_s"] for _, r in frame.iterrows()},
            "file_rows": INGEST_ROWS[scale],
            "files": INGEST_FILES,
            "big_file_mb": load.files[0].bytes / 2**20,
            "big_file_rows": load.rows,
            "big_file_rows_per_s": load.rows_per_s,
            "big_file_error": load.files[0].error,
            "rss_start_mb_100mb_file": s.rss_start_mb,
            "peak_rss_mb_100mb_file": s.rss_peak_mb,
            "rss_growth_mb_100mb_file": s.rss_peak_mb - s.rss_start_mb,
        }
    }


SCALES = bench.SCALES


def run(*, database_url: str, redis_url: str, scale: str, seed: int) -> dict:
    """Every figure of the load issue, measured in one run (see the module docstring)."""
    bench.seed_platform(database_url, scale=scale, seed=seed)
    if scale not in DURATION_S:
        raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(DURATION_S)}")
    out = {"scale": scale, "seed": seed}
    out.update(_load_block(database_url, redis_url, scale, seed))
    out.update(_pool_block(database_url, redis_url, scale, seed))
    out.update(_ingest_block(database_url, scale, seed))  # last: into the indexed table, as in production
    return out
