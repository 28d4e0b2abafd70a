"""``kit bench load``: 100 users on the naive vs fixed services, pool sweep, exhaustion, RSS, ingest.

Order matters and is part of the measurement: the naive run goes first on the database as the
audit found it (no secondary index); then the migration's indexes are applied and the fixed
services (batched + cached) run under the same production pool and the same load.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from kit.db.engine import make_engine
from kit.indexes.apply import apply_indexes
from kit.load import seed_endpoints
from kit.metrics import ResourceSampler
from kit.pool import PRODUCTION, exhaustion, seed_load, sweep_pool_sizes
from kit.services.ingest import CHUNK_SIZES, compare_ingest, generate_csv, ingest_files

USERS = 100
DURATION_S = {"tiny": 3.0, "demo": 20.0, "large": 30.0}
WARMUP_S = {"tiny": 1.0, "demo": 5.0, "large": 5.0}
SWEEP_SIZES = (2, 5, 10, 20, 50)
INGEST_FILES, INGEST_ROWS = 5, {"tiny": 5_000, "demo": 60_000, "large": 60_000}
BIG_FILE_BYTES = 110 * 2**20


def _load_block(url: str, redis_url: str, scale: str, seed: int) -> dict:
    common = {"users": USERS, "duration_s": DURATION_S[scale], "warmup_s": WARMUP_S[scale], "seed": seed,
              "progress": False}
    naive = seed_load(url, flavor="naive", config=PRODUCTION, **common)
    engine = make_engine(url)
    try:
        apply_indexes(engine, apply=True, progress=None, out=None)
    finally:
        engine.dispose()
    fixed = seed_load(url, flavor="cached", config=PRODUCTION, redis_url=redis_url, **common)
    runs = {"naive": naive, "fixed": fixed}
    return {
        "users": USERS,
        "duration_s": DURATION_S[scale],
        "p95_ms": {k: r.p95_ms for k, r in runs.items()},
        "p95_ci_ms": {k: list(r.latency_ms["p95"][1:]) for k, r in runs.items()},
        "p50_ms": {k: r.latency_ms["p50"][0] for k, r in runs.items()},
        "p99_ms": {k: r.latency_ms["p99"][0] for k, r in runs.items()},
        "p95_ratio": naive.p95_ms / fixed.p95_ms,
        "p95_wait_ms": {k: r.wait_quantile_ms(0.95) for k, r in runs.items()},
        "throughput_rps": {k: r.throughput_rps for k, r in runs.items()},
        "requests": {k: r.requests for k, r in runs.items()},
        "errors": {k: r.errors for k, r in runs.items()},
        "error_kinds": {k: r.error_kinds for k, r in runs.items()},
        "hung": {k: r.hung for k, r in runs.items()},
        "pool_measure": {k: r.pool["measure"] for k, r in runs.items()},
        "rss_mb": {"start": fixed.resources.rss_start_mb, "peak": fixed.resources.rss_peak_mb,
                   "end": fixed.resources.rss_end_mb},
        "rss_mb_naive": {"start": naive.resources.rss_start_mb, "peak": naive.resources.rss_peak_mb,
                         "end": naive.resources.rss_end_mb},
        "cpu_mean_pct": {k: r.resources.cpu_mean_pct for k, r in runs.items()},
    }


def _pool_block(url: str, redis_url: str, scale: str, seed: int) -> dict:
    engine = make_engine(url)
    try:
        with seed_endpoints(engine, flavor="cached", redis_url=redis_url) as endpoints:
            sweep = sweep_pool_sizes(url, endpoints, sizes=SWEEP_SIZES, users=USERS,
                                     duration_s=DURATION_S[scale] / 2, warmup_s=WARMUP_S[scale] / 2,
                                     seed=seed, progress=False, sample_resources=False)
    finally:
        engine.dispose()
    ex = exhaustion(url, seed=seed)
    rows = sweep.rows.set_index("size")
    return {
        "pool": {"recommended_size": sweep.recommended_size, "p95_target_ms": sweep.p95_target_ms,
                 "connection_limit": sweep.connection_limit,
                 "sweep": {str(s): {"p95_ms": r["p95_ms"], "p99_ms": r["p99_ms"], "mean_wait_ms": r["mean_wait_ms"],
                                    "p95_wait_ms": r["p95_wait_ms"], "max_wait_ms": r["max_wait_ms"], "waits": int(r["waits"]),
                                    "throughput_rps": r["throughput_rps"], "errors": int(r["errors"])}
                           for s, r in rows.iterrows()}},
        "exhaustion": {"timeouts": ex.timeouts, "other_errors": ex.other_errors, "hung": ex.hung,
                       "recovered": ex.recovered, "users": ex.users, "capacity": ex.config.capacity,
                       "pool_timeout_s": ex.config.pool_timeout, "requests": ex.load.requests},
    }


def _ingest_block(url: str, scale: str, seed: int) -> dict:
    engine = make_engine(url, pool_size=5, max_overflow=0)
    try:
        with tempfile.TemporaryDirectory(prefix="kit-ingest-") as tmp:
            paths = [generate_csv(Path(tmp) / f"f{i}.csv", rows=INGEST_ROWS[scale], seed=seed + i)
                     for i in range(INGEST_FILES)]
            frame = compare_ingest(engine, paths, chunk_sizes=CHUNK_SIZES, concurrencies=(1, 5), trials=3)
            big = generate_csv(Path(tmp) / "big.csv", target_bytes=BIG_FILE_BYTES, seed=seed)
            with ResourceSampler(interval_s=0.05) as sampler:
                load = ingest_files(engine, [big], chunk_size=1024 * 1024, concurrency=1, keep=False)
            s = sampler.summary
    finally:
        engine.dispose()
    by = {f"{c}": {r["chunk"]: r["rows_per_s"] for _, r in frame[frame["concurrency"] == c].iterrows()}
          for c in sorted(frame["concurrency"].unique())}
    return {"ingest": {"rows_per_s": by["5"], "rows_per_s_by_concurrency": by,
                       "mb_per_s": {r["chunk"] + f" x{r['concurrency']}": r["mb_per_s"] for _, r in frame.iterrows()},
                       "file_rows": INGEST_ROWS[scale], "files": INGEST_FILES,
                       "big_file_mb": load.files[0].bytes / 2**20, "big_file_rows": load.rows,
                       "big_file_rows_per_s": load.rows_per_s, "big_file_error": load.files[0].error,
                       "rss_start_mb_100mb_file": s.rss_start_mb, "peak_rss_mb_100mb_file": s.rss_peak_mb,
                       "rss_growth_mb_100mb_file": s.rss_peak_mb - s.rss_start_mb}}


def run(*, database_url: str, redis_url: str, scale: str, seed: int) -> dict:
    """Every figure of the load issue, measured in one run (see the module docstring)."""
    if scale not in DURATION_S:
        raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(DURATION_S)}")
    out = {"scale": scale, "seed": seed}
    out.update(_load_block(database_url, redis_url, scale, seed))
    out.update(_pool_block(database_url, redis_url, scale, seed))
    out.update(_ingest_block(database_url, scale, seed))  # last: into the indexed table, as in production
    return out
