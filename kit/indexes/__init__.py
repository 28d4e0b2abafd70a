"""Indexes: the migration as source of truth, status vs the live database, safe apply, verify,
what-if advice (see the submodules; pure parsing lives in :mod:`kit.indexes.spec`)."""

from __future__ import annotations

from kit.indexes.advisor import Advice, advise
from kit.indexes.apply import ApplyResult, apply_indexes, drop_indexes
from kit.indexes.catalog import EXPECTED, compare_expected
from kit.indexes.spec import IndexSpec, MigrationError, parse_index_sql, parse_migration, specs_frame
from kit.indexes.status import IndexStatus, default_specs, index_status
from kit.indexes.verify import VerifyResult, measure, verify

__all__ = [
    "EXPECTED",
    "Advice",
    "ApplyResult",
    "IndexSpec",
    "IndexStatus",
    "MigrationError",
    "VerifyResult",
    "advise",
    "apply_indexes",
    "compare_expected",
    "default_specs",
    "drop_indexes",
    "index_status",
    "measure",
    "parse_index_sql",
    "parse_migration",
    "specs_frame",
    "verify",
]
