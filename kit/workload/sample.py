"""Parameter values for a statement's ``$n``, drawn from the data: pg_stats' most common values
and histogram of the column each parameter is compared with, or a sample of the table when it
was never analyzed; values of several equality parameters on one table come from one real row,
so the combination exists (talks to PostgreSQL, read-only).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from kit.indexes.advisor import TableInfo, table_info
from kit.sqltext.refs import References, Slot, references
from kit.sqltext.retype import contexts
from kit.workload.params import (
    MAGNITUDES,
    PAGE_DEPTHS,
    PAGE_SIZES,
    ColumnStats,
    by_type,
    choose,
    equality_options,
    from_sample,
    guessed_number,
    is_lower,
    is_upper,
    like_options,
    range_options,
)

STATS = """SELECT /* kit */ most_common_vals::text::text[], most_common_freqs, histogram_bounds::text::text[], n_distinct, null_frac
FROM pg_stats WHERE schemaname = %s AND tablename = %s AND attname = %s"""
PARAM_TYPES = "SELECT /* kit */ parameter_types::text[] FROM pg_prepared_statements WHERE name = 'kit_sample'"
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
        return ColumnStats(
            mcv=tuple(row[0] or ()),
            mcf=tuple(row[1] or ()),
            histogram=tuple(row[2] or ()),
            n_distinct=row[3],
            null_frac=float(row[4] or 0.0),
        )
    query = sql.SQL("SELECT /* kit */ {c}::text FROM {t} WHERE {c} IS NOT NULL LIMIT {n}").format(
        c=sql.Identifier(column), t=sql.Identifier(table.schema, table.name), n=sql.Literal(_SAMPLE_ROWS)
    )
    try:
        return from_sample([r[0] for r in conn.execute(query).fetchall()])
    except psycopg.Error:
        return ColumnStats(source="sample")


def _owner(conn, refs: References, slot: Slot, cache: dict) -> TableInfo | None:
    """The table a slot's column belongs to: the nearest query level where exactly one table has it
    (an unqualified column in a subquery may be the outer query's: a correlated reference)."""
    for level in refs.levels(slot):
        tables = list(dict.fromkeys(t for t in (table_info(conn, r, cache) for r in level) if t is not None))
        owners = [t for t in tables if slot.column in t.columns]
        if owners:
            return owners[0] if len(owners) == 1 else None
    return None


def _column(slot: Slot) -> str:
    """The column of a slot the data described: only a slot with a column has an owner and statistics."""
    if slot.column is None:
        raise ValueError(f"${slot.number} is compared with no column")
    return slot.column


def _row_values(conn, table: TableInfo, first: str, value: str, others: list[str]) -> dict[str, str | None]:
    """Values of ``others`` in one row where ``first`` = ``value``: a combination that exists."""
    query = sql.SQL("SELECT /* kit */ {cols} FROM {t} WHERE {first} = %s LIMIT 1").format(
        cols=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in others),
        t=sql.Identifier(table.schema, table.name),
        first=sql.Identifier(first),
    )
    try:
        row = conn.execute(query, [value]).fetchone()
    except psycopg.Error:
        return {}
    return dict(zip(others, row, strict=False)) if row else {}


@dataclass
class _Drawn:
    """What drawing the values of one statement found: per slot number, its table and its column's statistics."""

    refs: References
    values: list[str | None]
    sources: list[str]
    owners: dict[int, TableInfo]
    stats: dict[int, ColumnStats]


def _draw(conn: psycopg.Connection, query: str, cache: dict) -> _Drawn | None:
    refs = references(query)
    if refs is None:
        return None
    drawn = _Drawn(refs, [None] * refs.nparams, ["no column says what it is"] * refs.nparams, {}, {})
    by_column: dict[tuple, ColumnStats] = {}
    in_rank: dict[tuple, int] = {}
    for slot in refs.slots:
        owner = _owner(conn, refs, slot, cache) if slot.column else None
        col_stats, source = None, slot.op
        if owner is not None and slot.column:  # an owner is found for a slot's column only
            drawn.owners[slot.number] = owner
            key = (owner.schema, owner.name, slot.column)
            if key not in by_column:
                by_column[key] = column_stats(conn, owner, slot.column)
            col_stats = drawn.stats[slot.number] = by_column[key]
            source = f"{owner.name}.{slot.column} ({col_stats.source}, {slot.op})"
        rank = in_rank.get((owner, slot.column), 0) if slot.op == "in" else 0
        in_rank[(owner, slot.column)] = rank + 1
        value = choose(slot, col_stats, position=rank)
        if value is not None and slot.number <= len(drawn.values):
            drawn.values[slot.number - 1] = value
            drawn.sources[slot.number - 1] = source
    _consistent_rows(conn, refs, drawn.values, drawn.sources, drawn.owners)
    if None in drawn.values:
        _by_type(conn, query, drawn)
    return drawn


