"""Statement texts lose their secrets before they reach a file (pure)."""

from __future__ import annotations

import pytest

from kit import redact

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
])
def test_the_canary_never_survives(text):
    out = redact.statement(text)
    assert CANARY not in out
    assert "'***'" in out


def test_plannable_statements_keep_their_ordinary_literals():
    text = "SELECT id FROM jobs WHERE status = 'completed' AND project_id = $1"
    assert redact.statement(text) == text


def test_utility_statement_keeps_its_shape():
    assert redact.statement("ALTER ROLE app PASSWORD 'x' VALID UNTIL 'infinity'") == \
        "ALTER ROLE app PASSWORD '***' VALID UNTIL '***'"


@pytest.mark.parametrize("text", [None, ""])
def test_empty_texts_pass_through(text):
    assert redact.statement(text) == text
