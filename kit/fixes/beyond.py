"""Fixes beyond indexes, planned from what the statements' plans showed on the workload's own values
(:mod:`kit.workload.insights`) and from the tables' dead rows (talks to PostgreSQL; changes nothing):

- ``create_statistics``: a row estimate off 10×+ on columns of one table compared together →
  ``CREATE STATISTICS (ndistinct, dependencies[, mcv])`` on those columns (an MCV list only where their
  values fit in one), then ``ANALYZE``; applied, then
  kept only when the statement's estimate and its time (2×) improve, else dropped again;
- ``set_work_mem``: a sort, hash or hash aggregate that spilled to disk, or a bitmap gone lossy → the
  smallest ``work_mem`` (doubling, up to ``cap``) that removes it, tried with ``SET LOCAL`` in the
  statement's own transaction, then timed there: planned as ``ALTER ROLE <the role that runs it> IN
  DATABASE ... SET work_mem`` when that is 2× faster, with what it may cost at ``max_connections``.
  A spill the cap does not remove, or a gain under 2×, is a note: reported, not fixed. A setting is
  applied only with its own parameter (``apply_settings``), and verified in fresh sessions with the
  value the catalog then holds for the role;
- ``vacuum``: ``VACUUM (ANALYZE)`` of a table a measured statement reads through an index when half
  its rows are dead or half its pages more than its live rows need (8 MB at least), or that an
  index-only scan visits for most rows (a stale visibility map); verified by the blocks its
  statements read per call, before and after. It cannot be undone. A statement that reads every page
  of a bloated table gains nothing from VACUUM, which leaves the pages in place: a note says only a
  rewrite gives them back (VACUUM FULL, pg_repack) — advice, never applied.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

import psycopg
from psycopg import sql

from kit.db import sessions
from kit.fixes.model import STATISTICS, VACUUM, WORK_MEM, Fix
from kit.fixes.plan import safe_name
from kit.fixes.verify import MIN_SPEEDUP
from kit.indexes.advisor import table_columns
from kit.workload.diagnosis import BLOATED_PAGES, BLOATED_PCT, DEAD_ROWS, Dead, dead_tables
from kit.workload.measure import Target, time_target
from kit.workload.sample import Parameters
from kit.workload.timing import MEASURED, Timing

WORK_MEM_CAP_KB = 256 * 1024  # the largest work_mem tried: 256 MB
SPILLS = ("sort_spill", "hash_spill", "lossy_bitmap")
BEYOND: Final = (STATISTICS, WORK_MEM, VACUUM)  # applied and judged before the indexes (kit.fixes.loop)

WORK_MEM_NOW = """SELECT /* kit */ setting::bigint, current_setting('max_connections')::int, current_database()
FROM pg_settings WHERE name = 'work_mem'"""
# the role that spent most of the statement's time (pg_stat_statements keeps one row per role)
ROLE_OF = """SELECT /* kit */ r.rolname FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
WHERE s.queryid = %s AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY s.total_exec_time DESC LIMIT 1"""
# a role's own setting in this database (ALTER ROLE ... IN DATABASE ... SET), else None
ROLE_SETTING = """SELECT /* kit */ split_part(c, '=', 2) FROM pg_db_role_setting d, unnest(d.setconfig) c
WHERE d.setrole = (SELECT oid FROM pg_roles WHERE rolname = %s)
  AND d.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND split_part(c, '=', 1) = %s"""
INDEXES_OF = """SELECT /* kit */ c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))"""
KINDS: Final = ("ndistinct", "dependencies", "mcv")
# the most distinct values among the columns (a negative n_distinct is a share of the rows), and the target
DISTINCT = """SELECT /* kit */ max(CASE WHEN s.n_distinct < 0
                          THEN -s.n_distinct * greatest((SELECT reltuples FROM pg_class WHERE oid = to_regclass(
                                 format('%%I.%%I', %(schema)s::text, %(table)s::text))), 0)
                          ELSE s.n_distinct END), current_setting('default_statistics_target')::int
