"""The general loop on any database: plan the fixes, measure their statements on real values,
apply them safely (only with ``apply``), measure again in fresh sessions, keep or revert each,
and leave ``fixes.sql`` and ``fixes.json`` in the run folder (talks to PostgreSQL).

With ``apply`` the whole loop — from before the plan to the last verdict or revert — holds the
database's apply lock (:mod:`kit.safety.applylock`): a second apply is refused before it plans
(one planned while another builds would plan the same index again under another name), and the
INVALID indexes the kit's interrupted builds left are dropped before the plan
(:mod:`kit.fixes.leftovers`). SIGTERM raises as Ctrl-C does meanwhile (:mod:`kit.safety.interrupts`).

A dry run takes no lock: it changes nothing, and must not wait for an apply of an hour. Planned
while an apply builds, it would plan the index being built a second time, under ``..._idx_2``
(the builder's name is taken): the index a concurrent build is working on is left out of the plan
with a note (:func:`kit.fixes.plan.plan_fixes`), and a note says which session applies meanwhile.
Indexes the apply will build later get their usual names, and ``fixes.sql``'s
``IF NOT EXISTS`` skips them once built.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import psycopg
from sqlalchemy import Engine

from kit import escape
from kit.config import target_key
from kit.db import sessions
from kit.db.engine import url_of
from kit.fixes import leftovers as invalid
from kit.fixes import sqlfile
from kit.fixes.apply import apply_fixes, undo
from kit.fixes.beyond import BEYOND, WORK_MEM_CAP_KB, plan_beyond, role_setting
from kit.fixes.model import (
    APPLIED,
    CREATE,
    FAILED,
    KEPT,
    PLANNED,
    REVERTED,
    WORK_MEM,
    Fix,
    FixPlan,
    Leftover,
    counts,
    fixes_frame,
)
from kit.fixes.plan import Declared, plan_fixes
from kit.fixes.report import STATEMENT_COLUMNS
from kit.fixes.verify import judge, planned_evidence, settle
from kit.safety import applylock, interrupts
from kit.safety.applylock import ApplyLock
from kit.store import records
from kit.workload.measure import Target, again, measure, targets_for
from kit.workload.model import Statement, Workload
from kit.workload.timing import Timing

FIXES_JSON = "fixes.json"
LOOP_JSON = "loop.json"  # the per-statement measurements and index sizes 03 charts
# an index's bytes; a partitioned table's index: its partitions' indexes together
INDEX_SIZE = """SELECT /* kit */ coalesce((SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree(x.r)), pg_relation_size(x.r))
FROM (SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) AS r) x"""


@dataclass(frozen=True)
class LoopResult:
    target: str  # the database, without password
    workload: Workload
    plan: FixPlan
    fixes: tuple[Fix, ...]  # with their final verdicts
    before: dict[str, Timing]
    after: dict[str, Timing]
    applied: bool
    seconds: float
    apply_requested: bool = False  # apply was asked for (applied is False when there was nothing to apply)
    leftovers: tuple[Leftover, ...] = ()  # INVALID indexes found before the plan, and what was done

    def to_frame(self) -> pd.DataFrame:
        return fixes_frame(self.fixes)

    @property
    def mode(self) -> sqlfile.Mode:
        """What fixes.sql says was done: a dry run, applied, or nothing to apply."""
        return sqlfile.APPLIED if self.applied else sqlfile.NOTHING if self.apply_requested else sqlfile.DRY

    def details(self) -> dict[str, str]:
        """Per measured statement, a line for fixes.sql: its share of the database's time and its evidence."""
        out = {}
        for s in self.statements():
            timing = self.before.get(s.key)
            share = f"{s.share_pct:.1f}% of the database's time over the window; " if s.queryid is not None else ""
            out[s.key] = share + (timing.evidence or timing.reason if timing else "not measured")
        return out

    @property
    def figures(self) -> dict[str, int]:
        return counts(self.fixes, applied=self.applied)

    def statements(self) -> tuple[Statement, ...]:
        return (*self.workload.targets, *self.plan.probes)

    def statements_frame(self) -> pd.DataFrame:
        """Per measured statement: calls and share of time over the window, median and CI before and
        after, speedup, how it was measured, the indexes its plan names after."""
        fixes_of: dict[str, list[str]] = {}
        for f in self.fixes:
            for k in f.statements:
                fixes_of.setdefault(k, []).append(f.index or f.target_table)
        rows = []
        for s in self.statements():
            b, a = self.before.get(s.key), self.after.get(s.key)
            bm, am = (b.median_ms if b else None), (a.median_ms if a else None)
            rows.append(
                {
                    "key": s.key,
                    "query": s.query,
                    "kind": s.kind,
                    "calls": s.calls,
                    "total_ms": s.total_ms,
                    "share_pct": s.share_pct,
                    "mode": b.mode if b else None,
                    "reason": b.reason if b else "",
                    "reproduced": b.reproduced if b else None,
                    "evidence": b.evidence if b else "",
                    "values_from": "; ".join(b.sources) if b else "",
                    "before_ms": bm,
                    "before_lo": b.ci_ms[0] if b else None,
                    "before_hi": b.ci_ms[1] if b else None,
                    "after_ms": am,
                    "after_lo": a.ci_ms[0] if a else None,
                    "after_hi": a.ci_ms[1] if a else None,
                    "speedup": bm / am if bm and am else None,
                    "cost_before": b.cost if b else None,
                    "cost_after": a.cost if a else None,
                    "plan_before": b.plan if b else "",
                    "plan_after": a.plan if a else "",
                    "fixes": ", ".join(fixes_of.get(s.key, [])),
                    "insights": "; ".join(f"{i.evidence} [{i.fix}]" for i in b.insights) if b else "",
                }
            )
        return pd.DataFrame(rows, columns=STATEMENT_COLUMNS)

    def to_json(self) -> dict:
        frame = self.statements_frame()
        return {
            "target": self.target,
            "applied": self.applied,
            "seconds": round(self.seconds, 2),
            "basis": self.workload.basis,
            "total_ms": self.workload.total_ms,
            "statements": json.loads(frame.to_json(orient="records")),
            "budget_bytes": self.plan.budget_bytes,
            "notes": list(self.plan.notes),
            "probes": [{"key": p.key, "text": p.text} for p in self.plan.probes],  # the kit's own statements
            "fixes": [
                {
                    **f.to_record(),
                    "schema": f.schema,
                    "table": f.table,
                    "index_name": f.index_name,
                    "saved_ms": f.saved_ms,
                    "rows_written": f.rows_written,
                    "write_ms": f.write_ms,
                    "depends_on": f.depends_on,
                    "index": f.index,
                    "source": f.source,
                    "declared": f.declared,
                    "est_bytes": f.est_bytes,
                    "bytes_after": f.bytes_after,
                    "why": f.why,
                    "expect": f.expect,
                    "object_name": f.object_name,
                    "columns": list(f.columns),
                    "kinds": list(f.kinds),
                    "role": f.role,
                    "setting": f.setting,
                    "prior": f.prior,
                }
                for f in self.fixes
            ],
            "leftovers": [f.to_record() for f in self.leftovers],
        }

    def save(self, folder: str | Path | None = None) -> dict[str, Path]:
        """fixes.sql, fixes.json (exactly the keys of :data:`kit.fixes.model.RECORD_KEYS`) and
        loop.json into ``folder`` (default: the run folder, else ``.kit/artifacts``)."""
        folder = Path(folder) if folder else records.artifact_path(FIXES_JSON).parent
        texts = {s.key: s.text for s in self.statements()}
        paths = {
            "sql": sqlfile.write(
                folder,
                self.fixes,
                target=self.target,
                mode=self.mode,
                statements=texts,
                details=self.details(),
                leftovers=self.leftovers,
            ),
            "json": folder / FIXES_JSON,
            "loop": folder / LOOP_JSON,
        }
        paths["json"].write_text(json.dumps([f.to_record() for f in self.fixes], indent=1), encoding="utf-8")
        paths["loop"].write_text(json.dumps(self.to_json(), indent=1, default=str), encoding="utf-8")
        return paths

    def record(self) -> dict[str, int]:
        """fixes.planned / applied / kept / reverted (and failed) through kit.record."""
        for name, value in self.figures.items():
            records.record(name, value)
        return self.figures

    def _repr_markdown_(self) -> str:
        f = self.figures
        what = "applied and verified" if self.applied else "dry run: planned only"
        return (
            f"**{f['fixes.planned']} fixes** for {escape.markdown(self.target)} ({what}): {f['fixes.kept']} kept, "
            f"{f['fixes.reverted']} reverted, {f['fixes.failed']} failed — {self.seconds:.1f} s"
        )


