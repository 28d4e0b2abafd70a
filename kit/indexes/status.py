"""Each declared index against the live database: applied, missing, invalid, differs, extra
(talks to PostgreSQL, read-only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import pandas as pd
from sqlalchemy import Engine, text

from kit.db.seeded import seeded
from kit.errors import ConfigError
from kit.indexes.spec import IndexSpec, parse_indexdef, parse_migration

# Plain strings typed as literals: the bundle, the frames and the notebooks hold these values.
IndexState = Literal["applied", "missing", "invalid", "differs", "extra", "no table"]
APPLIED: Final = "applied"
MISSING: Final = "missing"
INVALID: Final = "invalid"
DIFFERS: Final = "differs"
EXTRA: Final = "extra"
NO_TABLE: Final = "no table"
_REMEDY: dict[IndexState, str] = {
    MISSING: "kit.indexes.apply_indexes(engine, apply=True) creates it CONCURRENTLY",
    INVALID: "a failed concurrent build: apply_indexes(engine, apply=True) drops it CONCURRENTLY and rebuilds",
    DIFFERS: "same name, other definition: DROP INDEX CONCURRENTLY it, then apply; or fix the migration",
    EXTRA: "declared nowhere: add it to the migration, or drop it if audit.unused_indexes lists it",
    NO_TABLE: "the table does not exist: create the schema first, or fix the migration",
    APPLIED: "",
}


def default_specs(engine: Engine) -> tuple[IndexSpec, ...]:
    """The indexes declared by the migration of the application the kit built into this database
    (:mod:`kit.db.seeded`); any other database declares none the kit could know: pass its specs."""
    with engine.connect() as conn:
        migration = seeded(conn).migration
    if migration is None:
        raise ConfigError(
            "this database declares no index migration the kit knows: pass the indexes (specs) or your migrations"
        )
    return parse_migration(migration)


@dataclass(frozen=True)
class LiveIndex:
    schema: str
    table: str
    name: str
    indexdef: str
    valid: bool
    constraint: bool  # backs a PRIMARY KEY / UNIQUE / EXCLUDE constraint
    size_bytes: int
    idx_scan: int | None


LIVE_INDEXES = """SELECT /* kit */ n.nspname AS schema, t.relname AS "table", i.relname AS name,
       pg_get_indexdef(i.oid) AS indexdef, x.indisvalid AND x.indisready AS valid,
       EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid) AS constraint,
       pg_relation_size(i.oid) AS size_bytes, s.idx_scan
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.oid
WHERE n.nspname = ANY(:schemas)
ORDER BY 1, 2, 3"""


def live_indexes(conn, *, schemas: list[str]) -> list[LiveIndex]:
    """Every index of the tables in ``schemas``, valid or not."""
    rows = conn.execute(text(LIVE_INDEXES), {"schemas": list(schemas)}).mappings()
    return [LiveIndex(**r) for r in rows]


TABLES = """SELECT /* kit */ n.nspname AS schema, c.relname AS "table"
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(:schemas)"""


def tables_in(conn, *, schemas: list[str]) -> set[tuple[str, str]]:
    return {(r.schema, r.table) for r in conn.execute(text(TABLES), {"schemas": list(schemas)})}


@dataclass(frozen=True)
class StatusRow:
    name: str
    table: str
    state: IndexState
    expected: str | None
    live: str | None
    size_bytes: int | None
    idx_scan: int | None
    remediation: str


@dataclass(frozen=True)
class IndexStatus:
    """The state of every declared index, plus the extra ones nobody declared."""

    rows: tuple[StatusRow, ...]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.__dict__ for r in self.rows], columns=list(StatusRow.__dataclass_fields__))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {s: 0 for s in (APPLIED, MISSING, INVALID, DIFFERS, NO_TABLE, EXTRA)}
        for r in self.rows:
            out[r.state] += 1
        return out

    def names(self, *states: IndexState) -> list[str]:
        return [r.name for r in self.rows if r.state in states]

    def state_of(self, name: str) -> IndexState:
        return next(r.state for r in self.rows if r.name == name)


def classify(spec: IndexSpec, live: LiveIndex | None, *, table_exists: bool) -> IndexState:
    """The state of one declared index given the live index of the same name (if any)."""
    if not table_exists:
        return NO_TABLE
    if live is None:
        return MISSING
    if not live.valid:
        return INVALID
    same = live.table == spec.table and parse_indexdef(live.indexdef).signature() == spec.signature()
    return APPLIED if same else DIFFERS


def index_status(engine: Engine, specs: tuple[IndexSpec, ...] | list[IndexSpec] | None = None) -> IndexStatus:
    """Compare ``specs`` (default: the migration the kit seeded, :func:`default_specs`) with the live database, read-only."""
    specs = tuple(specs) if specs is not None else default_specs(engine)
    schemas = sorted({s.schema for s in specs}) or ["public"]
    with engine.connect() as conn:
        live = live_indexes(conn, schemas=schemas)
        tables = tables_in(conn, schemas=schemas)
        conn.rollback()
    by_name = {(i.schema, i.name): i for i in live}
    declared_tables = {(s.schema, s.table) for s in specs}
    rows = []
    for spec in specs:
        found = by_name.get((spec.schema, spec.name))
        state = classify(spec, found, table_exists=(spec.schema, spec.table) in tables)
        rows.append(
            StatusRow(
                spec.name,
                spec.table,
                state,
                spec.definition,
                found.indexdef if found else None,
                found.size_bytes if found else None,
                found.idx_scan if found else None,
                _REMEDY[state],
            )
        )
    declared = {(s.schema, s.name) for s in specs}
    for idx in live:
        if (idx.schema, idx.name) in declared or idx.constraint:
            continue
        if (idx.schema, idx.table) not in declared_tables:
            continue  # only the tables the migration is about
        rows.append(
            StatusRow(idx.name, idx.table, EXTRA, None, idx.indexdef, idx.size_bytes, idx.idx_scan, _REMEDY[EXTRA])
        )
    return IndexStatus(rows=tuple(rows))
