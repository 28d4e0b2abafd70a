"""Fix candidates for any database, each naming the statements it should help and what it should
change (talks to PostgreSQL, read-only; hypothetical indexes only):

1. the indexes chosen over the whole workload (:mod:`kit.indexes.select`: multi-column and partial
   candidates from every top statement, planned with hypopg on the values the statements were
   measured on, a greedy choice by saving per byte net of the write cost, under a storage budget);
2. an index for every foreign key of a big table whose referencing columns lead no index;
3. the indexes a migration declares that are missing — the user's own migrations (a file or a
   folder of ``.sql`` files), or the platform's on the demo database; a candidate such an index
   covers is folded into it;
4. ``DROP INDEX`` for indexes another index covers (never one a migration declares) — one that
   exists, or a new one of this plan (the drop is then kept only if that new index is);
5. ``ANALYZE`` for tables whose statistics are missing or stale.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import Engine

from kit.audit import duplicate_indexes, unindexed_foreign_keys, vacuum_staleness
from kit.audit.base import CheckResult, run_check
from kit.db import extensions, sessions
from kit.db.engine import url_of
from kit.db.seeded import seeded
from kit.fixes.model import ANALYZE, CREATE, DROP, Fix, FixPlan
from kit.indexes import partitioned
from kit.indexes.advisor import HYPO_CREATE, cost, table_columns
from kit.indexes.select import Candidate, Selection, select_indexes, write_cost
from kit.indexes.select import Statement as SelectStatement
from kit.indexes.spec import IndexSpec, declared_in_migrations, parse_index_sql, parse_indexdef, parse_migration
from kit.indexes.status import APPLIED, DIFFERS, NO_TABLE, index_status
from kit.indexes.verify import probe_for
from kit.sqltext.fingerprint import to_dollar_params
from kit.sqltext.refs import references
from kit.workload.model import Statement, Workload

MIN_ROWS = 10_000  # below this a sequential scan is cheap: no index for a foreign key
_NAME_BYTES = 63
_UNSAFE_NAME = re.compile(r"[^a-z0-9]+")  # a run of anything else (underscores too) is one "_"


@dataclass(frozen=True)
class Declared:
    """The indexes a migration declares, and where they came from."""

    specs: tuple[IndexSpec, ...]
    source: str  # "your migrations <path>" | "the platform's migration" | "none"
    skipped: int = 0  # statements of the migrations that are not index DDL

    @property
    def names(self) -> set[str]:
        return {s.name for s in self.specs}


def declared_specs(engine: Engine, migrations: str | Path | None = None) -> Declared:
    """The user's migrations when given; on the platform's database, the platform's migration;
    elsewhere none (a migration of another application says nothing about this database)."""
    if migrations:
        specs, skipped = declared_in_migrations(migrations)
        return Declared(specs, f"your migrations {migrations}", skipped)
    with engine.connect() as conn:
        migration = seeded(conn).migration
        conn.rollback()
    return Declared(parse_migration(migration), "the platform's migration") if migration else Declared((), "none")


@dataclass
class _Candidate:
    schema: str
    table: str
    columns: tuple[str, ...]
    statements: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    why: list[str] = field(default_factory=list)
    expect: list[str] = field(default_factory=list)
    est_bytes: int | None = None
    spec: IndexSpec | None = None  # a declared index
    where: tuple[str, str] | None = None  # a partial index: WHERE column = value
    saved_ms: float | None = None  # the selection's estimate over the window

    def add(self, *, statements=(), source=None, why=None, expect=None) -> None:
        self.statements += [s for s in statements if s not in self.statements]
        if source and source not in self.sources:
            self.sources.append(source)
        if why:
            self.why.append(why)
        if expect:
            self.expect.append(expect)


def index_name(table: str, columns: tuple[str, ...], taken: set[str]) -> str:
    """``kit_<table>_<columns>_idx`` (:func:`safe_name`)."""
    return safe_name(f"kit_{table}_{'_'.join(columns)}_idx", taken)


def safe_name(raw: str, taken: set[str]) -> str:
    """``raw`` in lower-case letters, digits and ``_`` (a name from the database may hold quotes,
    newlines, markup), cut to 63 bytes with a hash when longer, unique among ``taken`` (pure)."""
    name = _UNSAFE_NAME.sub("_", raw.lower())
    if len(name.encode()) > _NAME_BYTES:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = name.encode()[: _NAME_BYTES - 9].decode(errors="ignore") + "_" + digest
    base, n = name, 2
    while name in taken:
        name, n = f"{base[: _NAME_BYTES - 3]}_{n}", n + 1
    return name


def _create_spec(
    schema: str, table: str, columns: tuple[str, ...], name: str, where: tuple[str, str] | None = None
) -> IndexSpec:
    stmt = sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})").format(
        sql.Identifier(name), sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    if where:
        stmt = sql.SQL("{} WHERE {} = {}").format(stmt, sql.Identifier(where[0]), sql.Literal(where[1]))
    (spec,) = parse_index_sql(stmt.as_string(None), source="kit")
    return spec


def fk_probe(schema: str, table: str, columns: list[str], constraint: str) -> Statement:
    """What PostgreSQL runs on the referencing table for each DELETE or key UPDATE of the referenced
    row (ri_triggers.c), without its row lock — so a read-only role can run it too."""
    where = sql.SQL(" AND ").join(
        sql.SQL("{} = ${}").format(sql.Identifier(c), sql.SQL(str(i + 1))) for i, c in enumerate(columns)
    )
    text = sql.SQL("SELECT /* kit */ 1 FROM ONLY {} x WHERE {}").format(sql.Identifier(schema, table), where)
    return Statement(key=f"probe:fk:{constraint}", queryid=None, text=text.as_string(None), kind="select")


def spec_probe(spec: IndexSpec) -> Statement:
    """The representative query of a declared index (the kit's catalog, else equality on its lead)."""
    probe, _query = probe_for(spec)
    return Statement(key=f"probe:{spec.name}", queryid=None, text=to_dollar_params(probe.query), kind="select")


def _rows(engine: Engine, check) -> list[dict]:
    res: CheckResult = run_check(engine, check)
    return res.rows.to_dict("records") if res.status in ("ok", "findings") else []


def _uses(conn: psycopg.Connection, targets: tuple[Statement, ...]) -> dict[str, dict[tuple[str, str], list[str]]]:
    """{statement key: {(schema, table): columns it filters, joins or sorts on}}."""
    cache: dict = {}
    return {
        s.key: {(t.schema, t.name): cols for t, cols in table_columns(conn, s.text, cache).items()} for s in targets
    }


def _touching(targets: tuple[Statement, ...], uses: dict, schema: str, table: str) -> list[str]:
    """Keys of the statements that read or write ``schema.table``."""
    out = []
    for s in targets:
        refs = references(s.text)
        names = {r.name for r in refs.relations} if refs else set()
        if (schema, table) in uses.get(s.key, {}) or table in names:
            out.append(s.key)
    return out


def _selected(cands: dict, selection: Selection) -> None:
    """The indexes chosen over the workload, each with the statements its plan serves in the chosen set."""
    for chosen in selection.chosen:
        c = chosen.candidate
        cand = cands.setdefault(
            (c.schema, c.table, c.columns, c.where), _Candidate(c.schema, c.table, c.columns, where=c.where)
        )
        keys = ", ".join(chosen.statements)
        partial = f", only the rows with the rare value of {c.where[0]} it asks for" if c.where else ""
        cand.add(
            statements=chosen.statements,
            source="advisor",
            why=f"{keys} read {c.table} without an index on ({', '.join(c.columns)}){partial}",
            expect="; ".join(
                f"planner cost of {k} {b:.0f} -> {a:.0f}" + (f" (-{100 * (b - a) / b:.0f}%)" if b > 0 else "")
                for k, (b, a) in chosen.costs.items()
            ),
        )
        cand.est_bytes, cand.saved_ms = chosen.est_bytes, chosen.saved_ms


def _foreign_keys(cands: dict, fks: list[dict], targets, uses, probes: list[Statement]) -> None:
    for fk in fks:
        cols = tuple(fk["columns"])
        same = next(
            (
                c
                for c in cands.values()
                if (c.schema, c.table) == (fk["schema"], fk["table"])
                and c.where is None
                and set(c.columns[: len(cols)]) == set(cols)
            ),
            None,
        )
        cand = same or cands.setdefault((fk["schema"], fk["table"], cols), _Candidate(fk["schema"], fk["table"], cols))
        probe = fk_probe(fk["schema"], fk["table"], list(cols), fk["constraint"])
        probes.append(probe)
        using = [
            s.key for s in targets if any(c in uses.get(s.key, {}).get((fk["schema"], fk["table"]), []) for c in cols)
        ]
        cand.add(
            statements=[*using, probe.key],
            source="foreign key",
            why=f"foreign key {fk['constraint']} ({', '.join(cols)}) -> {fk['references']} has no index "
            f"on {fk['rows']:,} rows",
            expect=f"joins and lookups on ({', '.join(cols)}), and the check on every DELETE of "
            f"{fk['references']}, use an index instead of reading {fk['table']}",
        )


def _declared(cands: dict, declared: Declared, engine: Engine, targets, uses, probes: list[Statement]) -> None:
    """Missing declared indexes become fixes; a candidate one of them covers is folded into it."""
    if not declared.specs:
        return
    status = {r.name: r.state for r in index_status(engine, declared.specs).rows}
    for spec in declared.specs:
        state = status.get(spec.name)
        if state in (APPLIED, DIFFERS, NO_TABLE):
            continue
        cand = _Candidate(spec.schema, spec.table, spec.columns, spec=spec)
        for key, other in list(cands.items()):
            if (
                (other.schema, other.table) == (spec.schema, spec.table)
                and other.spec is None
                and other.where is None
                and spec.columns
                and spec.columns[: len(other.columns)] == other.columns
            ):
                cand.add(statements=other.statements, why="; ".join(other.why), expect="; ".join(other.expect))
                cand.sources += [s for s in other.sources if s not in cand.sources]
                del cands[key]
        probe = spec_probe(spec)
        probes.append(probe)
        using = [
            s.key
            for s in targets
            if set(spec.columns[:1]) & set(uses.get(s.key, {}).get((spec.schema, spec.table), []))
        ]
        where = f"{Path(spec.source).name}:{spec.line}"
        cand.add(
            statements=[*using, probe.key],
            source=f"migration {where}",
            why=f"declared in {where} and {state} here",
            expect=f"{spec.definition} serves its representative query {probe.key}",
        )
        cands[(spec.schema, spec.table, ("declared", spec.name))] = cand


def _whatif(
    url: str, cands: list[_Candidate], targets: tuple[Statement, ...], probes: list[Statement], values: dict[str, tuple]
) -> None:
    """Expected cost change of each candidate without an advisor figure (hypopg), on its statements
    (planned on the values their measurement used, when there are)."""
    texts = {s.key: s.text for s in (*targets, *probes)}
    with sessions.connect(url, app="dbperf-kit-advisor") as conn:
        conn.prepare_threshold = None
        if not extensions.usable(conn, "hypopg"):
            return
        for cand in cands:
            if any(e.startswith("planner cost") for e in cand.expect):
                continue
            create = re_hypothetical(cand)
            for key in cand.statements[:3]:
                refs = references(texts.get(key, ""))
                if refs is None:
                    continue
                try:
                    base, _ = cost(conn, texts[key], refs.nparams, values.get(key))
                    made = conn.execute(HYPO_CREATE, [create]).fetchone()
                    assert made is not None, "hypopg_create_index returns the index it made"
                    _oid, size = made
                    after, _ = cost(conn, texts[key], refs.nparams, values.get(key))
                except psycopg.Error:
                    continue
                finally:
                    conn.execute("SELECT /* kit */ hypopg_reset()")
                cand.est_bytes = max(cand.est_bytes or 0, int(size))
                cand.expect.append(
                    f"planner cost of {key} {base:.0f} -> {after:.0f}"
                    + (f" (-{100 * (base - after) / base:.0f}%)" if base > 0 else "")
                )


def re_hypothetical(cand: _Candidate) -> str:
    """The candidate as hypopg wants it: a plain CREATE INDEX (no name, no CONCURRENTLY)."""
    if cand.spec is not None:
        return cand.spec.create_sql.replace(" CONCURRENTLY IF NOT EXISTS", "", 1)
    return Candidate(cand.schema, cand.table, cand.columns, cand.where).create().as_string(None)


LIVE_NAMES = "SELECT /* kit */ relname FROM pg_class WHERE relkind = 'i'"
# the table and key columns of every index a concurrent build is working on right now
BUILDING = """SELECT /* kit */ n.nspname, t.relname,
       ARRAY(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.ord),
       p.pid
FROM pg_stat_progress_create_index p JOIN pg_index x ON x.indexrelid = p.index_relid
JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"""


def _not_building(cands: dict, building: dict[tuple, int], notes: list[str]) -> None:
    """Leave out a candidate whose index a build is making right now — an apply running meanwhile
    (this plan is a dry run's, or the build an orphan): planned again under another name, the
    index would be built twice. The build's own name stays taken."""
    for key, cand in list(cands.items()):
        pid = building.get((cand.schema, cand.table, tuple(cand.columns)))
        if pid is not None:
            del cands[key]
            notes.append(
                f"an index on {cand.schema}.{cand.table} ({', '.join(cand.columns)}) is being built right "
                f"now (session {pid}): left out of this plan; plan again once that build has ended"
            )


def _creates(cands: list[_Candidate], taken: set[str]) -> list[Fix]:
    out = []
    for cand in cands:
        if cand.spec is not None:
            spec, declared = cand.spec, True
        else:
            name = index_name(cand.table, cand.columns + (("where", cand.where[0]) if cand.where else ()), taken)
            taken.add(name)
            spec, declared = _create_spec(cand.schema, cand.table, cand.columns, name, cand.where), False
        out.append(
            Fix(
                kind=CREATE,
                sql=spec.create_sql,
                target_table=f"{cand.schema}.{cand.table}",
                statements=tuple(cand.statements),
                why="; ".join(cand.why),
                expect="; ".join(cand.expect),
                source=" + ".join(cand.sources),
                index=f"{spec.schema}.{spec.name}",
                index_def=spec.create_sql,
                est_bytes=cand.est_bytes,
                declared=declared,
                schema=cand.schema,
                table=cand.table,
                index_name=spec.name,
                saved_ms=cand.saved_ms,
                spec=spec,
            )
        )
    return out


def _drops(dups: list[dict], declared: Declared, targets, uses, notes: list[str], probes: list[Statement]) -> list[Fix]:
    """A drop names the statements on its table (none may get slower) and a lookup on the dropped
    index's leading key, which the covering index must now serve as well."""
    out = []
    for d in dups:
        if d["index"] in declared.names:
            notes.append(
                f"{d['schema']}.{d['index']} is covered by {d['covered_by']} but declared in "
                f"{declared.source}: remove it from the migration rather than drop it here"
            )
            continue
        name = sql.Identifier(d["schema"], d["index"]).as_string(None)
        existing = parse_indexdef(d["definition"])
        probe = spec_probe(existing)
        probes.append(probe)
        out.append(
            Fix(
                kind=DROP,
                sql=f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
                target_table=f"{d['schema']}.{d['table']}",
                statements=(*_touching(targets, uses, d["schema"], d["table"]), probe.key),
                why=f"{d['schema']}.{d['index']} is {d['detail']}",
                expect=f"frees {d['size_bytes'] / 2**20:.1f} MiB; writes to {d['table']} maintain one index "
                f"fewer; its reads use {d['covered_by']} (no statement may get slower)",
                source="duplicate",
                index=f"{d['schema']}.{d['index']}",
                index_def=d["definition"],
                est_bytes=int(d["size_bytes"]),
                schema=d["schema"],
                table=d["table"],
                index_name=d["index"],
                spec=existing,
            )
        )
    return out


# plain btree indexes of a table (no predicate, expression, INCLUDE, sort order or collation of their
# own, no constraint behind them): one a new index extends is covered by it
PLAIN_INDEXES = """SELECT /* kit */ i.relname, pg_get_indexdef(i.oid), pg_relation_size(i.oid),
       ARRAY(SELECT a.attname::text FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am m ON m.oid = i.relam
WHERE x.indrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND x.indisvalid AND NOT x.indisunique
  AND x.indpred IS NULL AND x.indexprs IS NULL AND x.indnkeyatts = x.indnatts AND m.amname = 'btree'
  AND 0 = ALL (x.indoption::int2[]) AND pg_get_indexdef(i.oid) NOT LIKE '%%COLLATE%%'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"""


def _covered_by_new(
    conn: psycopg.Connection, creates: list[Fix], declared: Declared, targets, uses, probes: list[Statement]
) -> list[Fix]:
    """A drop for each existing index a new one extends ((a) by (a, b)), kept only if the new one is."""
    out = []
    for new in creates:
        spec = new.index_spec()
        if new.declared or spec.predicate or len(spec.columns) < 2:
            continue
        for name, definition, size, columns in conn.execute(PLAIN_INDEXES, [new.schema, new.table]).fetchall():
            columns = tuple(columns)
            if name in declared.names or len(columns) >= len(spec.columns) or spec.columns[: len(columns)] != columns:
                continue
            existing = parse_indexdef(definition)
            probe = spec_probe(existing)
            probes.append(probe)
            out.append(
                Fix(
                    kind=DROP,
                    sql=sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}")
                    .format(sql.Identifier(new.schema, name))
                    .as_string(None),
                    target_table=new.target_table,
                    statements=(*_touching(targets, uses, new.schema, new.table), probe.key),
                    why=f"{new.schema}.{name} ({', '.join(columns)}) is covered by the new {new.index}",
                    expect=f"frees {size / 2**20:.1f} MiB; writes to {new.table} maintain one index fewer; "
                    f"its reads use {new.index} (no statement may get slower)",
                    source="covered by a new index",
                    index=f"{new.schema}.{name}",
                    index_def=definition,
                    est_bytes=int(size),
                    schema=new.schema,
                    table=new.table,
                    index_name=name,
                    depends_on=new.index_name,
                    spec=existing,
                )
            )
    return out


