"""What 03 charts from a run's ``loop.json``: per statement before/after, the share of the
database's time before and after, index bytes added and freed (pure: reads a file, no database).

The share after is an estimate: each measured statement's total time over the window scaled by
its measured speedup (median after / median before); statements not measured keep their time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.errors import ConfigError
from kit.fixes.model import CREATE, DROP, KEPT, RECORD_KEYS
from kit.store.records import artifact_path

LOOP_JSON = "loop.json"
FIX_COLUMNS = [
    *RECORD_KEYS,
    "index",
    "source",
    "declared",
    "est_bytes",
    "bytes_after",
    "why",
    "expect",
    "saved_ms",
    "rows_written",
    "write_ms",
]
STATEMENT_COLUMNS = [
    "key",
    "query",
    "kind",
    "calls",
    "total_ms",
    "share_pct",
    "mode",
    "reason",
    "reproduced",
    "evidence",
    "values_from",
    "before_ms",
    "before_lo",
    "before_hi",
    "after_ms",
    "after_lo",
    "after_hi",
    "speedup",
    "cost_before",
    "cost_after",
    "plan_before",
    "plan_after",
    "fixes",
    "insights",
]


@dataclass(frozen=True)
class LoopReport:
    target: str
    applied: bool
    basis: str
    total_ms: float  # the database's execution time over the workload window
    statements: pd.DataFrame
    fixes: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        return self.fixes

    def measured(self) -> pd.DataFrame:
        """Statements of the workload and probes with a median before (and after when applied)."""
        cols = [
            "key",
            "query",
            "calls",
            "mode",
            "reproduced",
            "evidence",
            "before_ms",
            "before_lo",
            "before_hi",
            "after_ms",
            "after_lo",
            "after_hi",
            "speedup",
            "fixes",
        ]
        if self.statements.empty:
            return pd.DataFrame(columns=cols)
        return self.statements[self.statements["before_ms"].notna()][cols].reset_index(drop=True)

    def share(self) -> pd.DataFrame:
        """Long frame: statement, phase (before | after, estimated), share_pct of the database's time."""
        work = self.statements[self.statements["calls"] > 0] if not self.statements.empty else self.statements
        if work.empty or self.total_ms <= 0:
            return pd.DataFrame(columns=["statement", "phase", "share_pct", "total_ms"])
        factor = (work["after_ms"] / work["before_ms"]).where(work["after_ms"].notna() & (work["before_ms"] > 0), 1.0)
        after_total = work["total_ms"] * factor
        rest = max(self.total_ms - float(work["total_ms"].sum()), 0.0)
        total_after = rest + float(after_total.sum())
        labels = [_label(k, q) for k, q in zip(work["key"], work["query"], strict=False)]
        rows = [
            {"statement": s, "phase": "before", "share_pct": 100 * t / self.total_ms, "total_ms": t}
            for s, t in zip(labels, work["total_ms"], strict=False)
        ]
        rows += [
            {
                "statement": "everything else",
                "phase": "before",
                "share_pct": 100 * rest / self.total_ms,
                "total_ms": rest,
            }
        ]
        if self.applied:
            rows += [
                {"statement": s, "phase": "after (estimated)", "share_pct": 100 * t / total_after, "total_ms": t}
                for s, t in zip(labels, after_total, strict=False)
            ]
            rows += [
                {
                    "statement": "everything else",
                    "phase": "after (estimated)",
                    "share_pct": 100 * rest / total_after,
                    "total_ms": rest,
                }
            ]
        return pd.DataFrame(rows)

    def index_bytes(self) -> pd.DataFrame:
        """Per kept index fix: bytes added (a new index, its real size) or freed (a dropped one)."""
        cols = ["index", "kind", "bytes"]
        if self.fixes.empty:
            return pd.DataFrame(columns=cols)
        kept = self.fixes[self.fixes["verdict"] == KEPT]
        rows = [
            {"index": r["index"], "kind": "added", "bytes": int(r["bytes_after"] or r["est_bytes"] or 0)}
            for _, r in kept[kept["kind"] == CREATE].iterrows()
        ]
        rows += [
            {"index": r["index"], "kind": "freed", "bytes": -int(r["est_bytes"] or 0)}
            for _, r in kept[kept["kind"] == DROP].iterrows()
        ]
        return pd.DataFrame(rows, columns=cols)

    def kept_speedups(self) -> pd.Series:
        """Measured speedups of the new indexes kept that no migration declares (each must be 2x+)."""
        if self.fixes.empty:
            return pd.Series(dtype=float)
        kept = self.fixes[
            (self.fixes["verdict"] == KEPT)
            & (self.fixes["kind"] == CREATE)
            & ~self.fixes["declared"].fillna(False).astype(bool)
        ]
        return kept["speedup"].dropna().astype(float)

    @property
    def share_of_fixed(self) -> tuple[float, float | None]:
        """Share (%) of the database's time taken by the statements the fixes name, before and after (estimated)."""
        share = self.share()
        if share.empty:
            return 0.0, None
        fixed = set(self.statements.loc[self.statements["fixes"].astype(str).str.len() > 0, "key"])
        labels = {
            _label(k, q) for k, q in zip(self.statements["key"], self.statements["query"], strict=False) if k in fixed
        }
        mine = share[share["statement"].isin(labels)].groupby("phase")["share_pct"].sum()
        return float(mine.get("before", 0.0)), (float(mine.get("after (estimated)", 0.0)) if self.applied else None)


def _label(key: str, query: str, width: int = 60) -> str:
    text = " ".join(str(query or "").split())
    return f"{key}: {text[:width]}{'...' if len(text) > width else ''}"


def load_report(path: str | Path | None = None) -> LoopReport:
    """The loop of this run (``loop.json`` in the run folder, else ``.kit/artifacts``)."""
    path = Path(path) if path else artifact_path(LOOP_JSON)
    if not path.exists():
        raise ConfigError(f"no {LOOP_JSON} in {path.parent}; run 02_apply_fixes first (kit run runs all in order)")
    data = json.loads(path.read_text(encoding="utf-8"))
    return LoopReport(
        target=data["target"],
        applied=data["applied"],
        basis=data.get("basis", ""),
        total_ms=float(data.get("total_ms") or 0.0),
        statements=pd.DataFrame(data["statements"], columns=STATEMENT_COLUMNS),
        fixes=pd.DataFrame(data["fixes"], columns=FIX_COLUMNS),
    )
