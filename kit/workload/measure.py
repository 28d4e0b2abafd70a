"""Time each target statement on real parameter values: PREPARE it, then EXPLAIN (ANALYZE,
BUFFERS) EXECUTE it after a warm-up, repeatedly, in a fresh session of its own; a statement that
writes runs inside a transaction that is rolled back every time. When it cannot (or must not) run
— no value for a parameter, no right to write, a write not allowed — the planner's estimate is
kept instead and the timing says "estimated only" and why (talks to PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from kit.indexes.verify import plan_indexes, plan_nodes
from kit.safety import sessions
from kit.sqltext import redact
from kit.sqltext.refs import WRITES
from kit.workload.model import Statement
from kit.workload.sample import Parameters, sample_parameters
from kit.workload.timing import ESTIMATED, MEASURED, NOT_MEASURED, Timing

SETTINGS = """/* kit */ SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false),
       set_config('plan_cache_mode', 'force_custom_plan', false)"""
PREPARED = "/* kit */ SELECT 1 FROM pg_prepared_statements WHERE name = 'kit_measure'"


@dataclass(frozen=True)
class Target:
    """A statement to measure and the values to measure it on."""

    key: str
    text: str = field(repr=False)
    kind: str
    params: Parameters


def _execute(values: tuple[str | None, ...]) -> sql.Composable:
    if not values:
        return sql.SQL("EXECUTE kit_measure")
    return sql.SQL("EXECUTE kit_measure ({})").format(
        sql.SQL(", ").join(sql.SQL("NULL") if v is None else sql.Literal(v) for v in values))


def _explain(conn: psycopg.Connection, values, *, analyze: bool) -> dict:
    opts = sql.SQL("ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON")
    stmt = sql.SQL("/* kit */ EXPLAIN ({}) {}").format(opts, _execute(values))
    return conn.execute(stmt).fetchone()[0][0]


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


def _buffers(node: dict) -> int:
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def _rolled_back(conn: psycopg.Connection, values, *, analyze: bool) -> dict:
    """EXPLAIN inside a transaction that is always rolled back. BEGIN and ROLLBACK are the kit's
    own (tagged) so pg_stat_statements does not count them with the application's."""
    conn.execute("/* kit */ BEGIN")
    try:
        return _explain(conn, values, analyze=analyze)
    finally:
        conn.execute("/* kit */ ROLLBACK")


def _estimate(conn: psycopg.Connection, target: Target, why: str) -> Timing:
    try:
        plan = _rolled_back(conn, target.params.values, analyze=False)["Plan"]
    except psycopg.Error as exc:
        return Timing(target.key, NOT_MEASURED, reason=f"{why}; EXPLAIN failed too: {_first(exc, target)}",
                      params=target.params.values)
    return Timing(target.key, ESTIMATED, cost=float(plan["Total Cost"]), indexes=tuple(plan_indexes(plan)),
                  plan=" > ".join(plan_nodes(plan)), est_rows=float(plan.get("Plan Rows", 0)), reason=why,
                  params=target.params.values)


def _first(exc: BaseException, target: Target | None = None) -> str:
    """The error's first line; the values it ran on are the user's data: masked (:func:`redact.values`)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return redact.values(first, target.params.values) if target is not None else first


def time_target(url: str, target: Target, *, warmup: int = 2, repeats: int = 5, writes: bool = True,
                statement_timeout_ms: int = 10_000, lock_timeout_ms: int = 500) -> Timing:
    """Measure one statement in a new session (see the module docstring)."""
    with sessions.connect(url, app="dbperf-kit-measure") as conn:
        conn.prepare_threshold = None
        conn.execute(SETTINGS, [f"{statement_timeout_ms}ms", f"{lock_timeout_ms}ms"])
        try:
            conn.execute(sql.SQL("/* kit */ PREPARE kit_measure AS {}").format(sql.SQL(target.text)))
        except psycopg.Error as exc:
            return Timing(target.key, NOT_MEASURED, reason=f"cannot prepare it: {_first(exc)}",
                          params=target.params.values)
        if not target.params.complete:
            missing = ", ".join(f"${n}" for n in target.params.missing())
            return _estimate(conn, target, f"no value in the data for {missing}")
        if target.kind in WRITES and not writes:
            return _estimate(conn, target, f"{target.kind.upper()} is not executed without apply")
        times, plan = [], {}
        try:
            for i in range(warmup + repeats):
                plan = _rolled_back(conn, target.params.values, analyze=True)  # it executes: keep nothing
                if i >= warmup:
                    times.append(float(plan["Execution Time"]))
        except psycopg.Error as exc:
            return _estimate(conn, target, f"could not run it: {_first(exc, target)}")
    top = plan["Plan"]
    est, actual = worst_estimate(top) or (None, None)
    return Timing(target.key, MEASURED, exec_ms=tuple(times), cost=float(top["Total Cost"]),
                  indexes=tuple(plan_indexes(top)), plan=" > ".join(plan_nodes(top)),
                  est_rows=est, actual_rows=actual, buffers=_buffers(top), params=target.params.values)


def targets_for(url: str, statements: list[Statement] | tuple[Statement, ...]) -> list[Target]:
    """Each statement with parameter values drawn from the data (one session, read-only)."""
    out, cache = [], {}
    with sessions.connect(url, app="dbperf-kit-sample") as conn:
        conn.execute("/* kit */ SELECT set_config('statement_timeout', '10s', false)")
        for s in statements:
            out.append(Target(s.key, s.text, s.kind, sample_parameters(conn, s.text, cache=cache)))
    return out


def measure(url: str, targets: list[Target], *, warmup: int = 2, repeats: int = 5,
            writes: bool = True) -> dict[str, Timing]:
    """One :class:`Timing` per target, each in its own fresh session."""
    return {t.key: time_target(url, t, warmup=warmup, repeats=repeats, writes=writes) for t in targets}
