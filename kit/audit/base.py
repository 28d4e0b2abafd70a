"""What every audit check returns, and how checks run: read-only, rolled back, with a timeout,
never failing the caller (talks to PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from kit.errors import first_line

OK, FINDINGS, UNAVAILABLE, ERROR = "ok", "findings", "unavailable", "error"
SEVERITIES = ("critical", "high", "medium", "low", "info")
_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class CheckResult:
    """One check: its status, a line for humans, and rows with ``severity`` and ``remediation``."""

    check: str
    status: str  # ok | findings | unavailable | error
    message: str
    rows: pd.DataFrame = field(default_factory=pd.DataFrame, compare=False)

    def to_frame(self) -> pd.DataFrame:
        return self.rows

    @property
    def worst(self) -> str:
        if self.rows.empty or "severity" not in self.rows:
            return "info"
        return min(self.rows["severity"], key=SEVERITIES.index)


def result(check: str, rows: pd.DataFrame, *, ok: str, found: str) -> CheckResult:
    """``ok`` when no row has a severity above info, else ``findings`` with ``found`` as message."""
    if rows.empty or (rows["severity"] == "info").all():
        return CheckResult(check, OK, ok, rows)
    return CheckResult(check, FINDINGS, found.format(n=int((rows["severity"] != "info").sum())), rows)


def frame(conn: Connection, query: str, params: dict | None = None) -> pd.DataFrame:
    res = conn.execute(text(query), params or {})
    return pd.DataFrame(res.fetchall(), columns=list(res.keys()))


def unavailable(check: str, why: str) -> CheckResult:
    return CheckResult(check, UNAVAILABLE, why, pd.DataFrame(columns=["severity", "remediation"]))


def run_check(engine: Engine, fn: Callable[[Connection], CheckResult], *, timeout_ms: int = _TIMEOUT_MS) -> CheckResult:
    """Run one check in a read-only transaction that is always rolled back."""
    name = getattr(fn, "__name__", "check")
    try:
        with engine.connect() as conn:
            try:
                conn.execute(text("SET /* kit */ TRANSACTION READ ONLY"))
                conn.execute(
                    text("SELECT /* kit */ set_config('statement_timeout', :t, true)"), {"t": f"{timeout_ms}ms"}
                )
                return fn(conn)
            finally:
                conn.rollback()
    except DBAPIError as exc:
        return CheckResult(
            name,
            ERROR,
            f"{name} could not run: {first_line(exc.orig or exc)}",
            pd.DataFrame(columns=["severity", "remediation"]),
        )