def _sizes(url: str, fixes: tuple[Fix, ...]) -> tuple[Fix, ...]:
    with sessions.connect(url) as conn:
        return tuple(
            f.but(bytes_after=_index_size(conn, f.schema, f.index_name))
            if f.kind == CREATE and f.verdict == KEPT
            else f
            for f in fixes
        )


def _index_size(conn: psycopg.Connection, schema: str, name: str | None) -> int:
    row = conn.execute(INDEX_SIZE, [schema, name]).fetchone()
    assert row is not None, "INDEX_SIZE returns one row"
    return int(row[0] or 0)


def run_loop(
    engine: Engine,
    workload: Workload,
    *,
    apply: bool = False,
    declared: Declared | None = None,
    warmup: int = 1,
    repeats: int = 5,
    min_rows: int = 10_000,
    budget_bytes: int | None = None,
    reviewed: FixPlan | None = None,
    apply_settings: bool = False,
    work_mem_cap_kb: int = WORK_MEM_CAP_KB,
    out: Callable[[str], None] | None = print,
) -> LoopResult:
    """Steps: 0. with ``apply``, the database's apply lock (ApplyInProgress at once when another session
    holds it), held to the end, and the kit's INVALID leftovers dropped (a dry run lists them);
    1. parameter values from the data, those that reproduce the workload measured before (writes only
    with ``apply``, rolled back); 2. plan on those values, with the fixes beyond indexes their plans
    call for (:mod:`kit.fixes.beyond`: extended statistics, a role's work_mem up to ``work_mem_cap_kb``,
    VACUUM); 3. the probes the plan wrote, measured
    before; 4. apply (pre-flight first); 5. measure after, same values, fresh sessions; 6. keep or
    revert each fix, then the set as a whole (:func:`kit.fixes.verify.settle`). Steps 4-6 run twice
    when the plan holds fixes beyond indexes: those first, then the indexes, judged on what the first
    round left — a new index is kept only for what it adds.
    ``budget_bytes`` caps the new indexes' estimated size (None: half the size of their tables);
    ``reviewed`` is a plan reviewed in a dry run (:func:`kit.fixes.reviewed.reviewed_plan`): step 2 then
    takes it as it is, and ``workload`` is the statements it names. A role's setting is applied only
    with ``apply_settings`` too (else it stays planned, and says so)."""
    with contextlib.ExitStack() as stack:
        lock = None
        if apply:  # 0.
            stack.enter_context(interrupts.sigterm_raises())
            lock = stack.enter_context(applylock.hold(url_of(engine)))
        return _loop(
            engine,
            workload,
            lock=lock,
            declared=declared,
            warmup=warmup,
            repeats=repeats,
            min_rows=min_rows,
            budget_bytes=budget_bytes,
            reviewed=reviewed,
            settings=(apply_settings, work_mem_cap_kb),
            out=out,
        )


