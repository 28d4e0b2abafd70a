"""Deterministic synthetic data for the seed platform at named scales (talks to PostgreSQL).

Every row is made on the server by ``INSERT ... SELECT ... FROM generate_series(lo, hi)``, in
chunks so a progress bar can move. Every pseudo-random value is a hash of (row number, seed,
column salt) mapped to [0, 1) by ``pg_temp.kit_u``, never ``random()``: the same seed gives the
same rows whatever the plan, chunking or parallelism. Ids are the row numbers themselves.

A value that depends on another table's row (a job's project, that project's creation time,
its owner) is recomputed from the same formula instead of read back with a join, so children
agree with parents: a job is created after its project, a record's project is its data
source's project, most jobs are started by the project's owner. Records come in pairs seen by
two data sources of one project (same external id, amount, date), so reconciliation matches.

Loading follows PostgreSQL's "populating a database" advice: keys and indexes are set aside
and rebuilt afterwards, all inside the one transaction that also truncates.

Shapes follow the seed platform: about 20 jobs per project on average with a long tail
(the busiest projects have hundreds), a few owners with many projects, ~3 data sources per
project, mostly completed jobs, ~90% active users, two years of history (2023-2024, UTC).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields

import pandas as pd
from psycopg import sql
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError
from tqdm.auto import tqdm

from kit.demo.schema import DATA_DIR, META_TABLE, TABLES, create_schema, restore_keys, set_aside_keys
from kit.errors import KitError


@dataclass(frozen=True)
class Scale:
    """Row counts of one named data set, one field per table of :data:`kit.demo.schema.TABLES`."""

    name: str
    users: int
    projects: int
    data_sources: int
    reconciliation_jobs: int
    reconciliation_records: int
    reconciliation_results: int
    reconciliation_matches: int
    uploaded_files: int
    audit_logs: int
    user_activity_logs: int

    def __post_init__(self) -> None:
        counts = self.rows
        if any(n < 1 for n in counts.values()):
            raise ValueError(f"scale {self.name!r}: every table needs at least one row, got {counts}")
        # every project owns data sources 2p-1 and 2p; records come in pairs (2k-1, 2k)
        if self.data_sources < 2 * self.projects or self.reconciliation_records % 2:
            raise ValueError(
                f"scale {self.name!r}: needs data_sources >= 2 * projects and an even number of reconciliation_records"
            )

    @property
    def rows(self) -> dict[str, int]:
        """Declared rows per table, in dependency order."""
        return {t: getattr(self, t) for t in TABLES}

    @property
    def rows_total(self) -> int:
        return sum(self.rows.values())

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"table": list(self.rows), "rows": list(self.rows.values())})


def _scale(name: str, factor: int, users: int) -> Scale:
    # Ratios shared by every scale: 20 jobs and 3 data sources per project, as many records
    # and results as jobs, half as many matches and log rows, 2 files per project.
    projects = 5 * factor
    return Scale(
        name=name,
        users=users,
        projects=projects,
        data_sources=3 * projects,
        reconciliation_jobs=20 * projects,
        reconciliation_records=20 * projects,
        reconciliation_results=20 * projects,
        reconciliation_matches=10 * projects,
        uploaded_files=2 * projects,
        audit_logs=10 * projects,
        user_activity_logs=10 * projects,
    )


SCALES: dict[str, Scale] = {
    "tiny": _scale("tiny", 60, users=200),  # 300 projects, 6,000 jobs: ~0.3 s
    "demo": _scale("demo", 10_000, users=20_000),  # 50,000 projects, 1,000,000 jobs
    "large": _scale("large", 100_000, users=200_000),  # 10x demo, for benchmarks
}

CHUNK_ROWS = 250_000  # rows per INSERT statement; only moves the progress bars


@dataclass(frozen=True)
class TableLoad:
    """Rows loaded into one table and the time it took."""

    rows: int
    seconds: float


@dataclass(frozen=True)
class SeedResult:
    """What :func:`seed` loaded. ``seconds`` is the whole call (schema, truncate, load, keys,
    ANALYZE); a table's own ``seconds`` is its INSERTs only."""

    scale: str
    seed: int
    seconds: float
    tables: dict[str, TableLoad]

    @property
    def rows_total(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def rows_per_s(self) -> float:
        return self.rows_total / self.seconds if self.seconds > 0 else 0.0

    def to_frame(self) -> pd.DataFrame:
        """One row per table: ``table, rows, seconds, rows_per_s``."""
        return pd.DataFrame(
            [
                (name, t.rows, t.seconds, t.rows / t.seconds if t.seconds > 0 else 0.0)
                for name, t in self.tables.items()
            ],
            columns=["table", "rows", "seconds", "rows_per_s"],
        )

    def to_dict(self) -> dict[str, object]:
        """The benchmark JSON shape: ``{scale, rows_total, seconds, rows_per_s, tables}``."""
        return {
            "scale": self.scale,
            "rows_total": self.rows_total,
            "seconds": self.seconds,
            "rows_per_s": self.rows_per_s,
            "tables": {name: asdict(t) for name, t in self.tables.items()},
        }


def get_scale(scale: str) -> Scale:
    """The :class:`Scale` called ``scale``; ``ValueError`` naming the valid ones otherwise."""
    try:
        return SCALES[scale]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(map(repr, SCALES))}") from None


# The generation SQL lives in data/datagen/: helpers.sql (functions in pg_temp, gone with the
# session) and one INSERT ... SELECT per table, named after it, with %(seed)s, %(lo)s, %(hi)s and
# %(n_<table>)s parameters. Each level of a statement is OFFSET 0 (never flattened into the next)
# so every value is computed once per row. Salts: 1-9 users, 11-19 projects, 21-29 data_sources,
# 30-39 jobs, 41-49 records, 51-59 results, 61-69 matches, 71-79 files, 81-89 audit, 91-99 activity.
GENERATION_DIR = DATA_DIR / "datagen"


