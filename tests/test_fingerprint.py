from __future__ import annotations

import pytest

from kit.sqltext import fingerprint as fp


def test_values_and_layout_do_not_change_the_fingerprint():
    a = fp.fingerprint("SELECT count(*) FROM reconciliation_jobs WHERE project_id = 7")
    b = fp.fingerprint("select   count(*)\nfrom reconciliation_jobs where project_id = %(project_id)s")
    c = fp.fingerprint("SELECT count(*) FROM reconciliation_jobs WHERE project_id = $1 /* c */")
    assert a == b == c
    assert len(a) == 16
    assert a != fp.fingerprint("SELECT count(*) FROM data_sources WHERE project_id = 7")


def test_normalize_matches_pg_stat_statements_form():
    assert fp.normalize("SELECT * FROM users WHERE email = 'a@b.c' AND id = 3") == (
        "SELECT * FROM users WHERE email = $1 AND id = $2"
    )
    assert fp.normalize("SELECT 1 FROM t WHERE a = %(a)s AND b = %(b)s AND c = %(a)s") == (
        "SELECT $3 FROM t WHERE a = $1 AND b = $2 AND c = $1"  # constants numbered after parameters, as PostgreSQL does
    )


def test_in_lists_of_any_length_share_a_fingerprint():
    assert fp.fingerprint("SELECT * FROM t WHERE id IN (1, 2)") == fp.fingerprint(
        "SELECT * FROM t WHERE id IN (1, 2, 3, 4)"
    )


def test_unparsable_sql_falls_back_to_the_regex_normalizer():
    s = fp.shape("SELEC name FROM users WHERE id = 5 AND email = 'x'")
    assert s.parsed is False
    assert s.normalized == "SELEC name FROM users WHERE id = $1 AND email = $2"
    assert s.tables == frozenset({"users"})
    assert fp.fingerprint("SELEC name FROM users WHERE id = 5") == fp.fingerprint("SELEC  name FROM users WHERE id = 9")
    assert fp.fingerprint("SELEC name FROM users WHERE id = 5") != fp.fingerprint("SELEC name FROM projects WHERE id = 5")


@pytest.mark.parametrize(
    ("sql", "written"),
    [
        ("SELECT * FROM projects JOIN users ON users.id = projects.owner_id", set()),
        ("INSERT INTO reconciliation_results (job_id) VALUES (%(j)s)", {"reconciliation_results"}),
        ("UPDATE projects SET name = 'x' FROM users WHERE users.id = projects.owner_id", {"projects"}),
        ("DELETE FROM public.audit_logs WHERE id = 1", {"audit_logs"}),
        ("WITH moved AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved", {"a", "b"}),
        ("TRUNCATE users, projects", {"users", "projects"}),
        ("COPY data_sources (id) FROM STDIN", {"data_sources"}),
        ("COPY data_sources TO STDOUT", set()),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", {"t"}),
        ('INSERT INTO "Odd" VALUES (1) ON CONFLIKT', {"Odd"}),  # fallback
        ("UPDATE users SET x = 1 WHERE id = 1 garbage garbage", {"users"}),  # fallback
    ],
)
def test_tables_written(sql, written):
    assert fp.tables_written(sql) == frozenset(written)


def test_tables_read_excludes_cte_names():
    sql = "WITH page AS (SELECT id FROM projects) SELECT * FROM page JOIN data_sources d ON d.project_id = page.id"
    assert fp.tables_read(sql) == frozenset({"projects", "data_sources"})


def test_shape_names_the_loop_key_and_aggregate():
    s = fp.shape("SELECT count(*) FROM projects WHERE owner_id = %(owner_id)s")
    assert (s.kind, s.keyed_on, s.aggregate, s.parsed) == ("select", ("owner_id",), True, True)


def test_literal_percent_is_unescaped():
    assert fp.to_dollar_params("SELECT 1 WHERE a LIKE 'x%%' AND b = %s") == "SELECT 1 WHERE a LIKE 'x%' AND b = $1"
