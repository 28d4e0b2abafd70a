"""Workload-wide index selection: the set of new indexes that saves the workload the most time per
byte, net of what they cost its writes, under a storage budget (talks to PostgreSQL; hypothetical
indexes only, every one dropped in a finally).

1. Candidates from every top statement (:func:`candidate_keys`, pure): each column it compares,
   joins or sorts on; its equality columns together (up to three), then with its first range
   column, then with its sort key; pairs of its columns; and a *partial* index where an equality
   names a rare value of an enum-like column (a few distinct values, this one among the rarest,
   as the measured values say) — the other columns then under ``WHERE column = value``. A
   candidate that an existing valid index already starts with adds nothing and is left out.
2. Each statement planned on the values it was measured on (custom plans: a partitioned table is
   pruned as the workload prunes it) with no new index, then with each candidate alone; a
   candidate no plan uses is dropped.
3. Greedy (as Extend grows its set, Schlosser et al.; goals in pganalyze's order): the set grows
   one candidate at a time — the one with the largest *net saving*, planned together with the
   indexes already chosen (it must halve again the cost of a statement worth it — :data:`MIN_MEAN_MS`
   per call or :data:`MIN_SHARE` of the statements' time — and save :data:`MIN_SHARE` of their time
   as it will be; an index that serves several statements outranks two that
   serve one each); among those within :data:`NEAR` of the best, the smallest (a partial index over
   a two-column one that saves as much); a chosen index that a later one extends ((a) by (a, b)) is
   dropped from the set. The saving of a statement is its time over the window times its planner
   cost's relative drop; the write cost of an index is the rows the workload's INSERT, UPDATE and
   DELETE statements wrote to its table over the same window times :data:`ENTRY_MS` per index
   entry (and, when the index covers a column those UPDATEs set, their HOT updates lost — the
   table's HOT share of its updates — each then writing an entry in every index of the table). It
   stops when nothing saves more than it costs, the budget is spent, or :data:`MAX_INDEXES` are chosen.

The figures are estimates that plan a measurement: every chosen index is built, measured on its
statements and kept or reverted on that (:mod:`kit.fixes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from kit.errors import KitError
from kit.indexes.advisor import (
    HYPO_CREATE,
    TableInfo,
    candidate_keys,
    cost,
    covered,
    existing_keys,
    table_info,
    table_uses,
)
from kit.sqltext import redact
from kit.sqltext.refs import ColumnUse, References, references

ENTRY_MS = 0.01  # one index entry written (btree insert of a cached page, WAL): an estimate, not a measurement
MAX_INDEXES = 10
NEAR = 0.02  # candidates whose net saving is within 2 % of the best one's are a tie: the smallest wins
# A fix is kept only for a 2x speedup on its statement (kit.fixes.verify): a candidate must halve some
# statement's planner cost alone to stay in the pool, and halve it again on top of the chosen set to join
# it; and it must save at least MIN_SHARE of the statements' time as it is with the chosen set (an index
# for a statement that takes 0.4 % of it is not worth its writes, its bytes and its build).
MIN_DROP = 0.5
MIN_GAIN = 0.5
MIN_SHARE = 0.01
# A statement an index is built for takes MIN_MEAN_MS per call, or MIN_SHARE of the statements' time:
# halving a 16 µs lookup saves what no one notices and no measurement tells from noise.
MIN_MEAN_MS = 0.5
PARTIAL_MAX_DISTINCT = 50  # an enum-like column: at most this many distinct values
PARTIAL_MAX_FREQ = 0.1  # a rare value: at most this share of the rows


@dataclass(frozen=True)
class Candidate:
    """A hypothetical index: its table, key columns and (a partial index) ``column = value``."""

    schema: str
    table: str
    columns: tuple[str, ...]
    where: tuple[str, str] | None = None  # (column, value): WHERE column = value

    def create(self) -> sql.Composable:
        """CREATE INDEX ON ... as hypopg takes it (no name, no CONCURRENTLY)."""
        stmt = sql.SQL("CREATE INDEX ON {} ({})").format(
            sql.Identifier(self.schema, self.table), sql.SQL(", ").join(map(sql.Identifier, self.columns))
        )
        if self.where:
            stmt = sql.SQL("{} WHERE {} = {}").format(stmt, sql.Identifier(self.where[0]), sql.Literal(self.where[1]))
        return stmt

    def describe(self) -> str:
        text = f"{self.table} ({', '.join(self.columns)})"
        return text + (f" WHERE {self.where[0]} = <a rare value>" if self.where else "")


@dataclass(frozen=True)
class Statement:
    """A statement of the workload as the selection sees it."""

    key: str
    text: str = field(repr=False)
    values: tuple[str | None, ...] | None = field(default=None, repr=False)  # measured on these
    total_ms: float = 0.0  # its time over the window (its weight)
    rows: int = 0  # rows it returned or wrote over the window
    calls: int = 0  # its calls over the window (0: unknown)

    @property
    def mean_ms(self) -> float | None:
        return self.total_ms / self.calls if self.calls else None


@dataclass(frozen=True)
class Chosen:
    candidate: Candidate
    est_bytes: int
    statements: tuple[str, ...]  # keys whose plan uses it, with the whole chosen set
    costs: dict[str, tuple[float, float]]  # key -> (planner cost without new indexes, with the chosen set)
    saved_ms: float  # estimated time the workload saves over the window
    write_ms: float  # estimated time its writes lose over the window
    rows_written: int  # rows the workload's statements wrote to its table over the window


@dataclass(frozen=True)
class Selection:
    status: str  # "ok" | "unavailable"
    chosen: tuple[Chosen, ...]
    budget_bytes: int | None
    considered: int  # candidates planned
    notes: tuple[str, ...] = ()


# -- 2. and 3. planning -----------------------------------------------------------------------

TABLE_FIGURES = """SELECT /* kit */ pg_total_relation_size(c.oid), coalesce(s.n_tup_hot_upd::float8 / nullif(s.n_tup_upd, 0), 0),
       (SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid)
FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text))"""
ENUM_LIKE = """SELECT /* kit */ most_common_vals::text::text[], most_common_freqs, n_distinct FROM pg_stats
WHERE schemaname = %s AND tablename = %s AND attname = %s"""
HYPO_DROP = "SELECT /* kit */ hypopg_drop_index(%s)"


@dataclass
class _Table:
    info: TableInfo
    existing: frozenset[tuple[str, ...]]
    bytes: int
    hot_share: float  # of its updates, the HOT ones (pg_stat_user_tables)
    indexes: int
    written: int = 0  # rows the workload's writes put in, changed or took out over the window
    updated: int = 0  # of those, rows its UPDATEs changed
    set_columns: set[str] = field(default_factory=set)  # the columns those UPDATEs set


def _table(conn: psycopg.Connection, info: TableInfo, tables: dict) -> _Table:
    key = (info.schema, info.name)
    if key not in tables:
        row = conn.execute(TABLE_FIGURES, [info.schema, info.name]).fetchone()
        if row is None:  # dropped since table_info found it
            raise KitError(f"table {info.schema}.{info.name} was dropped while its indexes were planned; plan again")
        size, hot_share, indexes = row
        tables[key] = _Table(info, existing_keys(conn, info), int(size or 0), float(hot_share or 0.0), int(indexes))
    return tables[key]


def _count_writes(conn: psycopg.Connection, statements: Sequence[Statement], tables: dict, cache: dict) -> None:
    """The rows each table took from the workload's INSERT, UPDATE and DELETE statements."""
    for stmt in statements:
        refs = references(stmt.text)
        if refs is None or refs.kind not in ("insert", "update", "delete") or refs.target is None:
            continue
        info = table_info(conn, refs.target, cache)
        if info is None or not info.user_table:
            continue
        table = _table(conn, info, tables)
        table.written += stmt.rows
        if refs.kind == "update":
            table.updated += stmt.rows
            table.set_columns |= {s.column for s in refs.slots if s.op == "set" and s.column}


