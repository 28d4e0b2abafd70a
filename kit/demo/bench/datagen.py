"""``kit bench datagen``: seeding the platform into a fresh database, timed (talks to PostgreSQL)."""

from __future__ import annotations

from typing import Any

from kit.demo import bench

SCALES = bench.SCALES


def run(*, database_url: str, redis_url: str, scale: str, seed: int) -> dict[str, Any]:
    del redis_url
    return bench.seed_platform(database_url, scale=scale, seed=seed).to_dict()