def _generation_sql(name: str) -> str:
    return (GENERATION_DIR / f"{name}.sql").read_text(encoding="utf-8")


def _params(scale: Scale, seed: int, lo: int, hi: int) -> dict[str, int]:
    counts = {f"n_{f.name}": getattr(scale, f.name) for f in fields(scale) if f.name != "name"}
    return {"seed": seed, "lo": lo, "hi": hi, **counts}


def _render(conn: Connection, stmt: sql.Composable) -> str:
    return stmt.as_string(conn.connection.driver_connection)


SET_LOCAL = "SELECT /* kit */ set_config(%(name)s, %(value)s, true)"


def _configure(conn: Connection, lock_timeout_ms: int) -> None:
    # TRUNCATE waits for every session using the tables: fail with advice instead of hanging.
    # JIT compiles each chunk's expressions for nothing; a generic plan (psycopg prepares a
    # statement run 5 times) would hash the seed again on every row; memory lets keys build
    # in one sort.
    settings = {
        "lock_timeout": str(int(lock_timeout_ms)),
        "jit": "off",
        "plan_cache_mode": "force_custom_plan",
        "work_mem": "64MB",
        "maintenance_work_mem": "256MB",
    }
    for name, value in settings.items():
        conn.exec_driver_sql(SET_LOCAL, {"name": name, "value": value})


def _truncate(conn: Connection) -> None:
    stmt = sql.SQL("TRUNCATE /* kit */ {} RESTART IDENTITY CASCADE").format(
        sql.SQL(", ").join(map(sql.Identifier, TABLES))
    )
    conn.exec_driver_sql(_render(conn, stmt))


SET_IDENTITY = "SELECT /* kit */ setval(pg_get_serial_sequence(quote_ident(%(table)s), 'id'), %(last)s)"


def _load_table(conn: Connection, table: str, scale: Scale, seed: int, bar: tqdm) -> TableLoad:
    """Insert ``scale``'s rows into ``table`` chunk by chunk; ids are 1..n."""
    n = scale.rows[table]
    statement = _generation_sql(table)
    started = time.perf_counter()
    for lo in range(1, n + 1, CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS - 1, n)
        conn.exec_driver_sql(statement, _params(scale, seed, lo, hi))
        bar.update(hi - lo + 1)
    # Ids were given explicitly (OVERRIDING SYSTEM VALUE): move the identity past them so
    # the application's own inserts keep working.
    conn.exec_driver_sql(SET_IDENTITY, {"table": table, "last": n})
    return TableLoad(rows=n, seconds=time.perf_counter() - started)


SAVE_META = """
INSERT /* kit */ INTO kit_meta (key, value)
VALUES ('scale', %(scale)s), ('seed', %(seed)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
"""


def seed(
    engine: Engine,
    *,
    scale: str = "demo",
    seed: int = 42,
    progress: bool = True,
    lock_timeout_ms: int = 10_000,
) -> SeedResult:
    """Replace the platform's data with the ``scale`` data set made from ``seed``.

    All in one transaction, so other sessions see the old data or the new, never a mix:

    1. create the schema if it is missing;
    2. set aside keys and indexes (PostgreSQL's bulk-load advice; the same ones come back);
    3. truncate the ten tables (RESTART IDENTITY CASCADE);
    4. load them in dependency order, one progress bar per table;
    5. rebuild primary keys and indexes, ANALYZE, validate foreign keys;
    6. record scale and seed in ``kit_meta``.
    """
    spec = get_scale(scale)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not -(2**63) <= seed < 2**63:
        raise ValueError(f"seed must fit in a bigint (-2**63 .. 2**63-1), got {seed}")
    started = time.perf_counter()
    loads: dict[str, TableLoad] = {}
    try:
        with engine.begin() as conn:
            _configure(conn, lock_timeout_ms)
            create_schema(conn)
            conn.exec_driver_sql(_generation_sql("helpers"))
            aside = set_aside_keys(conn)
            _truncate(conn)
            for table in TABLES:
                with tqdm(
                    total=spec.rows[table],
                    desc=table,
                    unit="rows",
                    unit_scale=True,
                    disable=not progress,
                ) as bar:
                    loads[table] = _load_table(conn, table, spec, seed, bar)
            restore_keys(conn, aside, analyze=True)
            conn.exec_driver_sql(SAVE_META, {"scale": spec.name, "seed": str(seed)})
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise KitError(
                f"seeding waited more than {lock_timeout_ms} ms for a lock on the platform's "
                "tables: another session is using them (an open notebook transaction?). "
                "Commit or close it, then seed again."
            ) from exc
        raise
    return SeedResult(scale=spec.name, seed=seed, seconds=time.perf_counter() - started, tables=loads)


READ_META = "SELECT /* kit */ key, value FROM kit_meta WHERE key IN ('scale', 'seed')"
META_EXISTS = "SELECT /* kit */ to_regclass(quote_ident(%(table)s)) IS NOT NULL"


def seeded_scale(conn: Connection) -> tuple[str, int] | None:
    """``(scale, seed)`` of the last :func:`seed`, or None when never seeded."""
    if not conn.exec_driver_sql(META_EXISTS, {"table": META_TABLE}).scalar_one():
        return None
    meta: dict[str, str] = dict(conn.exec_driver_sql(READ_META).all())
    if "scale" not in meta or "seed" not in meta:
        return None
    return meta["scale"], int(meta["seed"])
