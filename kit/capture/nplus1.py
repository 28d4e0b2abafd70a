"""Find N+1 patterns in a capture: one fingerprint repeated inside one unit of work (pure, except
:func:`link_pg_stat_statements`, which reads pg_stat_statements).

    report = find_n_plus_one(log, min_repeats=5)
    report = link_pg_stat_statements(report, engine)   # calls and mean time of the same query
    report.to_frame()
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

import pandas as pd
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from kit.capture.recorder import QueryLog, Statement
from kit.sqltext import fingerprint as fp

NO_UNIT = "(no unit of work)"


@dataclass(frozen=True)
class Finding:
    """One fingerprint run ``repeats`` times within a single unit of work."""

    unit: str
    fingerprint: str
    normalized: str
    repeats: int  # the most times it ran in one unit of work
    units: int  # how many units of work showed the pattern
    total_ms: float  # time spent in it across those units
    example: str
    call_site: str | None
    suggestion: str
    pgss_calls: int | None = None
    pgss_mean_ms: float | None = None

    @property
    def summary(self) -> str:
        return f"endpoint {self.unit}: {self.repeats} calls of {' '.join(self.normalized.split())} per request"


@dataclass(frozen=True)
class NPlusOneReport:
    """The findings of :func:`find_n_plus_one`, worst first."""

    findings: tuple[Finding, ...]
    statements: int
    units: int

    def __len__(self) -> int:
        return len(self.findings)

    def for_unit(self, unit: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.unit == unit)

    def to_frame(self) -> pd.DataFrame:
        cols = list(Finding.__dataclass_fields__)
        return pd.DataFrame([{c: getattr(f, c) for c in cols} for f in self.findings], columns=cols)


def find_n_plus_one(
    log: QueryLog | Iterable[Statement],
    *,
    min_repeats: int = 5,
    min_total_ms: float = 0.0,
    allowlist: Iterable[str] = (),
) -> NPlusOneReport:
    """Fingerprints run at least ``min_repeats`` times in one unit of work and costing at least
    ``min_total_ms`` in all; fingerprints (or normalized texts) in ``allowlist`` are ignored."""
    if isinstance(min_repeats, bool) or not isinstance(min_repeats, int) or min_repeats < 2:
        raise ValueError(f"min_repeats must be an int >= 2, got {min_repeats!r}")
    if min_total_ms < 0:
        raise ValueError(f"min_total_ms must be >= 0, got {min_total_ms!r}")
    allowed = set(allowlist)
    statements = list(log)
    # (unit name, fingerprint) -> statements of each unit of work
    groups: dict[tuple[str, str], dict[int, list[Statement]]] = defaultdict(lambda: defaultdict(list))
    for s in statements:
        if s.fingerprint in allowed or s.normalized in allowed:
            continue
        groups[(s.unit or NO_UNIT, s.fingerprint)][s.unit_id].append(s)
    findings = []
    for (unit, fingerprint), by_unit in groups.items():
        hits = {uid: ss for uid, ss in by_unit.items() if len(ss) >= min_repeats}
        if not hits:
            continue
        total_ms = sum(s.duration_ms for ss in hits.values() for s in ss)
        if total_ms < min_total_ms:
            continue
        first = next(iter(hits.values()))[0]
        findings.append(
            Finding(
                unit=unit,
                fingerprint=fingerprint,
                normalized=first.normalized,
                repeats=max(len(ss) for ss in hits.values()),
                units=len(hits),
                total_ms=total_ms,
                example=first.sql.strip(),
                call_site=first.call_site,
                suggestion=suggest_fix(first.sql),
            )
        )
    findings.sort(key=lambda f: (-f.repeats, -f.total_ms, f.unit))
    n_units = len({s.unit_id for s in statements})
    return NPlusOneReport(findings=tuple(findings), statements=len(statements), units=n_units)


def suggest_fix(sql: str) -> str:
    """A fix for a statement run in a loop, in words, from the statement's shape."""
    shape = fp.shape(sql)
    key = shape.keyed_on[0] if shape.keyed_on else None
    table = ", ".join(sorted(shape.tables)) or "the table"
    if shape.kind == "select" and key and shape.aggregate:
        return (
            f"fetch all {key}s of the page in one query with {key} = ANY(...) and "
            f"GROUP BY {key} (or join it into the page's query)"
        )
    if shape.kind == "select" and key:
        return f"load the rows of {table} for all {key}s at once with {key} = ANY(...) and map them in memory"
    if shape.kind == "insert":
        return f"insert the rows into {table} in one round trip: executemany (pipelined), multi-row VALUES or COPY"
    if shape.kind in ("update", "delete"):
        return (
            f"{shape.kind} {table} in one statement with {key or 'id'} = ANY(...) "
            "or UPDATE ... FROM (VALUES ...) for per-row values"
        )
    return "run it once for the whole unit of work instead of once per row"


PG_STATS = """SELECT /* kit */ s.query, s.calls, s.mean_exec_time
FROM pg_stat_statements s
JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = current_database() AND s.query NOT LIKE '%/* kit */%'
"""


def pg_stat_statements_by_fingerprint(target: Engine | Connection) -> dict[str, tuple[int, float]]:
    """{fingerprint: (calls, mean ms)} for this database's entries in pg_stat_statements;
    empty when the extension is not installed or not preloaded."""
    try:
        if isinstance(target, Engine):
            with target.connect() as conn:
                rows = conn.execute(text(PG_STATS)).all()
        else:
            with target.begin_nested():
                rows = target.execute(text(PG_STATS)).all()
    except DBAPIError:
        return {}
    out: dict[str, tuple[int, float]] = {}
    for query, calls, mean_ms in rows:
        key = fp.fingerprint(query)
        # one normalized query can have several entries (users, toplevel): add the calls up
        old_calls, old_mean = out.get(key, (0, 0.0))
        total = old_calls + int(calls)
        out[key] = (total, (old_mean * old_calls + float(mean_ms) * int(calls)) / total if total else 0.0)
    return out


def link_pg_stat_statements(report: NPlusOneReport, target: Engine | Connection) -> NPlusOneReport:
    """The same report with each finding's pg_stat_statements calls and mean time filled in."""
    stats = pg_stat_statements_by_fingerprint(target)
    linked = []
    for f in report.findings:
        calls, mean_ms = stats.get(f.fingerprint, (None, None))
        linked.append(replace(f, pgss_calls=calls, pgss_mean_ms=mean_ms))
    return replace(report, findings=tuple(linked))