def param_types(conn: psycopg.Connection, query: str) -> list[str | None]:
    """The type PostgreSQL infers for each ``$n`` of ``query`` (PREPARE, read, DEALLOCATE); [] when it
    cannot be prepared."""
    try:
        conn.execute(sql.SQL("PREPARE /* kit */ kit_sample AS {}").format(sql.SQL(query)))
    except psycopg.Error:
        return []
    try:
        row = conn.execute(PARAM_TYPES).fetchone()
        return list(row[0]) if row and row[0] else []
    finally:
        conn.execute("DEALLOCATE /* kit */ kit_sample")


def _by_type(conn: psycopg.Connection, query: str, drawn: _Drawn) -> None:
    """Values for the parameters no column describes (``$1 - l_discount``, ``interval $3 month``, the
    field of ``extract``), from their type and their part in an expression — each a guess, said so."""
    types, ctx = param_types(conn, query), contexts(query)
    for i, value in enumerate(drawn.values):
        if value is not None:
            continue
        n = i + 1
        here = ctx.get(n)
        found = by_type(
            types[i] if i < len(types) else None, role=here.role if here else "", cast=here.cast if here else None
        )
        if found is not None:
            drawn.values[i], drawn.sources[i] = found


def sample_parameters(conn: psycopg.Connection, query: str, *, cache: dict | None = None) -> Parameters:
    """A value for every ``$n`` of ``query`` that the data can give (see the module docstring)."""
    drawn = _draw(conn, query, {} if cache is None else cache)
    return Parameters((), ()) if drawn is None else Parameters(tuple(drawn.values), tuple(drawn.sources))


def parameter_candidates(
    conn: psycopg.Connection, query: str, *, cache: dict | None = None, limit: int = 24
) -> tuple[Parameters, ...]:
    """:func:`sample_parameters`' values first, then variants of them among which the measurement picks
    the one that looks like the workload: an equality on a column with most common values tries
    values of other frequencies (the table's other equalities from a row that has each), a range
    tries windows of other widths (:func:`~kit.workload.params.range_options`), a LIKE patterns made of
    its value's words. One decision varied at a time first, then several together, up to ``limit``."""
    drawn = _draw(conn, query, {} if cache is None else cache)
    if drawn is None:
        return (Parameters((), ()),)
    base = Parameters(tuple(drawn.values), tuple(drawn.sources))
    decisions = (
        _equality_decisions(conn, drawn)
        + _range_decisions(drawn)
        + _like_decisions(drawn)
        + _magnitude_decisions(drawn)
        + _paging_decisions(drawn)
    )
    out = [base]
    for choice in itertools.islice(_varied(decisions), limit - 1):
        values, sources = list(drawn.values), list(drawn.sources)
        for decision, pick in zip(decisions, choice, strict=False):
            for number, value, source in decision[pick]:
                values[number - 1], sources[number - 1] = value, source
        out.append(Parameters(tuple(values), tuple(sources)))
    return tuple(out)


def _varied(decisions: list[_Decision]):
    """Picks (one option per decision, 0 the base) that vary one decision, then two together, ..."""
    for size in range(1, len(decisions) + 1):
        for varied in itertools.combinations(range(len(decisions)), size):
            for picks in itertools.product(*[range(1, len(decisions[i])) for i in varied]):
                choice = [0] * len(decisions)
                for i, pick in zip(varied, picks, strict=False):
                    choice[i] = pick
                yield tuple(choice)


# a decision: its options, each a list of (slot number, value, source); option 0 keeps the base values
_Decision = list[list[tuple[int, str | None, str]]]


