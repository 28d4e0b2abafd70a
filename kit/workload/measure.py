"""Time each target statement on real parameter values: PREPARE it, then EXPLAIN (ANALYZE,
BUFFERS) EXECUTE it after a warm-up, repeatedly, in a fresh session of its own; a statement that
writes runs inside a transaction that is rolled back every time. When it cannot (or must not) run
— no value for a parameter, no right to write, a write not allowed — the planner's estimate is
kept instead and the timing says "estimated only" and why (talks to PostgreSQL).

The values are chosen to look like the workload (:mod:`kit.workload.timing`): among a statement's
candidate values (:func:`kit.workload.sample.parameter_candidates`) the one whose planned rows come
nearest the rows per call pg_stat_statements saw is tried first; when it is executed, the next
nearest ones too, until the rows returned are near; every timing then says whether it reproduced
the workload (rows and time per call) and with which figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import psycopg
from psycopg import sql

from kit.db import sessions
from kit.indexes.advisor import TableInfo, execute_prepared
from kit.indexes.verify import plan_indexes, plan_nodes
from kit.sqltext import redact
from kit.sqltext.refs import WRITES
from kit.workload.insights import insights
from kit.workload.model import Statement
from kit.workload.sample import Parameters, parameter_candidates
from kit.workload.timing import ESTIMATED, MEASURED, NOT_MEASURED, Timing, reproduction

SETTINGS = """SELECT /* kit */ set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false),
       set_config('plan_cache_mode', 'force_custom_plan', false)"""
PREPARED = "SELECT /* kit */ 1 FROM pg_prepared_statements WHERE name = 'kit_measure'"


# candidate values executed, best-estimated first, until one reproduces the workload: at most _TRIES, and
# no more once _SEARCH_MS (or 10 calls' mean time, at most _SEARCH_MAX_MS) were spent — a planned row count
# under a LIMIT, or two ranges on columns the planner takes for independent, says little
_TRIES = 24
_UNLIKE = 10.0  # added to a candidate's distance when it spills and the workload did not, or the other way
_SEARCH_MS, _SEARCH_MAX_MS = 500.0, 5_000.0


@dataclass(frozen=True)
class Target:
    """A statement to measure and the values to measure it on: ``params``, or the candidate that
    comes nearest the workload's ``rows_per_call`` (from pg_stat_statements; None for a statement
    the kit wrote)."""

    key: str
    text: str = field(repr=False)
    kind: str
    params: Parameters
    candidates: tuple[Parameters, ...] = ()  # alternatives (``params`` among them)
    rows_per_call: float | None = None
    mean_ms: float | None = None
    spilled: bool | None = None  # the workload's calls wrote temporary files (None: a statement the kit wrote)
    blocks_per_call: float | None = None  # shared blocks per call the workload touched
    # settings (name, value) for the statement's own transaction (SET LOCAL): a work_mem on trial, or
    # the one a role was given (kit.fixes.settings)
    settings: tuple[tuple[str, str], ...] = ()

    def on(self, params: Parameters) -> Target:
        """This target on exactly ``params`` (to measure again on the values measured before)."""
        return replace(self, params=params, candidates=())


def _explain(conn: psycopg.Connection, values, *, analyze: bool) -> dict:
    opts = sql.SQL("ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON")
    stmt = sql.SQL("EXPLAIN /* kit */ ({}) {}").format(opts, execute_prepared("kit_measure", values))
    row = conn.execute(stmt).fetchone()
    assert row is not None, "EXPLAIN returns one row"
    return row[0][0]


def worst_estimate(node: dict) -> tuple[float, float] | None:
    """(planned rows, actual rows) of the plan node whose estimate is furthest off (per loop)."""
    found: list[tuple[float, float, float]] = []

    def walk(n: dict) -> None:
        if "Actual Rows" in n:
            est, act = float(n.get("Plan Rows", 0)), float(n["Actual Rows"])
            found.append((max(est, 1.0) / max(act, 1.0) if est >= act else max(act, 1.0) / max(est, 1.0), est, act))
        for child in n.get("Plans", ()):
            walk(child)

    walk(node)
    if not found:
        return None
    _ratio, est, act = max(found)
    return est, act


def returned_rows(plan: dict) -> float:
    """What the statement returned or changed: the top node's rows, or for a write without RETURNING
    (ModifyTable returns nothing) the rows its input fed it — as pg_stat_statements counts them."""
    node = plan
    if node.get("Node Type") == "ModifyTable" and node.get("Plans") and not float(node.get("Actual Rows", 0) or 0):
        node = node["Plans"][0]
    key = "Actual Rows" if "Actual Rows" in node else "Plan Rows"
    return float(node.get(key, 0.0)) * float(node.get("Actual Loops", 1.0) or 1.0)


def _distance(rows: float, target: float) -> float:
    return abs(math.log((rows + 1.0) / (target + 1.0)))


def _by_estimate(conn: psycopg.Connection, target: Target) -> list[Parameters]:
    """The complete candidates, those whose planned rows come nearest the workload's first."""
    complete = [p for p in (target.candidates or (target.params,)) if p.complete]
    if target.rows_per_call is None or len(complete) < 2:
        return complete or [target.params]
    scored = []
    for i, params in enumerate(complete):
        try:
            rows = returned_rows(_rolled_back(conn, params.values, analyze=False, settings=target.settings)["Plan"])
        except psycopg.Error:
            continue
        scored.append((_distance(rows, target.rows_per_call), i, params))
    return [p for _d, _i, p in sorted(scored, key=lambda t: t[:2])] or complete


