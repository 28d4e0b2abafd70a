"""Repeated timings of one statement and their median with a distribution-free confidence
interval, and whether the measurement reproduces the workload it stands for (pure).

A measurement judges a fix only when it looks like the workload: its rows near the rows per call
pg_stat_statements saw, and its time near the mean time per call (:func:`reproduction`). A lookup of
the common ``'closed'`` where the workload asks for the rare ``'open'``, or a range that came out
empty, says nothing about the fix — and says so.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Final, Literal

from kit.workload.insights import Insight

# how a statement was timed: plain strings typed as literals (loop.json and the frames hold them)
TimingMode = Literal["measured", "estimated only", "not measured"]
MEASURED: Final = "measured"
ESTIMATED: Final = "estimated only"
NOT_MEASURED: Final = "not measured"
ROWS_FACTOR = 3.0  # measured rows within 3x of the workload's rows per call (each + 1: 0 and 1 are near)
TIME_FACTOR = 5.0  # median time within 5x of the workload's mean (each + 0.05 ms: the timer's own noise)
BLOCKS_FACTOR = 3.0  # or, faster than that, the same work: shared blocks within 3x of the workload's per call
_ROWS_SLACK, _MS_SLACK, _BLOCKS_SLACK = 1.0, 0.05, 10.0


def _factor(a: float, b: float, slack: float) -> float:
    a, b = max(a, 0.0) + slack, max(b, 0.0) + slack
    return max(a, b) / min(a, b)


def reproduction(
    rows: float | None,
    ms: float | None,
    rows_per_call: float | None,
    mean_ms: float | None,
    *,
    blocks: float | None = None,
    blocks_per_call: float | None = None,
    spills_alike: bool = True,
) -> tuple[bool | None, str]:
    """(reproduced, why): whether a measurement of ``rows`` in ``ms`` looks like the workload's
    ``rows_per_call`` in ``mean_ms`` per call (None: nothing to compare with). A measurement much
    faster than the workload still reproduces it when it touched as many shared blocks per call: the
    same work, which a busy machine (or lock waits) made slower when the workload ran — unless one
    spilled to temporary files and the other did not (``spills_alike``)."""
    if rows_per_call is None or mean_ms is None:
        return None, "a statement the kit wrote: no workload figures to compare with"
    if rows is None or ms is None:
        return None, "not executed: nothing to compare with the workload"
    seen = f"{rows:,.0f} rows in {ms:.3f} ms; the workload: {rows_per_call:,.1f} rows in {mean_ms:.3f} ms per call"
    off = []
    if _factor(rows, rows_per_call, _ROWS_SLACK) > ROWS_FACTOR:
        off.append("rows")
    same_work = (
        blocks is not None
        and blocks_per_call is not None
        and ms < mean_ms
        and spills_alike
        and _factor(blocks, blocks_per_call, _BLOCKS_SLACK) <= BLOCKS_FACTOR
    )
    if _factor(ms, mean_ms, _MS_SLACK) > TIME_FACTOR and not same_work:
        off.append("time")
    elif _factor(ms, mean_ms, _MS_SLACK) > TIME_FACTOR:
        seen += f"; {blocks:,.0f} shared blocks, the workload {blocks_per_call:,.1f} per call: the same work"
    return (True, f"reproduced: {seen}") if not off else (False, f"not reproduced ({' and '.join(off)}): {seen}")


def median_ci(values: list[float] | tuple[float, ...], *, confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval of the median from order statistics (binomial, no distribution assumed):
    the widest (x(k), x(n-k+1)) whose coverage is at least ``confidence``; with fewer than 6
    values that is the whole range, and the coverage is what the range gives."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return (math.nan, math.nan)
    alpha = 1.0 - confidence
    k = 1
    for j in range(1, n // 2 + 1):  # the largest k with P(B < k) <= alpha/2, B ~ Binomial(n, 1/2)
        if sum(math.comb(n, i) for i in range(j)) / 2**n <= alpha / 2:
            k = j
    return (xs[k - 1], xs[n - k])


@dataclass(frozen=True)
class Timing:
    """One statement measured in one fresh session: EXPLAIN (ANALYZE, BUFFERS) repeated on the same
    parameter values, or only the planner's estimate when it could not (or must not) be executed."""

    key: str  # the statement's queryid, or "probe:<name>" for a statement the kit wrote
    mode: TimingMode
    exec_ms: tuple[float, ...] = ()
    cost: float | None = None
    indexes: tuple[str, ...] = ()  # the indexes the (last) plan names
    plan: str = ""  # node types, outermost first
    est_rows: float | None = None  # planned rows: the top node's (estimate), or the worst-estimated node's
    actual_rows: float | None = None  # the rows that node really returned (per loop)
    buffers: int | None = None  # shared blocks hit + read, per execution
    rows: float | None = None  # what the statement returned (or changed) per execution, as measured
    reproduced: bool | None = None  # near the workload's rows and time per call (None: nothing to compare)
    evidence: str = ""  # why (reproduced or not), with the figures
    # kept to re-measure on the same values; data drawn from the user's tables: never shown, never written
    params: tuple[str | None, ...] = field(default=(), compare=False, repr=False)
    sources: tuple[str, ...] = field(default=(), compare=False)  # where each value came from (may be shown)
    reason: str = ""  # why estimated only / not measured
    # what its plan shows on these values (kit.workload.insights): misestimates, spills, lossy bitmaps...
    insights: tuple[Insight, ...] = field(default=(), compare=False)

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.exec_ms) if self.exec_ms else None

    @property
    def ci_ms(self) -> tuple[float | None, float | None]:
        return median_ci(self.exec_ms) if self.exec_ms else (None, None)

    @property
    def estimate_error(self) -> float | None:
        """How far the planner's row estimate is from the rows returned, as a factor >= 1."""
        if self.est_rows is None or self.actual_rows is None:
            return None
        return (
            max(self.est_rows, 1.0) / max(self.actual_rows, 1.0)
            if self.est_rows >= self.actual_rows
            else max(self.actual_rows, 1.0) / max(self.est_rows, 1.0)
        )

    def to_dict(self) -> dict:
        lo, hi = self.ci_ms
        return {
            "key": self.key,
            "mode": self.mode,
            "median_ms": self.median_ms,
            "ci_lo_ms": lo,
            "ci_hi_ms": hi,
            "repeats": len(self.exec_ms),
            "cost": self.cost,
            "indexes": list(self.indexes),
            "plan": self.plan,
            "est_rows": self.est_rows,
            "actual_rows": self.actual_rows,
            "buffers": self.buffers,
            "rows": self.rows,
            "reproduced": self.reproduced,
            "evidence": self.evidence,
            "reason": self.reason,
        }