def _rare_value(conn: psycopg.Connection, info: TableInfo, column: str, value: str | None) -> bool:
    """Whether ``value`` is one of the rarer values of an enum-like ``column`` (pg_stats)."""
    if value is None:
        return False
    row = conn.execute(ENUM_LIKE, [info.schema, info.name, column]).fetchone()
    if row is None or not row[0]:
        return False
    mcv, freqs, n_distinct = row
    distinct = n_distinct if n_distinct >= 0 else float("inf")  # negative: a share of the rows, not enum-like
    return distinct <= PARTIAL_MAX_DISTINCT and value in mcv and freqs[mcv.index(value)] <= PARTIAL_MAX_FREQ


def _partials(refs: References, values, uses: list[ColumnUse], info: TableInfo, conn) -> list[Candidate]:
    """A partial index for each equality on a rare value of an enum-like column of ``info``."""
    out = []
    for slot in refs.slots:
        if slot.op != "=" or slot.array or not values or slot.number > len(values) or not slot.column:
            continue
        if slot.column not in info.columns or not _rare_value(conn, info, slot.column, values[slot.number - 1]):
            continue
        rest = [u for u in uses if u.column != slot.column]
        keys = candidate_keys(rest, limit=1) or [(slot.column,)]
        out.append(Candidate(info.schema, info.name, keys[0], (slot.column, values[slot.number - 1])))
    return out


