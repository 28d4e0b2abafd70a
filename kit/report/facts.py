"""What a run found, fixed and left, read from its folder for the one-page report (no database).

The sources are the files every run writes: ``bundle.json`` (status, statements, findings, figures),
``loop.json`` (each statement measured before and after, each fix with its verdict) and the earlier
bundles of the same target (the previous run, the trend). A section with nothing to say is empty
here; the page says so in one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from kit.errors import ConfigError
from kit.fixes.model import ANALYZE, CREATE, DROP, FAILED, KEPT, PLANNED, REVERTED, STATISTICS, VACUUM, WORK_MEM
from kit.fixes.report import LoopReport, load_report
from kit.report import units
from kit.sqltext.label import short_name
from kit.store.evidence import BUNDLE_FILE, OK, Bundle
from kit.store.history import read_bundle, trend_frame

VerdictName = Literal["healthy", "needs attention", "regression", "incomplete"]
HEALTHY: Final = "healthy"
ATTENTION: Final = "needs attention"
REGRESSION: Final = "regression"
INCOMPLETE: Final = "incomplete"
SEVERE = ("critical", "high")
_SEVERITY_ORDER = {s: i for i, s in enumerate(("critical", "high", "medium", "low"))}
TOP = 8  # statements on the first screen
WORTH_A_LOOK_PCT = 10.0  # a statement with this share of the database's time and no fix is left to do
SERVED_BY_DECLARED = 10  # window mean / measured median: the declared indexes built before the loop serve it
FREQUENT_CALLS, FAST_MS = 100, 1.0  # a statement called this often, each call this fast: its count is its cost
# Findings the report shows elsewhere: the top statements are its statements table.
SHOWN_AS_STATEMENTS = {"top_queries"}
PLAIN_CAUSES = {"work", "frequency"}  # diagnoses the report words itself from the loop's measurement
DECLARED_MISSING = {"missing_indexes", "invalid_indexes"}


@dataclass(frozen=True)
class Statement:
    """One top statement: its short name (``SELECT orders #2``), its redacted text, where its time
    went and, in one sentence each, why it costs that and what was done."""

    rank: int
    label: str
    text: str
    calls: float
    total_ms: float
    share_pct: float
    mean_ms: float | None
    cause: str
    fix: str
    before_ms: float | None = None
    after_ms: float | None = None


@dataclass(frozen=True)
class FixLine:
    what: str  # "index kit_orders_customer_id_idx on public.orders"
    kind: str
    verdict: str
    speedup: float | None
    before_ms: float | None
    after_ms: float | None
    why: str
    reason: str
    statements: tuple[str, ...]  # labels of the statements it is for
    bytes: int | None = None


@dataclass(frozen=True)
class Issue:
    """An audit finding: its check, what it is about, how bad, and what to do."""

    check: str
    subject: str
    severity: str
    detail: str
    remedy: str


@dataclass(frozen=True)
class RunFacts:
    run: str
    created_at: datetime
    status: str
    target: str
    verdict: VerdictName
    verdict_why: str
    applied: bool | None  # None: no fix loop in this run
    basis: str  # the statistics window the statements' figures cover
    db_time_ms: float
    statements: tuple[Statement, ...]
    fixes: tuple[FixLine, ...]
    issues: tuple[Issue, ...]
    todo: tuple[str, ...]
    share_fixed: tuple[float, float | None] | None  # share of db time of the fixed statements before, after
    indexes: dict[str, int] = field(default_factory=dict)  # declared indexes by state
    declared_by: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    trend: tuple[dict[str, Any], ...] = ()  # earlier runs of the target: run, created_at, figure values
    notebooks: tuple[tuple[str, str, str | None], ...] = ()  # name, status, html file
    loop: LoopReport | None = None
    previous_run: str | None = None
    new_findings: tuple[str, ...] = ()  # severe findings absent from the previous run
    declared_applied: tuple[str, ...] = ()  # declared indexes missing at the audit, applied by this run


def read_run(folder: str | Path) -> RunFacts:
    """The facts of the run in ``folder``; a ConfigError in one line when it is not a run folder."""
    folder = Path(folder)
    if not (folder / BUNDLE_FILE).is_file():
        raise ConfigError(f"{folder} holds no {BUNDLE_FILE}: not a run folder of `kit run` (see `kit history`)")
    bundle = read_bundle(folder)
    loop = load_report(folder / "loop.json") if (folder / "loop.json").is_file() else None
    fixes_json = _json(folder / "loop.json").get("fixes", []) if loop is not None else []
    rows = _statement_rows(bundle, loop)
    labels = _labels(rows, loop)
    declared = applied_since_audit(bundle)
    fixes_json = [
        {**f, "why": _named(f.get("why"), labels), "reason": _named(f.get("reason"), labels)} for f in fixes_json
    ]
    statements = _statements(rows, loop, fixes_json, labels, declared=len(declared), diagnosed=_diagnosis(folder))
    fixes = tuple(_fix_line(f, labels) for f in fixes_json)
    issues = _issues(bundle)
    previous = _previous(folder, bundle)
    new = _new_severe(bundle, previous)
    verdict, why = _verdict(bundle, statements, fixes, issues, new)
    return RunFacts(
        run=bundle.run,
        created_at=bundle.created_at,
        status=bundle.status,
        target=bundle.target or "no database",
        verdict=verdict,
        verdict_why=why,
        applied=loop.applied if loop is not None else None,
        basis=(loop.basis if loop is not None else bundle.statements.basis if bundle.statements else ""),
        db_time_ms=(loop.total_ms if loop is not None else bundle.statements.total_ms if bundle.statements else 0.0),
        statements=statements,
        fixes=fixes,
        issues=issues,
        todo=_todo(statements, fixes, issues, loop),
        share_fixed=loop.share_of_fixed if loop is not None and any(f.statements for f in fixes) else None,
        indexes=dict(bundle.indexes.counts) if bundle.indexes else {},
        declared_by=bundle.indexes.declared_by if bundle.indexes else "",
        figures=dict(bundle.figures),
        trend=_trend(folder.parent, bundle),
        notebooks=tuple((n.name, n.status, n.html) for n in bundle.notebooks),
        loop=loop,
        previous_run=previous.run if previous else None,
        new_findings=new,
        declared_applied=declared,
    )


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _labels(rows: list[dict[str, Any]], loop: LoopReport | None) -> dict[str, str]:
    """Statement key -> ``SELECT orders #rank``, ranked by share of time (the same in every section)."""
    return {str(r["key"]): f"{short_name(r['query'])} #{i}" for i, r in enumerate(rows, 1)} | {
        str(k): f"{short_name(q)} (kit probe)" for k, q in _probes(loop)
    }


def _probes(loop: LoopReport | None) -> list[tuple[str, str]]:
    if loop is None or loop.statements.empty:
        return []
    probes = loop.statements[loop.statements["key"].astype(str).str.startswith("probe:")]
    return list(zip(probes["key"], probes["query"], strict=True))


def _statement_rows(bundle: Bundle, loop: LoopReport | None) -> list[dict[str, Any]]:
    """The window's statements with calls, most time first: the loop's when it ran, else the bundle's."""
    if loop is not None and not loop.statements.empty:
        rows = [r for r in loop.statements.to_dict("records") if (r["calls"] or 0) > 0]
        for r in rows:
            r["mean_ms"] = r["total_ms"] / r["calls"] if r["calls"] else None
    elif bundle.statements is not None:
        total = bundle.statements.total_ms or 0.0
        rows = [
            {**r, "key": r["queryid"], "share_pct": 100 * r["total_ms"] / total if total else 0.0}
            for r in bundle.statements.diff
            if (r.get("calls") or 0) > 0
        ]
    else:
        rows = []
    return sorted(rows, key=lambda r: -(r.get("total_ms") or 0.0))


def _named(text: str | None, labels: dict[str, str]) -> str:
    """``text`` with each statement key (a queryid means nothing to a reader) written as its label."""
    text = str(text or "")
    for key in sorted(labels, key=len, reverse=True):
        if key in text:
            text = text.replace(key, labels[key])
    return text


def _diagnosis(folder: Path) -> dict[str, dict[str, Any]]:
    """The audit's diagnosis of each top statement (01's ``diagnosis.json``), by statement key."""
    path = folder / "diagnosis.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text(encoding="utf-8")).get("data", [])
    return {str(r["key"]): r for r in rows}


def _statements(
    rows: list[dict[str, Any]],
    loop: LoopReport | None,
    fixes: list[dict[str, Any]],
    labels: dict[str, str],
    *,
    declared: int,
    diagnosed: dict[str, dict[str, Any]],
) -> tuple[Statement, ...]:
    out = []
    for rank, r in enumerate(rows, 1):
        key = str(r["key"])
        mine = [f for f in fixes if key in map(str, f["statements"])]
        cause, fix = _cause_and_fix(r, mine, loop, declared=declared, diagnosis=diagnosed.get(key))
        out.append(
            Statement(
                rank=rank,
                label=labels.get(key, f"statement #{rank}"),
                text=str(r.get("query") or ""),
                calls=float(r.get("calls") or 0),
                total_ms=float(r.get("total_ms") or 0.0),
                share_pct=float(r.get("share_pct") or 0.0),
                mean_ms=r.get("mean_ms"),
                cause=cause,
                fix=fix,
                before_ms=_number(r.get("before_ms")),
                after_ms=_number(r.get("after_ms")),
            )
        )
    return tuple(out)


def _number(value: Any) -> float | None:
    return None if value is None or value != value else float(value)  # NaN from a frame: none


def _cause_and_fix(
    row: dict[str, Any],
    fixes: list[dict[str, Any]],
    loop: LoopReport | None,
    *,
    declared: int,
    diagnosis: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """Why it costs what it costs and what was done, in a sentence each: its fix when the loop made one;
    else what served it, the audit's diagnosis (waits, counters), what its plan shows, or its shape."""
    found = (_sentence(diagnosis["sentence"]), _sentence(diagnosis["remedy"])) if diagnosis else None
    if loop is None:
        return found or ("", "not judged in this run: the fix loop (02) did not run")
    if fixes:
        best = max(fixes, key=lambda f: (f["verdict"] == KEPT, f.get("speedup") or 0.0))
        return _sentence(best.get("why") or ""), _fix_sentence(best)
    calls, mean = float(row.get("calls") or 0), _number(row.get("mean_ms"))
    measured = _number(row.get("before_ms"))
    if declared and mean is not None and measured and mean >= SERVED_BY_DECLARED * measured:
        plan = f" ({row['plan_before']})" if row.get("plan_before") else ""
        return (
            f"{units.count(calls)} call(s) at {_ms(mean)} on average in the window, before this run's indexes.",
            f"Served by the {declared} declared index(es) this run built: {_ms(measured)} when measured after{plan}.",
        )
    if found is not None and diagnosis and diagnosis.get("cause") not in PLAIN_CAUSES:
        return found
    shown = row.get("insights")  # what its plan showed on the workload's values (the loop's measurement)
    if isinstance(shown, str) and shown and row.get("reproduced") is not False:
        return (
            _sentence(shown.split("; ")[0]),
            "No index or ANALYZE the kit tried made it faster: this cause needs another fix.",
        )
    if calls >= FREQUENT_CALLS and mean is not None and mean < FAST_MS:
        return (
            f"Called {units.count(calls)} times at {_ms(mean)} each: its time comes from how often it runs.",
            "No index helps a statement this fast; run it less often (batch the loop that calls it, or cache it).",
        )
    reason = str(row.get("reason") or "")
    if row.get("mode") in (None, "") or _number(row.get("before_ms")) is None:
        return (
            f"{units.count(calls)} call(s) at {_ms(mean)} on average.",
            _sentence(f"not measured: {reason}" if reason else "not measured"),
        )
    return (
        f"{units.count(calls)} call(s) at {_ms(mean)} on average.",
        "No index or ANALYZE the kit tried made it faster on the workload's values.",
    )


def _ms(value: Any) -> str:
    return units.duration(_number(value))


def _fix_sentence(f: dict[str, Any]) -> str:
    what = _what(f)
    verdict = f["verdict"]
    if verdict == KEPT:
        gain = f" ({units.speedup(f.get('speedup'))})" if f.get("speedup") else ""
        return f"{what}: applied and kept{gain}."
    if verdict == REVERTED:
        return _sentence(f"{what}: applied, measured and reverted — {f.get('reason') or 'it did not help'}")
    if verdict == FAILED:
        return _sentence(f"{what}: failed — {f.get('reason') or 'see fixes.sql'}")
    if verdict == PLANNED:
        return f"{what}: planned (dry run); run with apply to build and measure it."
    return _sentence(f"{what}: {verdict}")


def _what(f: dict[str, Any]) -> str:
    kind = f["kind"]
    if kind == CREATE:
        return f"New index {f.get('index') or ''} on {f['target_table']}".replace("  ", " ")
    if kind == DROP:
        return f"Drop index {f.get('index') or ''} on {f['target_table']}".replace("  ", " ")
    if kind == ANALYZE:
        return f"ANALYZE {f['target_table']}"
    if kind == VACUUM:
        return f"VACUUM {f['target_table']}"
    if kind == STATISTICS:
        return f"Extended statistics on {f['target_table']}"
    if kind == WORK_MEM:
        return f"work_mem for {f['target_table']}"
    return f"{kind} on {f['target_table']}"


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _fix_line(f: dict[str, Any], labels: dict[str, str]) -> FixLine:
    return FixLine(
        what=_what(f),
        kind=f["kind"],
        verdict=f["verdict"],
        speedup=_number(f.get("speedup")),
        before_ms=_number(f.get("exec_ms_before")),
        after_ms=_number(f.get("exec_ms_after")),
        why=_sentence(f.get("why") or ""),
        reason=_sentence(f.get("reason") or ""),
        statements=tuple(labels.get(str(k), "a statement outside the top") for k in f["statements"]),
        bytes=f.get("bytes_after") or f.get("est_bytes"),
    )


def _issues(bundle: Bundle) -> tuple[Issue, ...]:
    resolved = set(applied_since_audit(bundle))
    rows = [
        Issue(
            check=f.kind,
            subject=f.subject,
            severity=f.severity or "info",
            detail=_sentence(f.detail or ""),
            remedy=_sentence(f.remediation or ""),
        )
        for f in bundle.findings
        if f.severity in _SEVERITY_ORDER and f.kind not in SHOWN_AS_STATEMENTS and f.subject not in resolved
    ]
    return tuple(sorted(rows, key=lambda i: _SEVERITY_ORDER[i.severity]))


def applied_since_audit(bundle: Bundle) -> tuple[str, ...]:
    """Declared indexes the audit found missing or invalid and the bundle, written at the end of the
    run, finds applied: this run applied them."""
    applied = {r["name"] for r in (bundle.indexes.rows if bundle.indexes else ()) if r.get("state") == "applied"}
    return tuple(f.subject for f in bundle.findings if f.kind in DECLARED_MISSING and f.subject in applied)


def _previous(folder: Path, bundle: Bundle) -> Bundle | None:
    if not bundle.previous_run or not (folder.parent / bundle.previous_run / BUNDLE_FILE).is_file():
        return None
    try:
        return read_bundle(folder.parent / bundle.previous_run)
    except (ConfigError, ValueError):
        return None  # an unreadable earlier bundle: no comparison, not a failed report


def _new_severe(bundle: Bundle, previous: Bundle | None) -> tuple[str, ...]:
    if previous is None:
        return ()
    before = {f.key for f in previous.findings}
    return tuple(f"{f.kind}: {f.subject}" for f in bundle.findings if f.severity in SEVERE and f.key not in before)


def _verdict(
    bundle: Bundle,
    statements: tuple[Statement, ...],
    fixes: tuple[FixLine, ...],
    issues: tuple[Issue, ...],
    new: tuple[str, ...],
) -> tuple[VerdictName, str]:
    if bundle.status != OK:
        failed = next((n.name for n in bundle.notebooks if n.status != OK), None)
        return INCOMPLETE, f"the run {bundle.status}" + (
            f" in {failed}" if failed else ""
        ) + ": what follows is partial"
    if new:
        return REGRESSION, f"{len(new)} severe finding(s) new since the previous run ({bundle.previous_run})"
    severe = [i for i in issues if i.severity in SEVERE]
    planned = [f for f in fixes if f.verdict in (PLANNED, FAILED)]
    heavy = [s for s in statements if s.share_pct >= WORTH_A_LOOK_PCT and not s.fix.endswith("kept.")]
    reasons = []
    if severe:
        reasons.append(f"{len(severe)} severe finding(s)")
    if planned:
        reasons.append(f"{len(planned)} fix(es) planned, not applied")
    if any(s.fix.startswith("New index") or s.fix.startswith("Drop index") for s in heavy):
        reasons.append("top statements with a fix not kept")
    if reasons:
        return ATTENTION, "; ".join(reasons)
    kept = sum(f.verdict == KEPT for f in fixes)
    return HEALTHY, (f"{kept} fix(es) applied and kept; " if kept else "") + "no severe finding, nothing left planned"


def _todo(
    statements: tuple[Statement, ...], fixes: tuple[FixLine, ...], issues: tuple[Issue, ...], loop: LoopReport | None
) -> tuple[str, ...]:
    out = []
    planned = [f for f in fixes if f.verdict == PLANNED]
    if planned:
        out.append(f"Review fixes.sql and apply the {len(planned)} planned fix(es) (kit run -p apply true).")
    out += [f"{f.what}: failed — {f.reason}" for f in fixes if f.verdict == FAILED]
    out += [
        f"{i.severity.capitalize()}: {i.check} on {i.subject}. {i.remedy or i.detail}".strip()
        for i in issues
        if i.severity in SEVERE
    ]
    if loop is not None:
        out += [
            f"{s.label} takes {s.share_pct:.0f} % of the database's time and no fix the kit makes helps it: "
            "look at the calls that run it (how often, for how many rows)."
            for s in statements
            if s.share_pct >= WORTH_A_LOOK_PCT and s.fix.startswith("No index")
        ]
    return tuple(out)


def _trend(runs_dir: Path, bundle: Bundle) -> tuple[dict[str, Any], ...]:
    """Per earlier run of this target that finished ok (and this one): the figures the trend charts."""
    frame = trend_frame(runs_dir, target=bundle.target, last=10)
    if frame.empty:
        return ()
    wide = frame.pivot_table(index=["run", "created_at"], columns="figure", values="value", aggfunc="last")
    return tuple({"run": run, "created_at": at, **row.dropna().to_dict()} for (run, at), row in wide.iterrows())