FROM pg_stats s WHERE s.schemaname = %(schema)s AND s.tablename = %(table)s AND s.attname = ANY (%(columns)s::text[])"""
STATISTICS_ON = """SELECT /* kit */ x.stxname FROM pg_statistic_ext x
WHERE x.stxrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))
  AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
       WHERE a.attrelid = x.stxrelid AND a.attnum = ANY (x.stxkeys)) = %s::text[]"""


@dataclass(frozen=True)
class Planned:
    fixes: tuple[Fix, ...]
    notes: tuple[str, ...]


def kb(value: int) -> str:
    """A work_mem in kB as PostgreSQL writes it: ``64MB``, ``1GB``, ``640kB`` (pure)."""
    for unit, size in (("GB", 1024 * 1024), ("MB", 1024)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}kB"


def statistics_name(table: str, columns: tuple[str, ...], taken: set[str]) -> str:
    """``kit_stat_<table>_<columns>`` (:func:`kit.fixes.plan.safe_name`)."""
    return safe_name(f"kit_stat_{table}_{'_'.join(columns)}", taken)


def plan_beyond(
    url: str,
    targets: list[Target],
    before: dict[str, Timing],
    *,
    queryids: dict[str, int],
    cap_kb: int = WORK_MEM_CAP_KB,
    repeats: int = 5,
) -> Planned:
    """The fixes beyond indexes for the measured ``targets`` (``queryids``: key → queryid of the
    workload's statements; a probe the kit wrote gets none of these fixes)."""
    fixes: list[Fix] = []
    notes: list[str] = []
    mine = [t for t in targets if t.key in queryids and _measured(before.get(t.key))]
    for t in targets:
        timing = before.get(t.key)
        if t.key in queryids and timing is not None and timing.reproduced is False:
            shown = [i for i in timing.insights if i.fix in ("create_statistics", "work_mem", "vacuum")]
            if shown:
                notes.append(
                    f"{t.key}: {shown[0].evidence} — no fix planned on a measurement that does not reproduce "
                    f"the workload ({timing.evidence})"
                )
    with sessions.connect(url, app="dbperf-kit-plan") as conn:
        conn.prepare_threshold = None
        cache: dict = {}
        tables = {
            t.key: {(i.schema, i.name): cols for i, cols in table_columns(conn, t.text, cache).items()} for t in mine
        }
        fixes += _statistics(conn, mine, before, tables, notes)
        fixes += _vacuums(conn, mine, before, tables, notes)
        roles = {t.key: _role(conn, queryids[t.key]) for t in mine}
        now_kb, connections, database = conn.execute(WORK_MEM_NOW).fetchone() or (4096, 100, "")
    server = (int(now_kb), int(connections), str(database))
    for t in mine:
        found = _work_mem(url, t, before[t.key], roles[t.key], server, cap_kb, repeats, notes)
        if found is not None:
            fixes.append(found)
    return Planned(tuple(_merged(fixes)), tuple(notes))


def _measured(t: Timing | None) -> bool:
    return t is not None and t.mode == MEASURED and bool(t.exec_ms) and t.reproduced is not False


def _role(conn: psycopg.Connection, queryid: int) -> str | None:
    row = conn.execute(ROLE_OF, [queryid]).fetchone()
    return str(row[0]) if row else None


def role_setting(conn: psycopg.Connection, role: str, name: str) -> str | None:
    """``role``'s own value of setting ``name`` in this database, else None."""
    row = conn.execute(ROLE_SETTING, [role, name]).fetchone()
    return str(row[0]) if row else None


def _statistics(conn, targets: list[Target], before: dict[str, Timing], tables: dict, notes: list[str]) -> list[Fix]:
    out: list[Fix] = []
    taken: set[str] = set()
    for t in targets:
        for insight in before[t.key].insights:
            if insight.fix != "create_statistics" or not insight.relation:
                continue
            where = [(s, n) for (s, n) in tables[t.key] if n == insight.relation]
            if not where:
                notes.append(f"{t.key}: {insight.evidence} — on {insight.relation}, not a table the statement names")
                continue
            schema, table = where[0]
            known = set(tables[t.key][where[0]])
            columns = tuple(sorted(c for c in insight.columns if c in known))[:8]
            if len(columns) < 2:
                continue
            if conn.execute(STATISTICS_ON, [schema, table, list(columns)]).fetchone():
                notes.append(
                    f"{t.key}: {insight.evidence}, though extended statistics on ({', '.join(columns)}) exist: "
                    "raise their statistics target, or rewrite the condition"
                )
                continue
            name = statistics_name(table, columns, taken)
            taken.add(name)
            kinds = _kinds(conn, schema, table, columns)
            out.append(
                Fix(
                    kind=STATISTICS,
                    sql=";\n".join(s.as_string(conn) for s in statistics_sql(schema, table, name, columns, kinds)),
                    target_table=f"{schema}.{table}",
                    statements=(t.key,),
                    why=f"{insight.evidence}: the planner takes ({', '.join(columns)}) for independent",
                    expect=f"the planner estimates {t.key}'s rows from the columns together, and plans it for them",
                    source="plan insight",
                    schema=schema,
                    table=table,
                    object_name=name,
                    columns=columns,
                    kinds=kinds,
                )
            )
    return out


def statistics_sql(
    schema: str, table: str, name: str, columns: tuple[str, ...], kinds: tuple[str, ...]
) -> list[sql.Composed]:
    """``CREATE STATISTICS IF NOT EXISTS schema.name (kinds) ON columns FROM schema.table`` and the
    ``ANALYZE`` that fills it; a kind outside :data:`KINDS` is a ValueError (they are SQL words)."""
    if not kinds or not set(kinds) <= set(KINDS):
        raise ValueError(f"extended statistics kinds must be among {', '.join(KINDS)}: got {kinds!r}")
    on = sql.Identifier(schema, table)
    return [
        sql.SQL("CREATE STATISTICS IF NOT EXISTS {} ({}) ON {} FROM {}").format(
            sql.Identifier(schema, name),
            sql.SQL(", ").join(sql.SQL(k) for k in kinds),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            on,
        ),
        sql.SQL("ANALYZE {}").format(on),
    ]


def _kinds(conn: psycopg.Connection, schema: str, table: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    """All three kinds, but an MCV list only where the columns' values fit in one (as many distinct
    values as the statistics target at most): for a value it does not list, the planner estimates the
    columns as independent again, where the functional dependencies alone would have known better."""
    row = conn.execute(DISTINCT, {"schema": schema, "table": table, "columns": list(columns)}).fetchone()
    most, target = row or (None, 100)
    return KINDS if most is not None and float(most) <= float(target) else ("ndistinct", "dependencies")


def _vacuums(conn, targets: list[Target], before: dict[str, Timing], tables: dict, notes: list[str]) -> list[Fix]:
    dead = dead_tables(conn.execute(DEAD_ROWS))
    out: dict[tuple[str, str], Fix] = {}
    advice: dict[tuple[str, str], str] = {}
    for t in targets:
        stale = {i.relation for i in before[t.key].insights if i.fix == "vacuum" and i.relation}
        for schema, table in tables[t.key]:
            d = dead.get((schema, table))
            if d is None:
                continue
            bloated = d.pages >= BLOATED_PAGES and max(d.dead_pct, d.wasted_pct) >= BLOATED_PCT
            by_index = bloated and bool(set(before[t.key].indexes) & _indexes(conn, schema, table))
            if not (table in stale or (bloated and by_index)):
                if bloated:
                    advice.setdefault(
                        (schema, table),
                        f"{schema}.{table}: {_state(d)}; {t.key} reads all of its pages, which VACUUM leaves "
                        "in place: only a rewrite gives them back (VACUUM FULL locks the table while it copies "
                        "it; pg_repack does not) — advice, not applied",
                    )
                continue
            if (schema, table) in out:
                prior = out[(schema, table)]
                out[(schema, table)] = prior.but(statements=(*prior.statements, t.key))
                continue
            why = (
                f"an index-only scan visits the table for most rows (a stale visibility map); {_state(d)}"
                if table in stale
                else f"{_state(d)}, read through an index"
            )
            out[(schema, table)] = Fix(
                kind=VACUUM,
                sql=sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema, table)).as_string(conn),
                target_table=f"{schema}.{table}",
                statements=(t.key,),
                why=why,
                expect=f"{t.key} reads fewer blocks per call: dead rows and their index entries cleared, "
                "the visibility map set",
                source="dead rows",
                schema=schema,
                table=table,
            )
    notes += [note for table, note in advice.items() if table not in out]  # a vacuumed table needs no advice yet
    return list(out.values())