def _equality_decisions(conn: psycopg.Connection, drawn: _Drawn) -> list[_Decision]:
    """Per table, the values of its skewed equality column tried at other frequencies; the table's
    other equalities then take their values from one row that has it (a combination that exists)."""
    per_table: dict[TableInfo, list[Slot]] = {}
    for slot in drawn.refs.slots:
        if slot.op == "=" and not slot.array and slot.number in drawn.stats:
            per_table.setdefault(drawn.owners[slot.number], []).append(slot)
    out = []
    for table, slots in per_table.items():
        skewed = next((s for s in slots if drawn.stats[s.number].mcv), None)
        if skewed is None:
            continue  # key-like columns only: any value finds about as many rows
        stats = drawn.stats[skewed.number]
        column = _column(skewed)
        source = f"{table.name}.{column} ({stats.source}, =, another frequency)"
        others = [(s, _column(s)) for s in slots if s.column != column]
        options: _Decision = [[]]
        for value in equality_options(stats):
            if value == drawn.values[skewed.number - 1]:
                continue
            row = _row_values(conn, table, column, value, [c for _s, c in others]) if others else {}
            if others and not all(row.get(c) is not None for _s, c in others):
                continue  # no row has this value with the others: the combination does not exist
            options.append(
                [(s.number, value, source) for s in slots if s.column == column]
                + [(s.number, row[c], f"{table.name}.{c} (the row of {column} = ${skewed.number})") for s, c in others]
            )
        out.append(options)
    return out


def _range_decisions(drawn: _Drawn) -> list[_Decision]:
    per_column: dict[tuple, list[Slot]] = {}
    for slot in drawn.refs.slots:
        if (is_lower(slot.op) or is_upper(slot.op)) and slot.number in drawn.stats:
            per_column.setdefault((drawn.owners[slot.number], slot.column), []).append(slot)
    out = []
    for (table, column), slots in per_column.items():
        lowers = [s for s in slots if is_lower(s.op)]
        uppers = [s for s in slots if is_upper(s.op)]
        stats = drawn.stats[slots[0].number]
        source = f"{table.name}.{column} ({stats.source}, a window of its values)"
        options: _Decision = [[]]
        for lo, hi in range_options(stats, lower=bool(lowers), upper=bool(uppers)):
            options.append([(s.number, lo, source) for s in lowers] + [(s.number, hi, source) for s in uppers])
        out.append(options)
    return out


def _like_decisions(drawn: _Drawn) -> list[_Decision]:
    """Each LIKE on a column tried with patterns of its value's words (not the whole value, an equality)."""
    out: list[_Decision] = []
    for slot in drawn.refs.slots:
        value = drawn.values[slot.number - 1] if slot.number <= len(drawn.values) else None
        if slot.op != "like" or value is None or slot.number not in drawn.owners:
            continue
        source = f"{drawn.owners[slot.number].name}.{slot.column} (a pattern of the words of one of its values)"
        out.append([[]] + [[(slot.number, pattern, source)] for pattern in like_options(value)])
    return out


def _magnitude_decisions(drawn: _Drawn) -> list[_Decision]:
    """Each number guessed from its type (no column says what it is) tried at other magnitudes."""
    out: list[_Decision] = []
    for i, (value, source) in enumerate(zip(drawn.values, drawn.sources, strict=False)):
        if guessed_number(value, source):
            out.append([[]] + [[(i + 1, other, f"{source}; {other} tried")] for other in MAGNITUDES if other != value])
    return out


def _paging_decisions(drawn: _Drawn) -> list[_Decision]:
    """A page's size (``LIMIT $n``) and how deep it starts (``OFFSET $n``): pg_stat_statements keeps
    neither, and a page deep in a sorted result costs what a first page does not; other sizes and
    depths are tried, the measurement keeps the one nearest the workload's rows and time per call."""
    out: list[_Decision] = []
    for slot in drawn.refs.slots:
        options = PAGE_SIZES if slot.op == "limit" else PAGE_DEPTHS if slot.op == "offset" else ()
        current = drawn.values[slot.number - 1] if slot.number <= len(drawn.values) else None
        tried = [v for v in options if v != current]
        if tried:
            out.append([[]] + [[(slot.number, v, f"{slot.op.upper()}: {v} tried")] for v in tried])
    return out


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
        first, column = slots[0], _column(slots[0])
        rest = [(s, _column(s)) for s in slots[1:] if s.column != column]
        found = _row_values(conn, table, column, values[first.number - 1], [c for _s, c in rest])
        for s, c in rest:
            if found.get(c) is not None:
                values[s.number - 1] = found[c]
                sources[s.number - 1] = f"{table.name}.{c} (the row of {column} = ${first.number})"
