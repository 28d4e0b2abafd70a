"""``kit demo`` as a library call: start the throwaway servers, build the demo database in its
"before" state, run the notebooks on it (talks to both servers; starts them when needed).

    result = demo.run(scale="tiny", users=4, seconds=1.0, runs_dir=Path("runs"), say=print)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from kit import indexes
from kit.config import DATABASE_ENV, REDIS_ENV, kit_home, mask_url
from kit.db.engine import make_engine
from kit.demo import datagen
from kit.demo.load.pool import seed_load
from kit.demo.load.stats import LoadResult
from kit.errors import ConfigError
from kit.fixes.apply import loop_created
from kit.runs import runner
from kit.servers import local
from kit.servers.state import Server


def _quiet(_line: str) -> None:
    pass


def prepare(
    *, scale: str = "demo", seed: int = 42, home: Path | None = None, say: Callable[[str], None] = _quiet
) -> dict[str, Server]:
    """The kit's servers up, the demo database seeded at ``scale`` (unless it already is) and reset to
    its "before" state: none of the migration's 23 indexes, none the fixes loop created."""
    if scale not in datagen.SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(datagen.SCALES)}")
    servers = local.up(home=home or kit_home())
    for srv in servers.values():
        say(f"{srv.kind:<9} pid {srv.pid:<7} {mask_url(srv.url)}  ({srv.engine})")
        if srv.notes:
            say(f"          note: {srv.notes}")
    engine = make_engine(servers["postgres"].url)
    try:
        with engine.connect() as conn:
            seeded = datagen.seeded_scale(conn)
        if seeded == (scale, seed):
            say(f"demo database already seeded at scale {scale} (seed {seed})")
        else:
            say(f"seeding the demo database at scale {scale} ...")
            result = datagen.seed(engine, scale=scale, seed=seed)
            say(f"{result.rows_total:,} rows in {result.seconds:.1f} s")
        if dropped := indexes.drop_indexes(engine) + indexes.drop_indexes(engine, loop_created(engine)):
            say(f"reset the demo database: dropped {len(dropped)} index(es) a previous run applied")
    finally:
        engine.dispose()
    return servers


WORKLOAD_RATE_RPS = 40.0  # requests per second of the endpoint mix driven before the audit
WORKLOAD_MIN_S = 6.0


def drive(url: str, *, users: int, seconds: float, processes: int, say: Callable[[str], None] = _quiet) -> LoadResult:
    """The platform's endpoint mix on its naive services (Locust, open model) against the freshly
    reset database, so that the audit (01) reads a workload from pg_stat_statements — the
    application's statements with their calls — as it would on a database in use."""
    duration = max(seconds, WORKLOAD_MIN_S)
    say(
        f"driving the platform's endpoint mix for {duration:.0f} s at {WORKLOAD_RATE_RPS:.0f} req/s, so 01 audits a workload ..."
    )
    result = seed_load(
        url,
        flavor="naive",
        model="open",
        rate_rps=WORKLOAD_RATE_RPS,
        users=users,
        processes=processes,
        duration_s=duration,
        warmup_s=0.5,
    )
    failed = result.errors - result.unfinished
    say(
        f"{result.requests:,} requests: {result.requests - result.errors:,} finished, {result.unfinished:,} still "
        f"running at the end (the naive services before the fixes are slow), {failed:,} failed"
    )
    return result


def run(
    *,
    scale: str = "demo",
    seed: int = 42,
    runs_dir: Path = Path("runs"),
    users: int = 100,
    seconds: float = 3.0,
    processes: int = 2,
    home: Path | None = None,
    say: Callable[[str], None] = _quiet,
) -> runner.RunResult:
    """:func:`prepare`, then the three notebooks on the demo database with the fixes applied (the
    kit's own database: ``apply`` is on)."""
    servers = prepare(scale=scale, seed=seed, home=home, say=say)
    drive(servers["postgres"].url, users=users, seconds=seconds, processes=processes, say=say)
    os.environ[DATABASE_ENV[0]] = servers["postgres"].url  # the kernels inherit them; never parameters
    os.environ[REDIS_ENV[0]] = servers["redis"].url
    params = {"scale": scale, "apply": True, "load_users": users, "load_seconds": seconds, "load_processes": processes}
    return runner.run(parameters=params, runs_dir=runs_dir)
