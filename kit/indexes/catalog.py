"""The kit's own list of the seed's 23 indexes, each with the query it serves (pure).

This is the kit's counterpart of the seed's ``QueryOptimizer`` list (audit §2.2): declared
independently of the migration, so :func:`compare_expected` can show where the two drift.
Each probe's query is the representative query used to verify that the index is used; its
parameters are sampled from one row in the middle of the table (``sample`` columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from kit.indexes.spec import IndexSpec, parse_index_sql
from kit.sqltext.tag import tagged


@dataclass(frozen=True)
class Probe:
    """A representative query for one index, with where its parameter values come from."""

    index: str
    table: str
    definition: str  # the kit's expectation, "table (keys) [WHERE ...]"
    query: str  # psycopg named parameters, values sampled from ``sample`` columns of one row
    sample: tuple[str, ...] = ()  # columns of ``table`` read from one middle row
    sample_where: str = ""  # a constant filter for the sampled row (e.g. a rare value)


def _p(index, definition, query, sample=(), sample_where=""):
    table = definition.split(" ", 1)[0]
    return Probe(
        index=index,
        table=table,
        definition=definition,
        query=tagged(query),
        sample=tuple(sample),
        sample_where=sample_where,
    )


EXPECTED: tuple[Probe, ...] = (
    _p(
        "idx_reconciliation_jobs_project_status",
        "reconciliation_jobs (project_id, status)",
        "SELECT count(*) FROM reconciliation_jobs WHERE project_id = %(project_id)s AND status = 'completed'",
        ["project_id"],
    ),
    _p(
        "idx_reconciliation_jobs_project_created",
        "reconciliation_jobs (project_id, created_at DESC)",
        "SELECT * FROM reconciliation_jobs WHERE project_id = %(project_id)s ORDER BY created_at DESC LIMIT 20",
        ["project_id"],
    ),
    _p(
        "idx_reconciliation_jobs_status_created",
        "reconciliation_jobs (status, created_at DESC)",
        "SELECT * FROM reconciliation_jobs WHERE status = 'pending' ORDER BY created_at DESC LIMIT 50",
    ),
    _p(
        "idx_reconciliation_jobs_created_by",
        "reconciliation_jobs (created_by)",
        "SELECT id, status FROM reconciliation_jobs WHERE created_by = %(created_by)s",
        ["created_by"],
    ),
    _p(
        "idx_reconciliation_results_job_confidence",
        "reconciliation_results (job_id, confidence DESC)",
        "SELECT * FROM reconciliation_results WHERE job_id = %(job_id)s ORDER BY confidence DESC LIMIT 100",
        ["job_id"],
    ),
    _p(
        "idx_reconciliation_results_job_status",
        "reconciliation_results (job_id, status)",
        "SELECT * FROM reconciliation_results WHERE job_id = %(job_id)s AND status = 'review'",
        ["job_id"],
    ),
    _p(
        "idx_reconciliation_results_job_created",
        "reconciliation_results (job_id, created_at DESC)",
        "SELECT * FROM reconciliation_results WHERE job_id = %(job_id)s ORDER BY created_at DESC LIMIT 100",
        ["job_id"],
    ),
    _p(
        "idx_data_sources_project_active",
        "data_sources (project_id, is_active)",
        "SELECT count(*) FROM data_sources WHERE project_id = %(project_id)s AND is_active",
        ["project_id"],
    ),
    _p(
        "idx_data_sources_project_status",
        "data_sources (project_id, status)",
        "SELECT * FROM data_sources WHERE project_id = %(project_id)s AND status = 'error'",
        ["project_id"],
    ),
    _p(
        "idx_reconciliation_records_project_date",
        "reconciliation_records (project_id, transaction_date)",
        "SELECT * FROM reconciliation_records WHERE project_id = %(project_id)s "
        "AND transaction_date BETWEEN %(transaction_date)s AND %(transaction_date)s::date + 7",
        ["project_id", "transaction_date"],
    ),
    _p(
        "idx_reconciliation_records_project_status",
        "reconciliation_records (project_id, status)",
        "SELECT * FROM reconciliation_records WHERE project_id = %(project_id)s AND status = 'unmatched'",
        ["project_id"],
    ),
    _p(
        "idx_reconciliation_records_source_system",
        "reconciliation_records (source_system)",
        "SELECT * FROM reconciliation_records WHERE source_system = %(source_system)s",
        ["source_system"],
        "source_system LIKE 'legacy%'",
    ),
    _p(
        "idx_reconciliation_matches_project",
        "reconciliation_matches (project_id)",
        "SELECT * FROM reconciliation_matches WHERE project_id = %(project_id)s",
        ["project_id"],
    ),
    _p(
        "idx_reconciliation_matches_confidence",
        "reconciliation_matches (confidence)",
        "SELECT * FROM reconciliation_matches WHERE confidence < 0.5 ORDER BY confidence LIMIT 100",
    ),
    _p(
        "idx_users_email_lower",
        "users (lower(email))",
        "SELECT * FROM users WHERE lower(email) = lower(%(email)s)",
        ["email"],
    ),
    _p(
        "idx_users_active",
        "users (created_at DESC) WHERE is_active",
        "SELECT * FROM users WHERE is_active ORDER BY created_at DESC LIMIT 20",
    ),
    _p(
        "idx_projects_owner_id_active",
        "projects (owner_id, is_active)",
        "SELECT count(*) FROM projects WHERE owner_id = %(owner_id)s AND is_active",
        ["owner_id"],
    ),
    _p(
        "idx_projects_status",
        "projects (status, created_at DESC)",
        "SELECT * FROM projects WHERE status = 'active' ORDER BY created_at DESC LIMIT 20",
    ),
    _p(
        "idx_uploaded_files_project_status",
        "uploaded_files (project_id, status)",
        "SELECT * FROM uploaded_files WHERE project_id = %(project_id)s AND status = 'failed'",
        ["project_id"],
    ),
    _p(
        "idx_uploaded_files_uploaded_by",
        "uploaded_files (uploaded_by)",
        "SELECT * FROM uploaded_files WHERE uploaded_by = %(uploaded_by)s",
        ["uploaded_by"],
    ),
    _p(
        "idx_audit_logs_user_created",
        "audit_logs (user_id, created_at DESC)",
        "SELECT * FROM audit_logs WHERE user_id = %(user_id)s ORDER BY created_at DESC LIMIT 50",
        ["user_id"],
        "user_id IS NOT NULL",
    ),
    _p(
        "idx_audit_logs_resource",
        "audit_logs (resource_type, resource_id)",
        "SELECT * FROM audit_logs WHERE resource_type = %(resource_type)s AND resource_id = %(resource_id)s",
        ["resource_type", "resource_id"],
    ),
    _p(
        "idx_user_activity_logs_user_created",
        "user_activity_logs (user_id, created_at DESC)",
        "SELECT * FROM user_activity_logs WHERE user_id = %(user_id)s ORDER BY created_at DESC LIMIT 50",
        ["user_id"],
    ),
)


def kit_probe(spec: IndexSpec) -> Probe | None:
    """The kit's own probe for ``spec`` (same name and table), or None."""
    for probe in EXPECTED:
        if probe.index == spec.name and probe.table == spec.table:
            return probe
    return None


def expected_specs() -> tuple[IndexSpec, ...]:
    """The kit's list as specs, parsed from its definitions with the migration's parser."""
    text = ";\n".join(f"CREATE INDEX {p.index} ON {p.definition}" for p in EXPECTED)
    return parse_index_sql(text, source="kit.indexes.catalog")


def compare_expected(specs: tuple[IndexSpec, ...] | list[IndexSpec]) -> pd.DataFrame:
    """The seed's §2.2 check: the kit's expected list vs the migration, one row per name.

    ``verdict`` is ``match``, ``only in migration``, ``only in kit`` or ``differs``.
    """
    kit = {s.name: s for s in expected_specs()}
    mig = {s.name: s for s in specs}
    rows = []
    for name in list(mig) + [n for n in kit if n not in mig]:
        m, k = mig.get(name), kit.get(name)
        if m and k:
            verdict = "match" if m.signature() == k.signature() else "differs"
        else:
            verdict = "only in migration" if m else "only in kit"
        rows.append(
            {
                "name": name,
                "verdict": verdict,
                "migration": m.definition if m else None,
                "kit": k.definition if k else None,
            }
        )
    return pd.DataFrame(rows, columns=["name", "verdict", "migration", "kit"])
