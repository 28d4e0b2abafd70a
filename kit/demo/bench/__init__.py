"""Benchmarks on the demo platform (``kit bench NAME``): one module per NAME with ``run(...) -> dict``.

Each ``run(*, database_url, redis_url, scale, seed)`` receives a database already seeded at ``scale``
and returns a JSON-ready dict; both sides of every ratio are measured in the same run. ``faults`` and
``fleet`` build what they need themselves (``run(*, seed, home)``).
"""

from __future__ import annotations

from kit.db.engine import make_engine
from kit.demo import datagen

SCALES = tuple(sorted(datagen.SCALES, key=lambda s: s != "demo"))  # the demo scale first: the default


def seed_platform(database_url: str, *, scale: str, seed: int) -> datagen.SeedResult:
    """Seed the platform into the fresh database a benchmark was given."""
    engine = make_engine(database_url)
    try:
        return datagen.seed(engine, scale=scale, seed=seed)
    finally:
        engine.dispose()
