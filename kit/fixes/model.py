"""A fix and a plan of fixes: what each changes, why, which statements it should help, what it
should change, and — once applied and measured — whether it was kept (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final, Literal

import pandas as pd

from kit.indexes.spec import IndexSpec, parse_index_sql, parse_indexdef
from kit.workload.model import Statement

# Plain strings typed as literals: fixes.json, loop.json, fixes.sql and the notebooks hold these values.
FixKind = Literal["create_index", "drop_index", "analyze", "create_statistics", "set_work_mem", "vacuum"]
Verdict = Literal["planned", "applied", "kept", "reverted", "failed"]

CREATE: Final = "create_index"
DROP: Final = "drop_index"
ANALYZE: Final = "analyze"
STATISTICS: Final = "create_statistics"  # extended statistics on a misestimate's correlated columns
WORK_MEM: Final = "set_work_mem"  # a role's work_mem in this database, to remove a spill
VACUUM: Final = "vacuum"  # VACUUM (ANALYZE) of a table whose dead rows its statements read
PLANNED: Final = "planned"
APPLIED: Final = "applied"  # between apply and verify only; never a final verdict
KEPT: Final = "kept"
REVERTED: Final = "reverted"
FAILED: Final = "failed"
RECORD_KEYS = (
    "kind",
    "sql",
    "target_table",
    "statements",
    "exec_ms_before",
    "exec_ms_after",
    "speedup",
    "verdict",
    "reason",
    "evidence",
)


@dataclass(frozen=True)
class Fix:
    kind: FixKind
    sql: str  # the statement as fixes.sql has it (CONCURRENTLY, schema-qualified)
    target_table: str  # schema.table
    statements: tuple[str, ...]  # keys (queryids, or probe:<name> for a statement the kit wrote)
    why: str  # what was found
    expect: str  # what it should change
    source: str  # "advisor", "foreign key", "duplicate", "statistics", "migration file:line", combined with +
    index: str | None = None  # schema.name of the index created or dropped
    index_def: str | None = None  # CREATE INDEX of that index (for a drop: to rebuild it on revert)
    est_bytes: int | None = None  # bytes added (create, estimated) or freed (drop, actual)
    declared: bool = False  # in the user's migration: applied and measured, never reverted
    verdict: Verdict = PLANNED
    reason: str = ""
    exec_ms_before: float | None = None
    exec_ms_after: float | None = None
    speedup: float | None = None
    bytes_after: int | None = None  # actual size of a created index once built
    # the names as the catalog has them, for SQL (target_table and index are for people: never parsed)
    schema: str = ""
    table: str = ""
    index_name: str | None = None  # the index's own name (in ``schema``)
    # a new index's estimates over the workload's window: time saved, rows the workload wrote to its
    # table, the cost of the index to those writes (kit.indexes.select)
    saved_ms: float | None = None
    rows_written: int | None = None
    write_ms: float | None = None
    depends_on: str | None = None  # a drop of an index a new one covers: that new index's name
    parts: tuple[str, ...] = ()  # a new index on a partitioned table: its partitions' indexes (plans name those)
    evidence: str = ""  # what the measurement of its deciding statement was: reproduced the workload or not, and why
    # extended statistics: the object's name (in ``schema``); a setting: the role, its new value and the one it had
    # in this database before (None: none, RESET on undo)
    object_name: str | None = None
    columns: tuple[str, ...] = ()  # extended statistics' columns (in ``table``)
    kinds: tuple[str, ...] = ()  # and their kinds (ndistinct, dependencies, mcv)
    role: str | None = None
    setting: str | None = None
    prior: str | None = None
    # the index as the planner made it (a fix read back from a reviewed plan parses index_def once instead)
    spec: IndexSpec | None = field(default=None, compare=False, repr=False)

    def index_definition(self) -> str:
        """``index_def`` of a create or drop fix; ValueError for a fix that has none (an ANALYZE)."""
        if self.index_def is None:
            raise ValueError(f"the {self.kind} fix on {self.target_table} has no index definition")
        return self.index_def

    def index_spec(self) -> IndexSpec:
        """The index a create or drop fix is about (for a drop: as it exists, to rebuild it on revert)."""
        if self.spec is not None:
            return self.spec
        definition = self.index_definition()
        return parse_index_sql(definition, source="kit")[0] if self.kind == CREATE else parse_indexdef(definition)

    @property
    def index_names(self) -> set[str]:
        """The names a plan may give this fix's index: its own, and its partitions' ones."""
        return {n for n in (self.index_name, *self.parts) if n}

    def to_record(self) -> dict:
        """The fixes.json object: exactly :data:`RECORD_KEYS`."""
        return {
            "kind": self.kind,
            "sql": self.sql,
            "target_table": self.target_table,
            "statements": list(self.statements),
            "exec_ms_before": _round(self.exec_ms_before),
            "exec_ms_after": _round(self.exec_ms_after),
            "speedup": _round(self.speedup, 2),
            "verdict": self.verdict,
            "reason": self.reason,
            "evidence": self.evidence,
        }

    def but(self, **changes) -> Fix:
        return replace(self, **changes)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass(frozen=True)
class FixPlan:
    """The fixes for one database, and the candidates that were left out (and why)."""

    fixes: tuple[Fix, ...]
    notes: tuple[str, ...] = ()
    probes: tuple[Statement, ...] = ()  # statements the kit wrote to verify a fix no workload statement shows
    budget_bytes: int | None = None  # what the new indexes could take, as the selection used it

    def to_frame(self) -> pd.DataFrame:
        return fixes_frame(self.fixes)

    def of_kind(self, kind: FixKind) -> tuple[Fix, ...]:
        return tuple(f for f in self.fixes if f.kind == kind)


@dataclass(frozen=True)
class Leftover:
    """An INVALID index found before planning (a concurrent build that did not finish), whether the kit
    built it (:mod:`kit.fixes.leftovers` says how it tells), and what was done about it."""

    schema: str
    name: str
    table: str
    definition: str
    kit: bool  # built by the kit: dropped before the plan (apply) or listed to drop (dry run)
    why: str  # how it was recognised as the kit's, or why it is not
    building_pid: int | None = None  # a build working on it at the time it was found
    action: str = ""  # "dropped" | "would drop" | "drop failed: ..." | "left: ..."

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def but(self, **changes) -> Leftover:
        return replace(self, **changes)

    def to_record(self) -> dict:
        return {
            "index": self.qualified,
            "table": f"{self.schema}.{self.table}",
            "kit": self.kit,
            "why": self.why,
            "action": self.action,
            "definition": self.definition,
        }


def fixes_frame(fixes: tuple[Fix, ...] | list[Fix]) -> pd.DataFrame:
    cols = [
        "kind",
        "target_table",
        "index",
        "source",
        "statements",
        "why",
        "expect",
        "verdict",
        "reason",
        "exec_ms_before",
        "exec_ms_after",
        "speedup",
        "sql",
    ]
    return pd.DataFrame(
        [
            {
                "kind": f.kind,
                "target_table": f.target_table,
                "index": f.index,
                "source": f.source,
                "statements": ", ".join(f.statements),
                "why": f.why,
                "expect": f.expect,
                "verdict": f.verdict,
                "reason": f.reason,
                "exec_ms_before": _round(f.exec_ms_before, 3),
                "exec_ms_after": _round(f.exec_ms_after, 3),
                "speedup": _round(f.speedup, 2),
                "sql": f.sql,
            }
            for f in fixes
        ],
        columns=cols,
    )


def counts(fixes: tuple[Fix, ...] | list[Fix], *, applied: bool) -> dict[str, int]:
    """fixes.planned / applied / kept / reverted / failed as kit.record figures (pure)."""
    n = {v: sum(f.verdict == v for f in fixes) for v in (KEPT, REVERTED, FAILED)}
    return {
        "fixes.planned": len(fixes),
        "fixes.applied": (n[KEPT] + n[REVERTED]) if applied else 0,
        "fixes.kept": n[KEPT],
        "fixes.reverted": n[REVERTED],
        "fixes.failed": n[FAILED],
    }
