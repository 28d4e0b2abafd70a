"""The migration parsed into index specs (pure: no database)."""

from __future__ import annotations

import pytest

from kit.indexes.catalog import EXPECTED, compare_expected
from kit.indexes.spec import MigrationError, parse_index_sql, parse_indexdef, parse_migration
from kit.demo.schema import MIGRATION_PATH

SEED_NAMES = [
    "idx_reconciliation_jobs_project_status", "idx_reconciliation_jobs_project_created",
    "idx_reconciliation_jobs_status_created", "idx_reconciliation_jobs_created_by",
    "idx_reconciliation_results_job_confidence", "idx_reconciliation_results_job_status",
    "idx_reconciliation_results_job_created", "idx_data_sources_project_active",
    "idx_data_sources_project_status", "idx_reconciliation_records_project_date",
    "idx_reconciliation_records_project_status", "idx_reconciliation_records_source_system",
    "idx_reconciliation_matches_project", "idx_reconciliation_matches_confidence",
    "idx_users_email_lower", "idx_users_active", "idx_projects_owner_id_active", "idx_projects_status",
    "idx_uploaded_files_project_status", "idx_uploaded_files_uploaded_by", "idx_audit_logs_user_created",
    "idx_audit_logs_resource", "idx_user_activity_logs_user_created",
]


def test_migration_has_the_seeds_23_indexes_in_order():
    specs = parse_migration(MIGRATION_PATH)
    assert [s.name for s in specs] == SEED_NAMES
    first = specs[0]
    assert (first.table, first.columns, first.line) == ("reconciliation_jobs", ("project_id", "status"), 12)
    assert first.create_sql == ("CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_jobs_project_status "
                                "ON public.reconciliation_jobs (project_id, status)")


def test_expression_partial_and_descending_keys():
    specs = {s.name: s for s in parse_migration(MIGRATION_PATH)}
    email = specs["idx_users_email_lower"]
    assert (email.keys[0].expression, email.keys[0].is_column, email.columns) == ("lower(email)", False, ())
    active = specs["idx_users_active"]
    assert (active.predicate, active.keys[0].descending, active.definition) == (
        "is_active", True, "users (created_at DESC) WHERE is_active")


def test_include_unique_method_schema():
    (spec,) = parse_index_sql("CREATE UNIQUE INDEX u ON app.t USING hash (a) INCLUDE (b, c) WHERE d > 1")
    assert (spec.schema, spec.table, spec.method, spec.unique, spec.include, spec.predicate) == (
        "app", "t", "hash", True, ("b", "c"), "d > 1")


def test_indexdef_matches_its_declaration_despite_casts_and_parentheses():
    (declared,) = parse_index_sql("CREATE INDEX i ON t (a DESC) WHERE status = 'x'")
    live = parse_indexdef("CREATE INDEX i ON public.t USING btree (a DESC) WHERE (status = 'x'::text)")
    assert live.signature() == declared.signature()
    other = parse_indexdef("CREATE INDEX i ON public.t USING btree (a) WHERE (status = 'x'::text)")
    assert other.signature() != declared.signature()


def test_syntax_error_names_file_and_line():
    with pytest.raises(MigrationError, match=r"^m\.sql:3: syntax error"):
        parse_index_sql("-- one\nCREATE INDEX a ON t (x);\nCREATE INDEX b ON t (y;\n", source="m.sql")


def test_non_index_statement_is_refused_with_its_line():
    text = "CREATE INDEX a ON t (x);\n\n-- sneaky\nDROP TABLE users;\n"
    with pytest.raises(MigrationError, match=r"^m\.sql:4: DropStmt is not index DDL"):
        parse_index_sql(text, source="m.sql")


def test_unnamed_and_duplicate_indexes_are_refused():
    with pytest.raises(MigrationError, match=r"m\.sql:1: CREATE INDEX without a name"):
        parse_index_sql("CREATE INDEX ON t (x)", source="m.sql")
    with pytest.raises(MigrationError, match=r"m\.sql:2: index a already declared at line 1"):
        parse_index_sql("CREATE INDEX a ON t (x);\nCREATE INDEX a ON t (y);", source="m.sql")


def test_kit_list_matches_the_migration_and_drift_is_named():
    specs = parse_migration(MIGRATION_PATH)
    assert len(EXPECTED) == 23
    assert compare_expected(specs)["verdict"].tolist() == ["match"] * 23
    drifted = list(specs[1:])
    frame = compare_expected(drifted).set_index("name")["verdict"]
    assert frame["idx_reconciliation_jobs_project_status"] == "only in kit"
    changed = [s for s in specs if s.name != "idx_users_active"]
    changed += list(parse_index_sql("CREATE INDEX idx_users_active ON users (created_at)"))
    changed += list(parse_index_sql("CREATE INDEX idx_new ON users (role)"))
    verdicts = compare_expected(changed).set_index("name")["verdict"]
    assert (verdicts["idx_users_active"], verdicts["idx_new"]) == ("differs", "only in migration")
