"""The workload as data: statements with their calls and share of the database's time (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from kit import escape
from kit.sqltext import redact

PLANNABLE = {"select", "with", "insert", "update", "delete", "merge", "values", "table"}


@dataclass(frozen=True)
class Statement:
    """One statement of the workload over the window: its calls and time."""

    key: str  # the queryid as text (the fingerprint pg_stat_statements gives it)
    queryid: int | None
    text: str = field(repr=False)  # the full normalized text, never written anywhere
    kind: str = "other"
    calls: int = 0
    total_ms: float = 0.0
    rows: int = 0
    share_pct: float = 0.0  # of the database's execution time over the window
    temp_written: int = 0  # temporary file blocks it wrote over the window (a sort or hash that spilled)
    blocks: int = 0  # shared blocks it hit or read over the window
    # how pg_stat_statements' text was made preparable (kit.sqltext.retype; ``text`` is the result): no values
    rewrites: tuple[str, ...] = ()

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0

    @property
    def rows_per_call(self) -> float:
        return self.rows / self.calls if self.calls else 0.0

    @property
    def query(self) -> str:
        """The first 300 characters, redacted: what may be shown or written."""
        return redact.statement(self.text[:300]) or ""

    @property
    def plannable(self) -> bool:
        return self.kind in PLANNABLE


@dataclass(frozen=True)
class Workload:
    status: str  # "ok" | "unavailable"
    message: str
    basis: str  # "since run <ts>" | "since the statistics were reset"
    statements: tuple[Statement, ...]  # the top ones, busiest first
    total_ms: float  # every statement of the window, not only the top
    calls: int
    reset: str | None = None  # when pg_stat_statements was last reset (ISO), to match the next run
    window_s: float | None = None  # how long the window lasted (None: unknown)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "key": s.key,
                    "query": s.query,
                    "kind": s.kind,
                    "calls": s.calls,
                    "mean_ms": round(s.mean_ms, 3),
                    "rows_per_call": round(s.rows_per_call, 2),
                    "total_ms": round(s.total_ms, 1),
                    "share_pct": round(s.share_pct, 1),
                }
                for s in self.statements
            ],
            columns=["key", "query", "kind", "calls", "mean_ms", "rows_per_call", "total_ms", "share_pct"],
        )

    @property
    def targets(self) -> tuple[Statement, ...]:
        """The statements the loop measures and tries to fix (those PostgreSQL can plan)."""
        return tuple(s for s in self.statements if s.plannable)

    def get(self, key: str) -> Statement | None:
        return next((s for s in self.statements if s.key == key), None)

    def _repr_markdown_(self) -> str:
        return f"**workload** {escape.markdown(self.basis)}: {escape.markdown(self.message)}"
