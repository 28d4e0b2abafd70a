"""Statement texts lose their secrets before they reach a file (pure)."""

from __future__ import annotations

import pytest

from kit.sqltext import redact

CANARY = "Canary-7f3e9b"


@pytest.mark.parametrize("text", [
    f"ALTER ROLE app_writer PASSWORD '{CANARY}'",
    f"CREATE ROLE app LOGIN PASSWORD '{CANARY}' VALID UNTIL 'infinity'",
    f"CREATE USER MAPPING FOR app SERVER remote OPTIONS (user 'app', password '{CANARY}')",
    f"ALTER USER MAPPING FOR app SERVER remote OPTIONS (SET password $${CANARY}$$)",
    f"CREATE SERVER remote FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db', password E'{CANARY}')",
    f"SELECT dblink_connect('host=db user=app password={CANARY}')",
    f"SELECT * FROM dblink('postgresql://app:{CANARY}@db/app', 'SELECT 1') AS t(x int)",
    f"ALTER ROLE app PASSWORD '{CANARY}",  # cut by left(query, 300) in the middle of the literal
    # a second statement in one text is judged on its own, not by the first one's kind
    f"SELECT 1; ALTER ROLE app PASSWORD '{CANARY}'",
    f"SELECT 1;\nCREATE USER MAPPING FOR app SERVER s OPTIONS (password '{CANARY}')",
    # a secret value next to a secret name, in statements PostgreSQL does not normalize (captures)
    f"UPDATE users SET password_hash = '{CANARY}' WHERE id = 1",
    f"SELECT id FROM api_clients WHERE api_key = '{CANARY}'",
    f"SELECT set_config('app.token', '{CANARY}', false)",
    f"INSERT INTO accounts (email, password) VALUES ('a@b.org', '{CANARY}')",
    # settings: quoted or not
    f"SET app.api_key = {CANARY}",
    f"SET app.secret TO '{CANARY}'",
    f"ALTER DATABASE app SET app.token = '{CANARY}'",
    # comments PostgreSQL keeps with the text
    f"/* password={CANARY} */ SELECT 1",
    f"SELECT 1 -- token {CANARY}",
    f"SELECT 1 /* password: {CANARY}",  # cut inside a comment
    f"DO $$BEGIN EXECUTE 'ALTER ROLE app PASSWORD ''{CANARY}'''; END$$",
    f"COPY t FROM PROGRAM 'curl -H \"Authorization: Bearer {CANARY}\" https://x'",
])
def test_the_canary_never_survives(text):
    out = redact.statement(text)
    assert CANARY not in out
    assert "***" in out


@pytest.mark.parametrize("text", [
    "SELECT id FROM jobs WHERE status = 'completed' AND project_id = $1",
    "SELECT * FROM users WHERE email = 'a@b.org' ORDER BY created_at",
    "SET statement_timeout = 5000",
    "SELECT 1; SELECT 'hello'",
])
def test_plannable_statements_keep_their_ordinary_literals(text):
    assert redact.statement(text) == text


def test_utility_statement_keeps_its_shape():
    assert redact.statement("ALTER ROLE app PASSWORD 'x' VALID UNTIL 'infinity'") == \
        "ALTER ROLE app PASSWORD '***' VALID UNTIL '***'"
    assert redact.statement("SELECT 1; ALTER ROLE app PASSWORD 'x'") == "SELECT 1; ALTER ROLE app PASSWORD '***'"
    assert redact.statement("SET app.api_key = abc123") == "SET app.api_key = '***'"
    assert redact.statement("/* password=x */ SELECT 1") == "/* *** */ SELECT 1"


def test_a_truncated_text_is_masked_from_its_first_quote_on():
    assert redact.statement("SELECT dblink_connect('host=db password=se") == "SELECT dblink_connect('***'"
    assert redact.statement("SET app.token = abc; SELECT 'x") == "SET app.token = '***'; SELECT '***'"


@pytest.mark.parametrize("text", [None, ""])
def test_empty_texts_pass_through(text):
    assert redact.statement(text) == text
