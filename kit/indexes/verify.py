"""Is each index used, and how much faster is its query? EXPLAIN (ANALYZE, BUFFERS) of one
representative query per index, before and after, in fresh sessions (talks to PostgreSQL)."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import psycopg
from psycopg import sql
from sqlalchemy import Engine

from kit.db import sessions
from kit.db.engine import url_of
from kit.errors import ConfigError
from kit.indexes.catalog import Probe, kit_probe
from kit.indexes.spec import IndexSpec
from kit.indexes.status import default_specs

SMALL_TABLE_PAGES = 1000  # ~8 MB: below this a sequential scan is often the cheaper plan
_STATEMENT_TIMEOUT = "60s"


def probe_for(spec: IndexSpec) -> tuple[Probe, sql.Composable]:
    """The probe of ``spec`` and its query: the kit's own, or equality on the leading key."""
    probe = kit_probe(spec)
    if probe is not None:
        return probe, sql.SQL(probe.query)  # a constant of the catalog
    key = spec.keys[0]
    # Expressions and predicates are pglast's deparse of the index's own DDL, not user input.
    lead = sql.Identifier(key.expression) if key.is_column else sql.SQL("(" + key.expression + ")")
    query = sql.SQL("SELECT /* kit */ * FROM {t} WHERE {k} = %(k0)s").format(
        t=sql.Identifier(spec.schema, spec.table), k=lead
    )
    if spec.predicate:
        query = sql.SQL("{} AND ({})").format(query, sql.SQL(spec.predicate))
    return Probe(
        index=spec.name, table=spec.table, definition=spec.definition, query=query.as_string(None), sample=("k0",)
    ), query


HAS_ID = """SELECT /* kit */ EXISTS (SELECT 1 FROM pg_attribute
WHERE attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND attname = 'id' AND NOT attisdropped)"""


def sample_params(conn: psycopg.Connection, spec: IndexSpec, probe: Probe) -> dict:
    """Parameter values from one row in the middle of the table (by id when there is one)."""
    if not probe.sample:
        return {}
    key = spec.keys[0]
    where: sql.Composable
    if kit_probe(spec) is None:  # derived: the leading key, as k0
        lead = sql.Identifier(key.expression) if key.is_column else sql.SQL("(" + key.expression + ")")
        cols, where = sql.SQL("{} AS k0").format(lead), sql.SQL("{} IS NOT NULL").format(lead)
    else:
        cols = sql.SQL(", ").join(map(sql.Identifier, probe.sample))
        where = sql.SQL(probe.sample_where or "true")
    table = sql.Identifier(spec.schema, spec.table)
    has_id = conn.execute(HAS_ID, [spec.schema, spec.table]).fetchone()
    assert has_id is not None, "HAS_ID returns one row"
    if has_id[0]:
        mid = sql.SQL(
            "SELECT /* kit */ {c} FROM {t} WHERE {w} AND id >= (SELECT (min(id) + max(id)) / 2 "
            "FROM {t}) ORDER BY id LIMIT 1"
        ).format(c=cols, t=table, w=where)
        row = conn.execute(mid).fetchone()
        if row is not None:
            return dict(zip(probe.sample, row, strict=False))
    row = conn.execute(
        sql.SQL("SELECT /* kit */ {c} FROM {t} WHERE {w} LIMIT 1").format(c=cols, t=table, w=where)
    ).fetchone()
    return dict(zip(probe.sample, row, strict=False)) if row else {k: None for k in probe.sample}


def plan_indexes(node: dict) -> list[str]:
    """Every index a plan tree names, depth first."""
    found = [node["Index Name"]] if "Index Name" in node else []
    for child in node.get("Plans", ()):
        found += plan_indexes(child)
    return found


def plan_nodes(node: dict) -> list[str]:
    out = [node["Node Type"] + (f" on {node['Relation Name']}" if "Relation Name" in node else "")]
    for child in node.get("Plans", ()):
        out += plan_nodes(child)
    return out