class _Planner:
    """Plans statements on their values with a set of hypothetical indexes in place."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.sizes: dict[Candidate, int] = {}

    def create(self, cand: Candidate) -> tuple[int, str]:
        row = self.conn.execute(HYPO_CREATE, [cand.create().as_string(self.conn)]).fetchone()
        assert row is not None, "hypopg_create_index returns the index it made"
        oid, size = row
        self.sizes[cand] = int(size)
        return oid, f"<{oid}>"

    def drop(self, oid: int) -> None:
        self.conn.execute(HYPO_DROP, [oid])

    def plan(self, stmt: Statement, nparams: int) -> tuple[float, list[str]]:
        return cost(self.conn, stmt.text, nparams, stmt.values)


def select_indexes(
    conn: psycopg.Connection,
    statements: Sequence[Statement],
    *,
    budget_bytes: int | None = None,
    max_indexes: int = MAX_INDEXES,
    workload_ms: float | None = None,
) -> Selection:
    """The indexes to build for ``statements`` — the workload's, its writes too (see the module
    docstring); ``budget_bytes`` caps their estimated size (None: half the size of the tables they are
    on); ``workload_ms`` is the time of every statement of the window (None: of ``statements``)."""
    cache: dict = {}
    tables: dict = {}
    _count_writes(conn, statements, tables, cache)
    parsed: dict[str, tuple[References, dict[TableInfo, list[ColumnUse]]]] = {}
    pool: dict[Candidate, set[str]] = {}
    for stmt in statements:
        refs = references(stmt.text)
        if refs is None or refs.kind not in ("select", "update", "delete"):
            continue
        parsed[stmt.key] = (refs, table_uses(conn, refs, cache))
        for info, uses in parsed[stmt.key][1].items():
            if not info.user_table:
                continue
            table = _table(conn, info, tables)
            cands = [
                Candidate(info.schema, info.name, k) for k in candidate_keys(uses) if not covered(k, table.existing)
            ]
            cands += _partials(refs, stmt.values, uses, info, conn)
            for cand in cands:
                pool.setdefault(cand, set()).add(stmt.key)
    by_key = {s.key: s for s in statements if s.key in parsed}
    planner = _Planner(conn)
    unplanned: list[str] = []
    try:
        conn.execute("SELECT /* kit */ hypopg_reset()")
        base = {}
        for key, stmt in list(by_key.items()):
            try:
                base[key] = planner.plan(stmt, parsed[key][0].nparams)[0]
            except psycopg.Error as exc:  # a role may read and still not plan a write (it needs the privilege)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                unplanned.append(f"{key}: {redact.values(first, stmt.values or ())}")
                del by_key[key]
        pool = {c: keys & set(by_key) for c, keys in pool.items() if keys & set(by_key)}
        alone = _alone(planner, pool, by_key, parsed, base)
        budget = budget_bytes if budget_bytes is not None else sum(t.bytes for t in tables.values()) // 2
        rest_ms = max((workload_ms or 0.0) - sum(s.total_ms for s in by_key.values()), 0.0)  # no index serves it
        chosen = _greedy(
            planner, alone, by_key, parsed, base, tables, budget=budget, max_indexes=max_indexes, rest_ms=rest_ms
        )
    finally:
        conn.execute("SELECT /* kit */ hypopg_reset()")
    notes = (
        f"{len(pool)} candidates from {len(by_key)} statements, {len(alone)} used by a plan on their own, "
        f"{len(chosen)} chosen within {budget / 2**20:.1f} MiB",
        *tuple(f"not planned, so no index is chosen for it: {why}" for why in unplanned),
    )
    return Selection("ok", tuple(chosen), budget, len(pool), notes)


def _alone(
    planner: _Planner,
    pool: dict[Candidate, set[str]],
    by_key: dict[str, Statement],
    parsed: dict,
    base: dict[str, float],
) -> dict[Candidate, set[str]]:
    """The candidates some plan uses on its own, cutting its cost by :data:`MIN_DROP` at least, with the
    statements on their table (any of them may gain from it with the others in place)."""
    out: dict[Candidate, set[str]] = {}
    for cand, keys in pool.items():
        on_table = {
            k
            for k, (_refs, uses) in parsed.items()
            if k in by_key and any((t.schema, t.name) == (cand.schema, cand.table) for t in uses)
        }
        try:
            oid, tag = planner.create(cand)
        except psycopg.Error:
            continue
        try:
            for key in sorted(keys):
                after, used = planner.plan(by_key[key], parsed[key][0].nparams)
                if any(tag in u for u in used) and base[key] > 0 and (base[key] - after) / base[key] >= MIN_DROP:
                    out[cand] = on_table | keys
                    break
        except psycopg.Error:
            pass
        finally:
            planner.drop(oid)
    return out


def _greedy(
    planner: _Planner,
    pool: dict[Candidate, set[str]],
    by_key: dict[str, Statement],
    parsed: dict,
    base: dict[str, float],
    tables: dict,
    *,
    budget: int,
    max_indexes: int,
    rest_ms: float,
) -> list[Chosen]:
    """Step 3 of the module docstring; the chosen set stays created while the next one is sought."""
    chosen: list[tuple[Candidate, int]] = []  # (candidate, hypothetical oid)
    current = dict(base)
    spent = 0
    total_ms = rest_ms + sum(s.total_ms for s in by_key.values())
    worth = {k for k, s in by_key.items() if (s.mean_ms or 0.0) >= MIN_MEAN_MS or s.total_ms >= MIN_SHARE * total_ms}
    while len(chosen) < max_indexes:
        # the statements' time as it will be with the chosen set: once the one query that took 99 % of it
        # is fixed, an index for one that took 0.3 % may save a good share of what is left
        remaining_ms = rest_ms + sum(s.total_ms * current[k] / base[k] for k, s in by_key.items() if base[k] > 0)
        found: list[tuple[float, Candidate, dict[str, float]]] = []
        for cand, keys in pool.items():
            if any(c == cand for c, _ in chosen) or spent + planner.sizes.get(cand, 0) > budget:
                continue
            oid, tag = planner.create(cand)
            try:
                costs = {k: planner.plan(by_key[k], parsed[k][0].nparams) for k in sorted(keys)}
            except psycopg.Error:
                continue
            finally:
                planner.drop(oid)
            if not any(
                k in worth and any(tag in u for u in used) and current[k] - c >= MIN_GAIN * current[k]
                for k, (c, used) in costs.items()
            ):
                continue  # unused, or a marginal gain on top of the chosen set
            saved = sum(
                by_key[k].total_ms * max(current[k] - c, 0.0) / base[k] for k, (c, _u) in costs.items() if base[k] > 0
            )
            net = saved - _write_ms(cand, tables)
            if net >= MIN_SHARE * remaining_ms and spent + planner.sizes[cand] <= budget:
                found.append((net, cand, {k: c for k, (c, _u) in costs.items()}))
        if not found:
            break
        top = max(net for net, _c, _k in found)
        _net, cand, best_costs = min(
            (f for f in found if f[0] >= (1 - NEAR) * top), key=lambda f: (planner.sizes[f[1]], -f[0])
        )
        for old in [(c, o) for c, o in chosen if _extends(cand, c)]:  # (a, b) makes (a) redundant
            planner.drop(old[1])
            chosen.remove(old)
            spent -= planner.sizes[old[0]]
        oid, _tag = planner.create(cand)  # it stays: the next candidates are planned with it
        chosen.append((cand, oid))
        spent += planner.sizes[cand]
        current.update({k: min(current[k], c) for k, c in best_costs.items()})
    return _final(planner, chosen, pool, by_key, parsed, base, tables)


def _extends(new: Candidate, old: Candidate) -> bool:
    """Whether ``new`` serves whatever ``old`` does: same table, no predicate, ``old``'s keys its prefix."""
    return (
        (new.schema, new.table) == (old.schema, old.table)
        and new.where is None
        and old.where is None
        and len(new.columns) > len(old.columns)
        and new.columns[: len(old.columns)] == old.columns
    )