def _nearest_executed(conn: psycopg.Connection, target: Target, ordered: list[Parameters]) -> tuple[Parameters, float]:
    """Execute the best-estimated candidates (their first run is a warm-up anyway) until one
    reproduces the workload's rows and time per call, and spills to temporary files when the
    workload's calls did (a page 100 rows deep may pass for one 40,000 deep by time); else the
    nearest of those tried (rows and
    time: an aggregate returns one row whatever range it sums, its time tells the ranges apart).
    With it, how long its execution took."""
    if target.rows_per_call is None or target.mean_ms is None or len(ordered) < 2:
        plan = _rolled_back(conn, ordered[0].values, analyze=True, settings=target.settings)
        return ordered[0], float(plan["Execution Time"])
    tried, spent = [], 0.0
    budget_ms = min(max(_SEARCH_MS, 10 * target.mean_ms), _SEARCH_MAX_MS)  # a fast statement can try them all
    for params in ordered[:_TRIES]:
        plan = _rolled_back(conn, params.values, analyze=True, settings=target.settings)
        rows, ms = returned_rows(plan["Plan"]), float(plan["Execution Time"])
        alike = target.spilled is None or spills(plan) == target.spilled
        near = _distance(rows, target.rows_per_call) + _distance(ms, target.mean_ms) + (0.0 if alike else _UNLIKE)
        tried.append((near, ms, params))
        spent += ms
        if (alike and _reproduces(plan, target)) or spent >= budget_ms:
            break
    _nearness, ms, params = min(tried, key=lambda t: t[0])
    return params, ms


def _reproduces(plan: dict, target: Target) -> bool:
    """Whether one execution's ``EXPLAIN (ANALYZE, BUFFERS)`` reproduces the workload (:func:`reproduction`)."""
    return bool(_reproduction(plan, target, returned_rows(plan["Plan"]), float(plan["Execution Time"]))[0])


def _reproduction(plan: dict, target: Target, rows: float | None, ms: float | None) -> tuple[bool | None, str]:
    return reproduction(
        rows,
        ms,
        target.rows_per_call,
        target.mean_ms,
        blocks=_buffers(plan["Plan"]),
        blocks_per_call=target.blocks_per_call,
        spills_alike=target.spilled is None or spills(plan) == target.spilled,
    )


def spills(plan: dict) -> bool:
    """Whether an ``EXPLAIN (ANALYZE, BUFFERS)`` result wrote temporary files (a sort or hash that spilled)."""
    return int(plan["Plan"].get("Temp Written Blocks", 0) or 0) > 0


