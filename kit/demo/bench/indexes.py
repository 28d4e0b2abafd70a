"""Benchmark: the 23 indexes' representative queries before and after a real apply (talks to
PostgreSQL). Both sides are measured in the same run, with warm-up and repeated trials."""

from __future__ import annotations

import statistics
import time

from kit.db.engine import make_engine
from kit.demo import bench
from kit.indexes.apply import apply_indexes
from kit.indexes.verify import measure, verify

SCALES = bench.SCALES


def run(*, database_url: str, redis_url: str, scale: str, seed: int, warmup: int = 3, repeats: int = 9) -> dict:
    """Measure, apply, measure again; one entry per index plus the totals the issue asks for."""
    bench.seed_platform(database_url, scale=scale, seed=seed)
    del redis_url
    engine = make_engine(database_url)
    try:
        before = measure(engine, warmup=warmup, repeats=repeats, settle_s=0)
        started = time.monotonic()
        applied = apply_indexes(engine, apply=True, progress=None, out=None, sample_s=0)
        apply_seconds = time.monotonic() - started
        after = measure(engine, params=before, warmup=warmup, repeats=repeats)
        frame = verify(engine, before, after).to_frame()
    finally:
        engine.dispose()
    entries = [
        {
            "name": r.name,
            "used": bool(r.used),
            "exec_ms_before": r.exec_ms_before,
            "exec_ms_after": r.exec_ms_after,
            "speedup": r.speedup,
            "reason": r.reason,
            "p95_ms_before": r.p95_ms_before,
            "p95_ms_after": r.p95_ms_after,
            "idx_scan_delta": None if r.idx_scan_delta is None else int(r.idx_scan_delta),
        }
        for r in frame.itertuples()
    ]
    used = [e for e in entries if e["used"] and e["speedup"]]
    return {
        "scale": scale,
        "indexes": entries,
        "indexes_total": len(entries),
        "indexes_used": sum(e["used"] for e in entries),
        "median_speedup": statistics.median(e["speedup"] for e in used) if used else None,
        "used_with_10x": sum(1 for e in used if e["speedup"] >= 10),
        "apply_seconds": round(apply_seconds, 3),
        "apply_failed": applied.failed,
        "warmup": warmup,
        "repeats": repeats,
    }