def _indexes(conn: psycopg.Connection, schema: str, table: str) -> set[str]:
    return {str(r[0]) for r in conn.execute(INDEXES_OF, [schema, table])}


def _state(d: Dead) -> str:
    state = f"{d.dead:,} dead rows beside {d.live:,} live ({d.dead_pct:.0f}%) in {d.pages:,} pages"
    return state + (f" (its live rows need ~{d.needed_pages:,})" if d.needed_pages is not None else "")


def _work_mem(
    url: str,
    target: Target,
    timing: Timing,
    role: str | None,
    server: tuple[int, int, str],
    cap_kb: int,
    repeats: int,
    notes: list[str],
) -> Fix | None:
    """The smallest work_mem up to ``cap_kb`` that removes the statement's spill, for ``role`` in this
    database (``server``: its work_mem in kB now, max_connections, the database's name)."""
    spills = [i for i in timing.insights if i.kind in SPILLS]
    if not spills or role is None:
        return None
    now_kb, connections, database = server
    on = target.on(Parameters(timing.params, timing.sources))
    size = max(now_kb * 2, 1024)
    while size <= cap_kb:
        trial = time_target(url, replace(on, settings=(("work_mem", kb(size)),)), warmup=0, repeats=1)
        if trial.mode != MEASURED:
            notes.append(f"{target.key}: {spills[0].evidence}; a larger work_mem could not be tried ({trial.reason})")
            return None
        if not any(i.kind in SPILLS for i in trial.insights):
            break
        size *= 2
    else:
        notes.append(
            f"{target.key}: {spills[0].evidence} — still spilling with work_mem {kb(cap_kb)} (the most the kit "
            "tries): reported, not fixed; the statement asks for more than memory should hold (less data "
            "per sort or hash: a narrower select list, an index in the sort's order, a smaller join)"
        )
        return None
    timed = time_target(url, replace(on, settings=(("work_mem", kb(size)),)), warmup=1, repeats=repeats)
    b, a = timing.median_ms, timed.median_ms
    x = b / a if b and a else 0.0
    if x < MIN_SPEEDUP:
        notes.append(
            f"{target.key}: {spills[0].evidence}; work_mem {kb(size)} removes it but {b or 0:.3f} -> "
            f"{a or 0:.3f} ms is {x:.1f}x (less than {MIN_SPEEDUP:.0f}x): not planned"
        )
        return None
    stmt = sql.SQL("ALTER ROLE {} IN DATABASE {} SET work_mem = {}").format(
        sql.Identifier(role), sql.Identifier(database), sql.Literal(kb(size))
    )
    worst = size * connections / 1024 / 1024
    return Fix(
        kind=WORK_MEM,
        sql=stmt.as_string(None),
        target_table=f"role {role}",
        statements=(target.key,),
        why=f"{spills[0].evidence}, at work_mem {kb(now_kb)}",
        expect=(
            f"work_mem {kb(size)} removes it (tried with SET LOCAL: {b:.3f} -> {a:.3f} ms, {x:.1f}x); each sort or "
            f"hash of each session may then use {kb(size)}: up to {worst:,.1f} GB at max_connections {connections}"
        ),
        source="plan insight",
        role=role,
        setting=kb(size),
        exec_ms_before=b,
        exec_ms_after=a,
    )


def _merged(fixes: list[Fix]) -> list[Fix]:
    """One work_mem per role (the largest asked for, naming every statement); the others as they are."""
    out: list[Fix] = []
    by_role: dict[str | None, int] = {}
    for f in fixes:
        if f.kind != WORK_MEM:
            out.append(f)
            continue
        if f.role in by_role:
            i = by_role[f.role]
            big = f if _kb(f.setting) > _kb(out[i].setting) else out[i]
            out[i] = big.but(statements=(*out[i].statements, *f.statements))
            continue
        by_role[f.role] = len(out)
        out.append(f)
    return out


def _kb(value: str | None) -> int:
    """``64MB`` → 65536 (pure)."""
    if not value:
        return 0
    for unit, size in (("GB", 1024 * 1024), ("MB", 1024), ("kB", 1)):
        if value.endswith(unit):
            return int(value[: -len(unit)]) * size
    return int(value)
