"""Fixes for any database: plan them from the workload and the catalog, write them as
``fixes.sql``, apply them safely, verify each on its statements and keep or revert it, record
the verdicts (see the submodules; :mod:`model`, :mod:`sqlfile` and :mod:`verify` are pure)."""

from __future__ import annotations

from kit.fixes.apply import apply_fixes, undo
from kit.fixes.loop import LoopResult, run_loop
from kit.fixes.model import (
    ANALYZE,
    CREATE,
    DROP,
    FAILED,
    KEPT,
    PLANNED,
    RECORD_KEYS,
    REVERTED,
    Fix,
    FixKind,
    FixPlan,
    Verdict,
)
from kit.fixes.plan import Declared, declared_specs, plan_fixes
from kit.fixes.reviewed import reviewed_plan, what_to_fix

__all__ = [
    "ANALYZE",
    "CREATE",
    "DROP",
    "FAILED",
    "KEPT",
    "PLANNED",
    "RECORD_KEYS",
    "REVERTED",
    "Declared",
    "Fix",
    "FixKind",
    "FixPlan",
    "LoopResult",
    "Verdict",
    "apply_fixes",
    "declared_specs",
    "plan_fixes",
    "reviewed_plan",
    "run_loop",
    "undo",
    "what_to_fix",
]