def _analyzes(stale: list[dict], targets, uses, notes: list[str], *, min_rows: int) -> list[Fix]:
    """ANALYZE for the stale tables the workload reads (the others are in the notes: no statement
    would show what it changes)."""
    out = []
    for t in stale:
        if t["statistics"] == "fresh" or t["live_rows"] < min_rows:
            continue
        name = sql.Identifier(t["schema"], t["table"]).as_string(None)
        since = (
            "never analyzed"
            if t["last_analyze"] is None
            else f"{t['modified_since_analyze']:,} of {t['live_rows']:,} rows changed since the last ANALYZE"
        )
        keys = _touching(targets, uses, t["schema"], t["table"])
        if not keys:
            notes.append(
                f"{t['schema']}.{t['table']}: statistics {t['statistics']} ({since}), but no top statement "
                f"reads it: ANALYZE {name} when convenient"
            )
            continue
        out.append(
            Fix(
                kind=ANALYZE,
                sql=f"ANALYZE {name}",
                target_table=f"{t['schema']}.{t['table']}",
                statements=tuple(keys),
                why=f"statistics {t['statistics']}: {since}",
                expect=f"the planner's row estimates follow the data again for {', '.join(keys)}",
                source="statistics",
                schema=t["schema"],
                table=t["table"],
            )
        )
    return out


