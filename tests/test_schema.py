"""kit.demo.schema on a real throwaway PostgreSQL: the seed's tables, its 23 unapplied indexes, sizes."""

from __future__ import annotations

import re

from sqlalchemy import Engine

from kit.demo import schema

# Audit section 2.1, in the audit's order.
SEED_INDEXES = [
    "idx_reconciliation_jobs_project_status",
    "idx_reconciliation_jobs_project_created",
    "idx_reconciliation_jobs_status_created",
    "idx_reconciliation_jobs_created_by",
    "idx_reconciliation_results_job_confidence",
    "idx_reconciliation_results_job_status",
    "idx_reconciliation_results_job_created",
    "idx_data_sources_project_active",
    "idx_data_sources_project_status",
    "idx_reconciliation_records_project_date",
    "idx_reconciliation_records_project_status",
    "idx_reconciliation_records_source_system",
    "idx_reconciliation_matches_project",
    "idx_reconciliation_matches_confidence",
    "idx_users_email_lower",
    "idx_users_active",
    "idx_projects_owner_id_active",
    "idx_projects_status",
    "idx_uploaded_files_project_status",
    "idx_uploaded_files_uploaded_by",
    "idx_audit_logs_user_created",
    "idx_audit_logs_resource",
    "idx_user_activity_logs_user_created",
]

FOREIGN_KEYS = {
    ("projects", "owner_id", "users"),
    ("data_sources", "project_id", "projects"),
    ("reconciliation_jobs", "project_id", "projects"),
    ("reconciliation_jobs", "created_by", "users"),
    ("reconciliation_records", "project_id", "projects"),
    ("reconciliation_records", "data_source_id", "data_sources"),
    ("reconciliation_results", "job_id", "reconciliation_jobs"),
    ("reconciliation_results", "left_record_id", "reconciliation_records"),
    ("reconciliation_results", "right_record_id", "reconciliation_records"),
    ("reconciliation_matches", "project_id", "projects"),
    ("reconciliation_matches", "job_id", "reconciliation_jobs"),
    ("reconciliation_matches", "left_record_id", "reconciliation_records"),
    ("reconciliation_matches", "right_record_id", "reconciliation_records"),
    ("uploaded_files", "project_id", "projects"),
    ("uploaded_files", "uploaded_by", "users"),
    ("audit_logs", "user_id", "users"),
    ("user_activity_logs", "user_id", "users"),
}

FKS = """
SELECT c.conrelid::regclass::text, a.attname, c.confrelid::regclass::text
FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
"""
INDEXES = "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
DEFINITIONS = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
ORDER BY 1
"""


def test_create_schema_makes_the_ten_tables_with_foreign_keys_and_only_primary_keys(fresh_engine: Engine):
    with fresh_engine.begin() as conn:
        schema.create_schema(conn)
        schema.create_schema(conn)  # idempotent
    with fresh_engine.connect() as conn:
        assert schema.platform_tables(conn) == list(schema.TABLES)
        assert set(conn.exec_driver_sql(FKS).all()) == FOREIGN_KEYS
        indexes = conn.exec_driver_sql(INDEXES).all()
    # the "before" state: no index but the primary keys' (no unique constraint either)
    assert indexes == sorted((t, f"{t}_pkey") for t in (*schema.TABLES, schema.META_TABLE))


def test_tables_are_in_foreign_key_dependency_order():
    position = {t: i for i, t in enumerate(schema.TABLES)}
    assert len(position) == 10
    for child, _, parent in FOREIGN_KEYS:
        assert position[parent] < position[child], (child, parent)


def test_migration_names_exactly_the_seed_indexes_in_order():
    from kit.indexes import parse_migration

    assert [spec.name for spec in parse_migration(schema.MIGRATION_PATH)] == SEED_INDEXES


def test_each_migration_statement_is_one_commented_concurrent_create():
    text = schema.MIGRATION_PATH.read_text()
    statements = [s.strip() for s in text.split(";") if s.strip() and not _only_comments(s)]
    assert len(statements) == 23
    for stmt in statements:
        lines = stmt.splitlines()
        assert lines[-1].startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_"), lines[-1]
        assert lines[-2].startswith("-- "), f"no comment saying which query {lines[-1]} serves"


def test_migration_applies_cleanly_to_the_schema(fresh_engine: Engine):
    with fresh_engine.begin() as conn:
        schema.create_schema(conn)
    statements = [s for s in schema.MIGRATION_PATH.read_text().split(";") if not _only_comments(s)]
    # CREATE INDEX CONCURRENTLY refuses to run inside a transaction block: one autocommit call each
    with fresh_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for stmt in statements:
            conn.exec_driver_sql(stmt)
        valid = conn.exec_driver_sql(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indisvalid AND c.relname LIKE 'idx%%' ORDER BY 1"
        ).scalars().all()
    assert valid == sorted(SEED_INDEXES)


def test_drop_schema_removes_every_table(fresh_engine: Engine):
    with fresh_engine.begin() as conn:
        schema.create_schema(conn)
        schema.drop_schema(conn)
    with fresh_engine.connect() as conn:
        assert schema.platform_tables(conn) == []
        assert conn.exec_driver_sql(INDEXES).all() == []
        assert schema.table_stats(conn).empty


def test_table_stats_counts_rows_and_sizes(fresh_engine: Engine):
    with fresh_engine.begin() as conn:
        schema.create_schema(conn)
        conn.exec_driver_sql(
            "INSERT INTO users (email, first_name, last_name, role) "
            "VALUES ('A@x.io', 'A', 'B', 'admin'), ('c@x.io', 'C', 'D', 'viewer')"
        )
    with fresh_engine.connect() as conn:
        stats = schema.table_stats(conn)
        estimated = schema.table_stats(conn, exact=False)
    assert list(stats.columns) == ["table", "rows", "total_bytes", "index_bytes"]
    assert stats["table"].tolist() == list(schema.TABLES)
    assert stats.set_index("table")["rows"].to_dict() == {t: 2 if t == "users" else 0 for t in schema.TABLES}
    users = stats.set_index("table").loc["users"]
    assert users["total_bytes"] > users["index_bytes"] > 0
    assert estimated["rows"].tolist() == [0] * 10  # never analyzed: no estimate yet


def test_set_aside_and_restore_keys_round_trip(fresh_engine: Engine):
    with fresh_engine.begin() as conn:
        schema.create_schema(conn)
        conn.exec_driver_sql("CREATE INDEX idx_users_email_lower ON users (lower(email))")
        conn.exec_driver_sql("CREATE INDEX idx_note ON projects (name) WHERE name LIKE 'A%%'")
        before = conn.exec_driver_sql(DEFINITIONS).all()
        aside = schema.set_aside_keys(conn)
        left = conn.exec_driver_sql(DEFINITIONS).all()
        schema.restore_keys(conn, aside)
        after = conn.exec_driver_sql(DEFINITIONS).all()
    assert (len(aside.primary_keys), len(aside.indexes), len(aside.foreign_keys)) == (10, 2, 17)
    assert [name for name, _ in left] == ["kit_meta_pkey", "kit_meta_pkey"]  # not a platform table
    assert sorted(after) == sorted(before)


def _only_comments(chunk: str) -> bool:
    return not re.sub(r"--[^\n]*", "", chunk).strip()
