"""PgHero-class audit checks, one function and one query each (talks to PostgreSQL, read-only).

Every check returns a :class:`~kit.audit.base.CheckResult` whose rows carry a ``severity`` and a
copy-paste ``remediation``. A check whose extension is missing says "unavailable" and how to
enable it; a check that errors says so in its message. :func:`run_audit` never raises for a
check: it is safe on any database, including one the kit did not create, as a read-only role.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine

from kit.audit.activity import connections, explain
from kit.audit.base import CheckResult, run_check
from kit.audit.indexes import duplicate_indexes, index_bloat, invalid_objects, unindexed_foreign_keys, unused_indexes
from kit.audit.statements import diff, snapshot, top_queries
from kit.audit.tables import cache_hit_rates, seq_scan_tables, sequence_exhaustion, vacuum_staleness, xid_wraparound

CHECKS = (
    top_queries,
    unused_indexes,
    duplicate_indexes,
    unindexed_foreign_keys,
    invalid_objects,
    seq_scan_tables,
    cache_hit_rates,
    connections,
    vacuum_staleness,
    xid_wraparound,
    sequence_exhaustion,
    index_bloat,
)


@dataclass(frozen=True)
class AuditReport:
    results: tuple[CheckResult, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per check: status, worst severity, number of findings, message."""
        return pd.DataFrame(
            [
                {
                    "check": r.check,
                    "status": r.status,
                    "worst": r.worst,
                    "findings": int((r.rows["severity"] != "info").sum()) if not r.rows.empty else 0,
                    "message": r.message,
                }
                for r in self.results
            ]
        )

    def findings(self) -> pd.DataFrame:
        """Every row above info severity, from every check, most severe first: check, severity,
        subject (the index, constraint, table, statement ...), detail, remediation."""
        order = {s: i for i, s in enumerate(("critical", "high", "medium", "low", "info"))}
        parts = []
        for r in self.results:
            if r.rows.empty:
                continue
            hit = r.rows[r.rows["severity"] != "info"]
            if not hit.empty:
                subject = next((hit[c] for c in ("index", "constraint", "table", "query", "name") if c in hit), None)
                parts.append(
                    pd.DataFrame(
                        {
                            "check": r.check,
                            "severity": hit["severity"],
                            "subject": subject.astype(str) if subject is not None else "",
                            "detail": hit["detail"].astype(str) if "detail" in hit else "",
                            "remediation": hit["remediation"],
                        }
                    )
                )
        if not parts:
            return pd.DataFrame(columns=["check", "severity", "subject", "detail", "remediation"])
        out = pd.concat(parts, ignore_index=True)
        return out.sort_values("severity", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)

    def __getitem__(self, check: str) -> CheckResult:
        return next(r for r in self.results if r.check == check)


def run_audit(engine: Engine, *, timeout_ms: int = 10_000) -> AuditReport:
    """Run every check, each in its own read-only, rolled-back transaction with a timeout."""
    return AuditReport(tuple(run_check(engine, fn, timeout_ms=timeout_ms) for fn in CHECKS))


__all__ = ["AuditReport", "CheckResult", "run_audit", "explain", "snapshot", "diff", *[f.__name__ for f in CHECKS]]