def _loop(
    engine: Engine,
    workload: Workload,
    *,
    lock: ApplyLock | None,
    declared: Declared | None,
    warmup: int,
    repeats: int,
    min_rows: int,
    budget_bytes: int | None,
    reviewed: FixPlan | None,
    settings: tuple[bool, int],
    out: Callable[[str], None] | None,
) -> LoopResult:
    started = time.monotonic()
    url = url_of(engine)
    say = escape.lines_to(out)
    apply = lock is not None
    left = invalid.repair(engine, lock=lock, out=say) if lock is not None else invalid.review(engine, out=say)  # 0.
    reuse = {f.name for f in left if f.action == "would drop"}  # dropped ones are free already
    targets = targets_for(url, workload.targets)  # 1.
    before = measure(url, targets, warmup=warmup, repeats=repeats, writes=apply)
    plan = reviewed or plan_fixes(
        engine,
        workload,
        declared=declared,
        min_rows=min_rows,
        reuse=reuse,  # 2.
        budget_bytes=budget_bytes,
        values={k: t.params for k, t in before.items() if t.params},
    )
    apply_settings, cap_kb = settings
    if reviewed is None:
        queryids = {s.key: s.queryid for s in workload.targets if s.queryid is not None}
        more = plan_beyond(url, targets, before, queryids=queryids, cap_kb=cap_kb, repeats=repeats)
        plan = replace(plan, fixes=(*plan.fixes, *more.fixes), notes=(*plan.notes, *more.notes))
    if not apply:
        plan = _note_apply_in_progress(url, plan, say)
    probes = targets_for(url, plan.probes)  # 3.
    before |= measure(url, probes, warmup=warmup, repeats=repeats, writes=apply)
    targets += probes
    fixes, after = tuple(planned_evidence(f, before) for f in plan.fixes), {}
    held = {i for i, f in enumerate(fixes) if f.kind == WORK_MEM and not apply_settings}
    todo = [f for i, f in enumerate(fixes) if i not in held]
    if lock is not None and todo:
        # 4.-6. in two rounds: the fixes that cost no writes and no storage first, then the indexes,
        # each judged on top of what the first round left (both would claim one statement's gain)
        first = [f for f in todo if f.kind in BEYOND]
        rounds = [first, [f for f in todo if f.kind not in BEYOND]] if first else [todo]
        base, judged = before, dict[int, Fix]()
        for part in rounds:
            if not part:
                continue
            applied = apply_fixes(engine, part, lock=lock, out=out)
            settled = [*judged.values(), *applied]
            after = measure(url, _with_settings(url, again(targets, before), settled), warmup=warmup, repeats=repeats)
            for old, new in zip(
                part, _verdicts(engine, applied, base, after, lock=lock, say=say, out=out), strict=True
            ):
                judged[id(old)] = new
            # what the first round left is the next one's "before"; whether a statement's measurement
            # reproduced the workload is still said of the first measurement (a fixed one no longer does)
            base = {
                k: replace(t, reproduced=before[k].reproduced, evidence=before[k].evidence) if k in before else t
                for k, t in after.items()
            }
        todo = list(_sizes(url, tuple(judged[id(f)] for f in todo)))
    done = iter(todo)
    fixes = tuple(_held(f) if i in held else next(done) for i, f in enumerate(fixes))
    return LoopResult(
        target=target_key(url),
        workload=workload,
        plan=plan,
        fixes=tuple(fixes),
        before=before,
        after=after,
        applied=bool(apply and todo),
        seconds=time.monotonic() - started,
        apply_requested=apply,
        leftovers=left,
    )


