"""Connection pools in SQLAlchemy terms: the seed's two configurations, an engine that follows one,
and how many connections the server allows (talks to PostgreSQL). :mod:`kit.demo.load.pool` maps the
seed's r2d2/sqlx knobs to these and runs its scenarios on them."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

from sqlalchemy import Engine, create_engine, text

from kit.config import normalize_database_url
from kit.demo.load.mix import LOAD_APPLICATION_NAME


@dataclass(frozen=True)
class PoolConfig:
    """One pool configuration in SQLAlchemy terms (see the module docstring for the mapping)."""

    name: str
    pool_size: int
    max_overflow: int = 0
    pool_timeout: float = 30.0
    min_idle: int = 0
    pre_ping: bool = False
    recycle_s: int = -1

    @property
    def capacity(self) -> int:
        return self.pool_size + self.max_overflow

    def with_size(self, size: int, *, name: str | None = None) -> PoolConfig:
        return replace(self, name=name or f"size {size}", pool_size=size, min_idle=min(self.min_idle, size))


# r2d2: max_size(20), min_idle(5), connection_timeout(30 s), test_on_check_out(true)
PRODUCTION = PoolConfig("production", pool_size=20, pool_timeout=30.0, min_idle=5, pre_ping=True)
# performance.rs optimized_for_reconciliation(): max 50, min 10, connection_timeout 10 s,
# max_lifetime 30 min (acquire_timeout 5 s is sqlx's own retry budget; the brief's 10 s is kept)
OPTIMIZED = PoolConfig("optimized", pool_size=50, pool_timeout=10.0, min_idle=10, recycle_s=1800)
SEED_CONFIGS = (PRODUCTION, OPTIMIZED)


def make_pool_engine(url: str, config: PoolConfig) -> Engine:
    """An engine whose QueuePool follows ``config``, with ``config.min_idle`` connections opened."""
    engine = create_engine(
        normalize_database_url(url),
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        pool_timeout=config.pool_timeout,
        pool_pre_ping=config.pre_ping,
        pool_recycle=config.recycle_s,
        connect_args={"connect_timeout": 5, "application_name": LOAD_APPLICATION_NAME},
    )
    prewarm(engine, config.min_idle)
    return engine


def prewarm(engine: Engine, count: int) -> None:
    """Open ``count`` connections at once and return them to the pool (r2d2's ``min_idle``)."""
    with contextlib.ExitStack() as stack:
        for _ in range(count):
            stack.enter_context(engine.connect())


MAX_CONNECTIONS = (
    "SELECT /* kit */ current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int"
)


def server_connection_limit(engine: Engine, *, headroom: float = 0.2) -> int:
    """How many connections one application may open: ``max_connections`` less the superuser
    reserve, less ``headroom`` of it for other clients, migrations and psql sessions."""
    with engine.connect() as conn:
        max_conn, reserved = conn.execute(text(MAX_CONNECTIONS)).one()
    return int((max_conn - reserved) * (1.0 - headroom))