def runs_within(first_ms: float, *, warmup: int, repeats: int, budget_s: float) -> tuple[int, int]:
    """(warm-ups, repeats) that fit in ``budget_s`` for a statement whose execution took ``first_ms``
    (that execution was a warm-up already): a 25 s statement is timed once or twice, not seven times (pure)."""
    affordable = int(budget_s * 1000 // max(first_ms, 0.001))
    if warmup + repeats <= affordable:
        return warmup, repeats
    return 0, max(1, min(repeats, affordable))


def _buffers(node: dict) -> int:
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def _rolled_back(
    conn: psycopg.Connection, values, *, analyze: bool, settings: tuple[tuple[str, str], ...] = ()
) -> dict:
    """EXPLAIN inside a transaction that is always rolled back, with ``settings`` set for that
    transaction only (SET LOCAL). BEGIN and ROLLBACK are the kit's own (tagged) so
    pg_stat_statements does not count them with the application's."""
    conn.execute("BEGIN /* kit */")
    try:
        for name, value in settings:
            conn.execute("SELECT /* kit */ set_config(%s, %s, true)", [name, value])
        return _explain(conn, values, analyze=analyze)
    finally:
        conn.execute("ROLLBACK /* kit */")


def _estimate(conn: psycopg.Connection, target: Target, why: str) -> Timing:
    params = _by_estimate(conn, target)[0] if target.params.complete else target.params
    try:
        plan = _rolled_back(conn, params.values, analyze=False, settings=target.settings)["Plan"]
    except psycopg.Error as exc:
        return Timing(
            target.key,
            NOT_MEASURED,
            reason=f"{why}; EXPLAIN failed too: {_first(exc, target)}",
            params=params.values,
            sources=params.sources,
        )
    _, evidence = reproduction(None, None, target.rows_per_call, target.mean_ms)
    return Timing(
        target.key,
        ESTIMATED,
        cost=float(plan["Total Cost"]),
        indexes=tuple(plan_indexes(plan)),
        plan=" > ".join(plan_nodes(plan)),
        est_rows=float(plan.get("Plan Rows", 0)),
        reason=why,
        params=params.values,
        sources=params.sources,
        evidence=evidence,
    )


def _first(exc: BaseException, target: Target | None = None) -> str:
    """The error's first line; the values it ran on are the user's data: masked (:func:`redact.values`)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if target is None:
        return first
    masked = redact.values(first, [v for p in (target.params, *target.candidates) for v in p.values])
    return first if masked is None else masked  # redact.values gives None only for None


def time_target(
    url: str,
    target: Target,
    *,
    warmup: int = 2,
    repeats: int = 5,
    writes: bool = True,
    statement_timeout_ms: int = 120_000,
    lock_timeout_ms: int = 500,
    budget_s: float = 60.0,
) -> Timing:
    """Measure one statement in a new session (see the module docstring); a slow one is repeated as
    often as ``budget_s`` allows (once at least), and one over ``statement_timeout_ms`` is estimated only."""
    with sessions.connect(url, app="dbperf-kit-measure") as conn:
        conn.prepare_threshold = None
        conn.execute(SETTINGS, [f"{statement_timeout_ms}ms", f"{lock_timeout_ms}ms"])
        try:
            conn.execute(sql.SQL("PREPARE /* kit */ kit_measure AS {}").format(sql.SQL(target.text)))
        except psycopg.Error as exc:
            return Timing(
                target.key, NOT_MEASURED, reason=f"cannot prepare it: {_first(exc)}", params=target.params.values
            )
        if not target.params.complete:
            missing = ", ".join(f"${n}" for n in target.params.missing())
            return _estimate(conn, target, f"no value in the data for {missing}")
        if target.kind in WRITES and not writes:
            return _estimate(conn, target, f"{target.kind.upper()} is not executed without apply")
        times, plan = [], {}
        try:
            params, first_ms = _nearest_executed(conn, target, _by_estimate(conn, target))
            warmup, repeats = runs_within(first_ms, warmup=warmup, repeats=repeats, budget_s=budget_s)
            for i in range(warmup + repeats):
                plan = _rolled_back(conn, params.values, analyze=True, settings=target.settings)  # keeps nothing
                if i >= warmup:
                    times.append(float(plan["Execution Time"]))
        except psycopg.Error as exc:
            return _estimate(conn, target, f"could not run it: {_first(exc, target)}")
    top = plan["Plan"]
    est, actual = worst_estimate(top) or (None, None)
    timing = Timing(
        target.key,
        MEASURED,
        exec_ms=tuple(times),
        cost=float(top["Total Cost"]),
        indexes=tuple(plan_indexes(top)),
        plan=" > ".join(plan_nodes(top)),
        est_rows=est,
        actual_rows=actual,
        buffers=_buffers(top),
        rows=returned_rows(top),
        params=params.values,
        sources=params.sources,
        insights=insights(plan),
    )
    reproduced, evidence = _reproduction(plan, target, timing.rows, timing.median_ms)
    return replace(timing, reproduced=reproduced, evidence=evidence)


def targets_for(url: str, statements: list[Statement] | tuple[Statement, ...]) -> list[Target]:
    """Each statement with candidate parameter values drawn from the data (one session, read-only) and,
    for the workload's own, its rows and mean time per call to match."""
    out: list[Target] = []
    cache: dict[str, TableInfo | None] = {}  # the tables the statements name, each looked up once
    with sessions.connect(url, app="dbperf-kit-sample") as conn:
        conn.execute("SELECT /* kit */ set_config('statement_timeout', '10s', false)")
        for s in statements:
            candidates = parameter_candidates(conn, s.text, cache=cache)
            calls = s.calls if s.queryid is not None and s.calls else None
            out.append(
                Target(
                    s.key,
                    s.text,
                    s.kind,
                    candidates[0],
                    candidates,
                    rows_per_call=s.rows_per_call if calls else None,
                    mean_ms=s.mean_ms if calls else None,
                    spilled=s.temp_written / s.calls >= 1 if calls else None,
                    blocks_per_call=s.blocks / s.calls if calls else None,
                )
            )
    return out


def measure(
    url: str, targets: list[Target], *, warmup: int = 2, repeats: int = 5, writes: bool = True
) -> dict[str, Timing]:
    """One :class:`Timing` per target, each in its own fresh session."""
    return {t.key: time_target(url, t, warmup=warmup, repeats=repeats, writes=writes) for t in targets}


def again(targets: list[Target], before: dict[str, Timing]) -> list[Target]:
    """The targets on exactly the values ``before`` measured them on (the "after" of a fix)."""
    return [
        t.on(Parameters(before[t.key].params, before[t.key].sources)) if t.key in before and before[t.key].params else t
        for t in targets
    ]