def plan_fixes(
    engine: Engine,
    workload: Workload,
    *,
    declared: Declared | None = None,
    min_rows: int = MIN_ROWS,
    analyze_min_rows: int = 1_000,
    values: dict[str, tuple] | None = None,
    budget_bytes: int | None = None,
    reuse: frozenset[str] | set[str] = frozenset(),
) -> FixPlan:
    """The fixes for this database, with the probes (statements the kit wrote) their verification
    needs; ``values`` (statement key -> its parameter values, as measured) make the advisor plan each
    statement as the workload runs it; ``budget_bytes`` caps the new indexes' estimated size (None:
    half the size of the tables they are on); ``reuse``: names of INVALID leftovers of the kit that go
    before the plan (kit.fixes.leftovers), free for its new indexes again."""
    declared = declared or Declared((), "none")
    values = values or {}
    targets = workload.targets
    url = url_of(engine)
    fks = [r for r in _rows(engine, lambda c: unindexed_foreign_keys(c, min_rows=min_rows)) if r["rows"] >= min_rows]
    dups = _rows(engine, duplicate_indexes)
    stale = _rows(engine, lambda c: vacuum_staleness(c, min_rows=analyze_min_rows))
    with sessions.connect(url, app="dbperf-kit-plan") as conn:
        conn.prepare_threshold = None  # psycopg's own prepared statements would mix with the advisor's
        uses = _uses(conn, targets)
        taken = {r[0] for r in conn.execute(LIVE_NAMES)} - set(reuse)
        building = {(s, t, tuple(cols)): pid for s, t, cols, pid in conn.execute(BUILDING)}
        selection = _select(conn, workload, values, budget_bytes)
    cands: dict = {}
    probes: list[Statement] = []
    notes = [f"advisor: {n}" for n in selection.notes]
    _selected(cands, selection)
    _foreign_keys(cands, fks, targets, uses, probes)
    _declared(cands, declared, engine, targets, uses, probes)
    _not_building(cands, building, notes)
    _whatif(url, list(cands.values()), targets, probes, values)
    creates = _creates(list(cands.values()), taken)
    with sessions.connect(url, app="dbperf-kit-plan") as conn:
        creates = [_spelled_out(conn, _with_write_cost(conn, f, _statements(workload, values))) for f in creates]
        covered = _covered_by_new(conn, creates, declared, targets, uses, probes)
    fixes = [
        *_analyzes(stale, targets, uses, notes, min_rows=analyze_min_rows),
        *creates,
        *_drops(dups, declared, targets, uses, notes, probes),
        *covered,
    ]
    return FixPlan(tuple(fixes), tuple(notes), tuple(probes), budget_bytes=selection.budget_bytes)