@dataclass(frozen=True)
class Timing:
    """Repeated EXPLAIN ANALYZE of one probe in one fresh session."""

    name: str
    query: str
    params: dict = field(repr=False)  # values from the data: never shown
    exec_ms: tuple[float, ...]
    indexes: tuple[str, ...]  # indexes the last plan names
    plan: str  # node types, outermost first
    est_rows: float
    table_rows: float
    table_pages: int
    idx_scan_delta: int | None = None  # scans of this index during the measurement

    @property
    def median_ms(self) -> float:
        return statistics.median(self.exec_ms)

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.exec_ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


EXPLAIN = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}")
TABLE_SIZE = """SELECT /* kit */ c.reltuples::float8, c.relpages FROM pg_class c
WHERE c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text))"""


def _explained(conn: psycopg.Connection, stmt: sql.Composed, params: dict) -> dict:
    """The JSON plan an ``EXPLAIN (FORMAT JSON)`` returns."""
    row = conn.execute(stmt, params).fetchone()
    assert row is not None, "EXPLAIN returns one row"
    return row[0][0]


def time_probe(url: str, spec: IndexSpec, *, params: dict | None = None, warmup: int = 2, repeats: int = 5) -> Timing:
    """Warm up, then EXPLAIN ANALYZE ``repeats`` times in a new session of its own."""
    probe, query = probe_for(spec)
    with sessions.connect(url, app="dbperf-kit-verify") as conn:
        conn.execute("SELECT /* kit */ set_config('statement_timeout', %s, false)", [_STATEMENT_TIMEOUT])
        if params is None:
            params = sample_params(conn, spec, probe)
        size = conn.execute(TABLE_SIZE, [spec.schema, spec.table]).fetchone()
        if size is None:
            raise ConfigError(f"table {spec.qualified_table} of index {spec.name} does not exist; create it first")
        rows, pages = size
        times, plan = [], {}
        for i in range(warmup + repeats):
            plan = _explained(conn, EXPLAIN.format(query), params)
            if i >= warmup:
                times.append(float(plan["Execution Time"]))
    top = plan["Plan"]
    return Timing(
        spec.name,
        probe.query,
        params,
        tuple(times),
        tuple(plan_indexes(top)),
        " > ".join(plan_nodes(top)),
        float(top.get("Plan Rows", 0)),
        rows,
        pages,
    )


def measure(
    engine: Engine,
    specs: tuple[IndexSpec, ...] | list[IndexSpec] | None = None,
    *,
    params: dict[str, Timing] | None = None,
    warmup: int = 2,
    repeats: int = 5,
    settle_s: float = 2.0,
) -> dict[str, Timing]:
    """One :class:`Timing` per spec; pass an earlier measurement as ``params`` to reuse its values."""
    specs = tuple(specs) if specs is not None else default_specs(engine)
    url = url_of(engine)
    names = [s.name for s in specs]
    first = idx_scans(url, names, settle_s=0)
    out = {
        s.name: time_probe(
            url,
            s,
            params=params[s.name].params if params and s.name in params else None,
            warmup=warmup,
            repeats=repeats,
        )
        for s in specs
    }
    last = idx_scans(
        url, names, settle_s=settle_s, expect=[n for n, t in out.items() if n in t.indexes], baseline=first
    )
    return {n: replace(t, idx_scan_delta=(last[n] - first.get(n, 0)) if n in last else None) for n, t in out.items()}


FORCED = sql.SQL("EXPLAIN (FORMAT JSON) {}")