def _verdicts(
    engine: Engine,
    fixes: tuple[Fix, ...],
    before: dict[str, Timing],
    after: dict[str, Timing],
    *,
    lock: ApplyLock,
    say: Callable[[str], None],
    out: Callable[[str], None] | None,
) -> tuple[Fix, ...]:
    """Keep or revert each applied fix, then the set as a whole (a revert under the loop's lock)."""
    applied = [fix.verdict == APPLIED for fix in fixes]
    judged = settle(
        [judge(f, before, after) if ok else f for f, ok in zip(fixes, applied, strict=False)], before, after
    )
    for i, fix in enumerate(judged):
        if applied[i] and fix.verdict == REVERTED:
            why = undo(engine, fix, lock=lock, out=out)
            say(f"reverted {fix.index or fix.target_table}: {fix.reason}")
            if why:
                judged[i] = fix.but(verdict=FAILED, reason=f"{fix.reason}; {why}")
    return tuple(judged)


def _held(fix: Fix) -> Fix:
    return fix.but(
        verdict=PLANNED,
        reason=f"a setting of role {fix.role}: applied only with apply_settings (run with -p apply_settings true "
        "after reading what it may cost)",
    )


def _with_settings(url: str, targets: list[Target], fixes: list[Fix] | tuple[Fix, ...]) -> list[Target]:
    """The targets of each applied (or kept) work_mem fix with the value the catalog now holds for its role, set
    in the statement's transaction as the role's own sessions would have it (the kit may connect as another role)."""
    applied = [f for f in fixes if f.kind == WORK_MEM and f.verdict in (APPLIED, KEPT) and f.role]
    if not applied:
        return targets
    with sessions.connect(url, app="dbperf-kit-measure") as conn:
        value = {k: role_setting(conn, f.role or "", "work_mem") for f in applied for k in f.statements}
    return [replace(t, settings=(("work_mem", v),)) if (v := value.get(t.key)) else t for t in targets]


def _note_apply_in_progress(url: str, plan: FixPlan, say) -> FixPlan:
    """A dry run while an apply holds the lock: say so in the plan (what it builds may change it)."""
    with sessions.connect(url, app="dbperf-kit-plan") as conn:
        found = applylock.holder(conn)
    if found is None:
        return plan
    note = (
        f"an apply was running while this plan was made ({found.describe()}): indexes it was building "
        "are left out, and what it changes may change the plan — plan again once it has finished"
    )
    say(f"note: {note}")
    return replace(plan, notes=(*plan.notes, note))
