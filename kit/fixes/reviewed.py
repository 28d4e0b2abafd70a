"""Apply what was reviewed: the plan a dry run wrote (``loop.json``, the same fixes as its
``fixes.sql``), read back and checked again against the database as it is now (talks to PostgreSQL,
read-only).

A user reviews ``fixes.sql`` and then applies *that* plan (``kit apply RUN``, or ``kit run -p apply
true -p plan RUN``), not a new one planned over whatever ran since. Before anything is applied each
fix is checked again: a new index must still be missing (an INVALID leftover of its name counts as
missing: apply rebuilds it), an index to drop must still exist, a table to analyze too; a fix that no
longer holds is left out and named in the plan's notes (an ANALYZE, when the table's statistics are
fresh again). Its statements are measured before and after
as the loop always does, their texts read again from pg_stat_statements by queryid (files never hold
them); a statement pg_stat_statements no longer has is named in the notes too.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

from sqlalchemy import Engine

from kit.audit.statements import statements_frame
from kit.config import target_key
from kit.db import sessions
from kit.db.engine import url_of
from kit.errors import ConfigError
from kit.fixes.model import ANALYZE, CREATE, DROP, PLANNED, Fix, FixPlan
from kit.workload.model import Statement, Workload
from kit.workload.statements import previous_window, read_workload, select

LOOP_JSON = "loop.json"
_FIX_FIELDS = {f.name for f in fields(Fix)}
# (schema, name) of a relation: does it exist, and for an index, is it valid
RELATION = """SELECT /* kit */ c.relkind::text,
       coalesce((SELECT x.indisvalid AND x.indisready FROM pg_index x WHERE x.indexrelid = c.oid), true),
       coalesce(s.last_analyze, s.last_autoanalyze) IS NOT NULL AND s.n_mod_since_analyze <= 0.1 * s.n_live_tup
FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text))"""


def load_plan(folder: str | Path, *, target: str) -> FixPlan:
    """The fixes a dry run of ``target`` planned, from its run folder; ConfigError (one line) when the
    folder holds no plan, holds an applied one, or is another database's."""
    path = Path(folder) / LOOP_JSON
    if not path.exists():
        raise ConfigError(
            f"no {LOOP_JSON} in {folder}: not a run of 02_apply_fixes; give the folder of a dry run "
            "(kit history lists them)"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("target") != target:
        raise ConfigError(
            f"run {Path(folder).name} planned fixes for {data.get('target')}, not for {target}; "
            "give a dry run of this database"
        )
    if data.get("applied"):
        raise ConfigError(f"run {Path(folder).name} applied its plan already; give a dry run's folder")
    fixes = tuple(
        Fix(
            **{
                **{k: v for k, v in f.items() if k in _FIX_FIELDS},
                "statements": tuple(f["statements"]),
                "columns": tuple(f.get("columns") or ()),
                "kinds": tuple(f.get("kinds") or ()),
                "verdict": PLANNED,
                "reason": "",
            }
        )
        for f in data["fixes"]
    )
    probes = tuple(Statement(key=p["key"], queryid=None, text=p["text"], kind="select") for p in data.get("probes", ()))
    return FixPlan(fixes, (f"the plan reviewed in run {Path(folder).name}",), probes, data.get("budget_bytes"))


def recheck(engine: Engine, plan: FixPlan) -> FixPlan:
    """``plan`` without the fixes that no longer hold, each named in the notes."""
    kept, notes = [], list(plan.notes)
    with sessions.connect(engine, app="dbperf-kit-plan") as conn:

        def state(schema: str, name: str | None) -> tuple | None:
            return conn.execute(RELATION, [schema, name]).fetchone() if name else None

        for fix in plan.fixes:
            table, index = state(fix.schema, fix.table), state(fix.schema, fix.index_name)
            why = (
                "its table is gone"
                if table is None
                else "the index exists and is valid: applied since"
                if fix.kind == CREATE and index and index[1]
                else "the index is gone already"
                if fix.kind == DROP and index is None
                else "its statistics are fresh: analyzed since"
                if fix.kind == ANALYZE and table[2]
                else ""
            )
            if why:
                notes.append(f"left out {fix.index or fix.target_table}: {why}")
            else:
                kept.append(fix)
    return FixPlan(tuple(kept), tuple(notes), plan.probes, plan.budget_bytes)


def workload_of(engine: Engine, plan: FixPlan, *, chars: int = 100_000) -> Workload:
    """The statements the plan's fixes name, read again from pg_stat_statements by queryid (all its
    history); the ones it no longer has are named in the message."""
    keys = {k for f in plan.fixes for k in f.statements if not k.startswith("probe:")}
    with engine.connect() as conn:
        frame = statements_frame(conn, chars=chars)
        conn.rollback()
    total = float(frame["total_ms"].sum()) if len(frame) else 0.0
    mine = frame[frame["queryid"].astype(str).isin(keys)]
    found = tuple(
        replace(s, share_pct=100 * s.total_ms / total if total > 0 else 0.0)
        for s in select(mine, top=len(mine), min_calls=1)
    )
    missing = sorted(keys - {s.key for s in found})
    message = f"{len(found)} statements the reviewed plan names" + (
        f"; pg_stat_statements no longer has {', '.join(missing)}" if missing else ""
    )
    return Workload(
        "ok",
        message,
        "the statements of the reviewed plan, over pg_stat_statements' history",
        found,
        total,
        int(frame["calls"].sum()) if len(frame) else 0,
    )


def reviewed_plan(engine: Engine, folder: str | Path) -> tuple[FixPlan, Workload]:
    """The plan of the dry run in ``folder``, checked again, and the statements it names."""
    plan = recheck(engine, load_plan(folder, target=target_key(url_of(engine))))
    return plan, workload_of(engine, plan)


def what_to_fix(
    engine: Engine, *, plan: str = "", top: int = 10, min_calls: int = 10
) -> tuple[Workload, FixPlan | None]:
    """What 02 works on: the plan reviewed in the run folder ``plan`` (and the statements it names), or
    without one, the workload since the previous run of this database (and no plan yet)."""
    if plan:
        reviewed, work = reviewed_plan(engine, plan)
        return work, reviewed
    return read_workload(engine, previous=previous_window(engine), top=top, min_calls=min_calls), None