def why_unused(url: str, spec: IndexSpec, after: Timing) -> str:
    """Why the planner did not use ``spec`` for its probe: another index, table size, selectivity."""
    if after.table_rows <= 0 or any(v is None for v in after.params.values()):
        return "table is empty (or never analyzed): nothing for an index to find"
    others = [i for i in after.indexes if i != spec.name]
    if others:
        return f"planner chose another index: {others[0]}"
    _probe, query = probe_for(spec)
    with sessions.connect(url, app="dbperf-kit-verify") as conn:
        exists = conn.execute(
            "SELECT /* kit */ to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", [spec.schema, spec.name]
        ).fetchone()
        assert exists is not None, "a SELECT without FROM returns one row"
        if not exists[0]:
            return "index does not exist (not applied)"
        chosen = _explained(conn, FORCED.format(query), after.params)["Plan"]
        conn.execute("SET /* kit */ enable_seqscan = off")
        forced = _explained(conn, FORCED.format(query), after.params)["Plan"]
    if spec.name not in plan_indexes(forced):
        return "the index cannot serve this query (its leading key is not constrained)"
    costs = f"cost {forced['Total Cost']:.0f} with it vs {chosen['Total Cost']:.0f} without"
    if after.table_pages < SMALL_TABLE_PAGES:
        return (
            f"table too small ({after.table_rows:.0f} rows, {after.table_pages} pages): "
            f"a sequential scan is cheaper; {costs}"
        )
    share = after.est_rows / after.table_rows if after.table_rows else 1.0
    return f"low selectivity: ~{after.est_rows:.0f} of {after.table_rows:.0f} rows ({share:.0%}) match; {costs}"


@dataclass(frozen=True)
class VerifyResult:
    rows: tuple[dict, ...]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows))

    @property
    def used(self) -> list[str]:
        return [r["name"] for r in self.rows if r["used"]]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(list(self.rows), default=str, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> VerifyResult:
        return cls(rows=tuple(json.loads(Path(path).read_text())))


def verify(
    engine: Engine,
    before: dict[str, Timing],
    after: dict[str, Timing],
    specs: tuple[IndexSpec, ...] | list[IndexSpec] | None = None,
) -> VerifyResult:
    """Join two measurements: used or not (and why), medians, p95s, speedup, idx_scan delta."""
    specs = tuple(specs) if specs is not None else default_specs(engine)
    url = url_of(engine)
    rows = []
    for spec in specs:
        b, a = before.get(spec.name), after[spec.name]
        used = spec.name in a.indexes
        rows.append(
            {
                "name": spec.name,
                "table": spec.table,
                "used": used,
                "exec_ms_before": round(b.median_ms, 3) if b else None,
                "exec_ms_after": round(a.median_ms, 3),
                "p95_ms_before": round(b.p95_ms, 3) if b else None,
                "p95_ms_after": round(a.p95_ms, 3),
                "speedup": round(b.median_ms / a.median_ms, 2) if b and a.median_ms > 0 else None,
                "reason": "plan names the index" if used else why_unused(url, spec, a),
                "plan_before": b.plan if b else None,
                "plan_after": a.plan,
                "idx_scan_delta": a.idx_scan_delta,
                "table_rows": a.table_rows,
                "query": a.query,
            }
        )
    return VerifyResult(rows=tuple(rows))


IDX_SCANS = "SELECT /* kit */ indexrelname, idx_scan FROM pg_stat_user_indexes WHERE indexrelname = ANY(%s)"


def idx_scans(
    url: str,
    names: list[str],
    *,
    settle_s: float = 2.0,
    expect: Sequence[str] = (),
    baseline: dict[str, int] | None = None,
) -> dict[str, int]:
    """idx_scan per index. Sessions flush their statistics as they exit, a moment after we close
    them: poll up to ``settle_s`` until every index in ``expect`` shows a change."""
    deadline = time.monotonic() + settle_s
    with sessions.connect(url) as conn:
        current: dict[str, int] = dict(conn.execute(IDX_SCANS, [names]).fetchall())
        first = baseline or {}
        while expect and time.monotonic() < deadline:
            time.sleep(0.1)
            current = dict(conn.execute(IDX_SCANS, [names]).fetchall())
            if all(current.get(n, 0) > first.get(n, 0) for n in expect):
                break
    return current