def _select(
    conn: psycopg.Connection, workload: Workload, values: dict[str, tuple], budget_bytes: int | None
) -> Selection:
    """The workload-wide choice of new indexes; unavailable without hypopg (and says how to enable it)."""
    if why := extensions.missing(conn, "hypopg"):
        return Selection("unavailable", (), budget_bytes, 0, (why,))
    return select_indexes(conn, _statements(workload, values), budget_bytes=budget_bytes, workload_ms=workload.total_ms)


def _statements(workload: Workload, values: dict[str, tuple]) -> list[SelectStatement]:
    return [SelectStatement(s.key, s.text, values.get(s.key), s.total_ms, s.rows, s.calls) for s in workload.targets]


def _spelled_out(conn: psycopg.Connection, fix: Fix) -> Fix:
    """A new index on a partitioned table: its sql spells out the steps of the safe path (kit.indexes.partitioned)."""
    spec = fix.index_spec()
    if not partitioned.is_partitioned(conn, spec.schema, spec.table):
        return fix
    return fix.but(sql=";\n".join(partitioned.statements(conn, spec)))


def _with_write_cost(conn: psycopg.Connection, fix: Fix, statements: list[SelectStatement]) -> Fix:
    """A new index with the rows the workload wrote to its table and the estimated cost to those writes."""
    spec = fix.index_spec()
    written, write_ms = write_cost(conn, statements, fix.schema, fix.table, spec.columns)
    return fix.but(rows_written=written, write_ms=write_ms)