def _final(
    planner: _Planner,
    chosen: list[tuple[Candidate, int]],
    pool: dict,
    by_key: dict,
    parsed: dict,
    base: dict[str, float],
    tables: dict,
) -> list[Chosen]:
    """With the whole chosen set in place: which statements each index serves, and the figures."""
    keys = sorted(set().union(*(pool[c] for c, _ in chosen))) if chosen else []
    plans = {k: planner.plan(by_key[k], parsed[k][0].nparams) for k in keys}
    out = []
    for cand, oid in chosen:
        served = tuple(k for k in keys if any(f"<{oid}>" in u for u in plans[k][1]))
        costs = {k: (base[k], plans[k][0]) for k in served}
        saved = sum(by_key[k].total_ms * max(b - a, 0.0) / b for k, (b, a) in costs.items() if b > 0)
        table = tables[(cand.schema, cand.table)]
        out.append(Chosen(cand, planner.sizes[cand], served, costs, saved, _write_ms(cand, tables), table.written))
    return out


def _write_ms(cand: Candidate, tables: dict) -> float:
    """What an index on ``cand``'s table costs the workload's writes over the window (module docstring, step 3)."""
    table: _Table = tables[(cand.schema, cand.table)]
    entries = float(table.written)
    if table.set_columns & set(cand.columns + ((cand.where[0],) if cand.where else ())):
        entries += table.updated * table.hot_share * (table.indexes + 1)  # HOT lost: every index gets an entry
    return entries * ENTRY_MS


def write_cost(
    conn: psycopg.Connection, statements: Sequence[Statement], schema: str, table: str, columns: tuple[str, ...]
) -> tuple[int, float]:
    """(rows the workload's ``statements`` wrote to ``schema.table``, estimated ms a new index on
    ``columns`` costs those writes) — for any new index (a foreign key's, a migration's too)."""
    tables: dict = {}
    _count_writes(conn, statements, tables, {})
    if (schema, table) not in tables:
        return 0, 0.0
    return tables[(schema, table)].written, _write_ms(Candidate(schema, table, columns), tables)
