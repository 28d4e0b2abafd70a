"""Parameter values for a statement's ``$n``, drawn from the data: pg_stats' most common values
and histogram of the column each parameter is compared with, or a sample of the table when it
was never analyzed; values of several equality parameters on one table come from one real row,
so the combination exists (talks to PostgreSQL, read-only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from kit.indexes.advisor import TableInfo, table_info
from kit.sqltext.refs import References, Slot, references
from kit.workload.params import ColumnStats, choose, from_sample

STATS = """/* kit */
SELECT most_common_vals::text::text[], most_common_freqs, histogram_bounds::text::text[]
FROM pg_stats WHERE schemaname = %s AND tablename = %s AND attname = %s"""
_SAMPLE_ROWS = 200
_EQUALITY = {"=", "set", "values"}


@dataclass(frozen=True)
class Parameters:
    """Values for ``$1..$n`` as text (None: nothing says what it should be), and where each came from.

    The values are the user's data (a token, an e-mail): they stay in this process, never in a repr,
    a file or a message; what may be shown is ``sources`` (the column and the statistic)."""

    values: tuple[str | None, ...] = field(repr=False)
    sources: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return all(v is not None for v in self.values)

    def missing(self) -> list[int]:
        return [i + 1 for i, v in enumerate(self.values) if v is None]


def column_stats(conn: psycopg.Connection, table: TableInfo, column: str) -> ColumnStats:
    """pg_stats of one column; a sample of the table when there are none (never analyzed)."""
    try:
        row = conn.execute(STATS, [table.schema, table.name, column]).fetchone()
    except psycopg.Error:  # a type whose values do not cast to text[] cleanly
        row = None
    if row and (row[0] or row[2]):
        return ColumnStats(mcv=tuple(row[0] or ()), mcf=tuple(row[1] or ()), histogram=tuple(row[2] or ()))
    query = sql.SQL("/* kit */ SELECT {c}::text FROM {t} WHERE {c} IS NOT NULL LIMIT {n}").format(
        c=sql.Identifier(column), t=sql.Identifier(table.schema, table.name), n=sql.Literal(_SAMPLE_ROWS))
    try:
        return from_sample([r[0] for r in conn.execute(query).fetchall()])
    except psycopg.Error:
        return ColumnStats(source="sample")


def _owner(conn, refs: References, slot: Slot, cache: dict) -> TableInfo | None:
    """The table a slot's column belongs to (an unqualified column: the one table that has it)."""
    rel = refs.relation(slot.qualifier)
    candidates = [rel] if rel is not None else (list(refs.relations) if slot.qualifier is None else [])
    tables = [t for t in (table_info(conn, r, cache) for r in candidates) if t is not None]
    owners = [t for t in tables if slot.column in t.columns]
    return owners[0] if len(owners) == 1 else None


def _row_values(conn, table: TableInfo, first: str, value: str, others: list[str]) -> dict[str, str | None]:
    """Values of ``others`` in one row where ``first`` = ``value``: a combination that exists."""
    query = sql.SQL("/* kit */ SELECT {cols} FROM {t} WHERE {first} = %s LIMIT 1").format(
        cols=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in others),
        t=sql.Identifier(table.schema, table.name), first=sql.Identifier(first))
    try:
        row = conn.execute(query, [value]).fetchone()
    except psycopg.Error:
        return {}
    return dict(zip(others, row)) if row else {}


def sample_parameters(conn: psycopg.Connection, query: str, *, cache: dict | None = None) -> Parameters:
    """A value for every ``$n`` of ``query`` that the data can give (see the module docstring)."""
    refs = references(query)
    if refs is None:
        return Parameters((), ())
    cache = {} if cache is None else cache
    values: list[str | None] = [None] * refs.nparams
    sources = ["no column says what it is"] * refs.nparams
    stats: dict[tuple, ColumnStats] = {}
    in_rank: dict[tuple, int] = {}
    owners: dict[int, TableInfo] = {}
    for slot in refs.slots:
        owner = _owner(conn, refs, slot, cache) if slot.column else None
        col_stats = None
        if owner is not None:
            owners[slot.number] = owner
            key = (owner.schema, owner.name, slot.column)
            if key not in stats:
                stats[key] = column_stats(conn, owner, slot.column)
            col_stats = stats[key]
        rank = in_rank.get((owner, slot.column), 0) if slot.op == "in" else 0
        in_rank[(owner, slot.column)] = rank + 1
        value = choose(slot, col_stats, position=rank)
        if value is not None and slot.number <= len(values):
            values[slot.number - 1] = value
            sources[slot.number - 1] = (f"{owner.name}.{slot.column} ({col_stats.source}, {slot.op})" if owner
                                        else slot.op)
    _consistent_rows(conn, refs, values, sources, owners)
    return Parameters(tuple(values), tuple(sources))


def _consistent_rows(conn, refs: References, values: list, sources: list, owners: dict[int, TableInfo]) -> None:
    """Equality parameters on one table take their values from one row that has the first one."""
    by_table: dict[TableInfo, list[Slot]] = {}
    for slot in refs.slots:
        if slot.op in _EQUALITY and slot.number in owners and values[slot.number - 1] is not None:
            by_table.setdefault(owners[slot.number], []).append(slot)
    for table, slots in by_table.items():
        if len({s.column for s in slots}) < 2:
            continue
        slots.sort(key=lambda s: s.op != "=")  # a WHERE equality anchors the row, not a value being written
        first, rest = slots[0], [s for s in slots[1:] if s.column != slots[0].column]
        found = _row_values(conn, table, first.column, values[first.number - 1], [s.column for s in rest])
        for s in rest:
            if found.get(s.column) is not None:
                values[s.number - 1] = found[s.column]
                sources[s.number - 1] = f"{table.name}.{s.column} (the row of {first.column} = $" \
                                        f"{first.number})"
