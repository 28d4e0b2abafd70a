"""Repeated timings of one statement and their median with a distribution-free confidence
interval (pure)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

MEASURED, ESTIMATED, NOT_MEASURED = "measured", "estimated only", "not measured"


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
        if sum(math.comb(n, i) for i in range(j)) / 2 ** n <= alpha / 2:
            k = j
    return (xs[k - 1], xs[n - k])


@dataclass(frozen=True)
class Timing:
    """One statement measured in one fresh session: EXPLAIN (ANALYZE, BUFFERS) repeated on the same
    parameter values, or only the planner's estimate when it could not (or must not) be executed."""

    key: str  # the statement's queryid, or "probe:<name>" for a statement the kit wrote
    mode: str  # MEASURED | ESTIMATED | NOT_MEASURED
    exec_ms: tuple[float, ...] = ()
    cost: float | None = None
    indexes: tuple[str, ...] = ()  # the indexes the (last) plan names
    plan: str = ""  # node types, outermost first
    est_rows: float | None = None  # planned rows: the top node's (estimate), or the worst-estimated node's
    actual_rows: float | None = None  # the rows that node really returned (per loop)
    buffers: int | None = None  # shared blocks hit + read, per execution
    # kept to re-measure on the same values; data drawn from the user's tables: never shown, never written
    params: tuple[str | None, ...] = field(default=(), compare=False, repr=False)
    reason: str = ""  # why estimated only / not measured

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
        return max(self.est_rows, 1.0) / max(self.actual_rows, 1.0) if self.est_rows >= self.actual_rows \
            else max(self.actual_rows, 1.0) / max(self.est_rows, 1.0)

    def to_dict(self) -> dict:
        lo, hi = self.ci_ms
        return {"key": self.key, "mode": self.mode, "median_ms": self.median_ms, "ci_lo_ms": lo, "ci_hi_ms": hi,
                "repeats": len(self.exec_ms), "cost": self.cost, "indexes": list(self.indexes), "plan": self.plan,
                "est_rows": self.est_rows, "actual_rows": self.actual_rows, "buffers": self.buffers,
                "reason": self.reason}
