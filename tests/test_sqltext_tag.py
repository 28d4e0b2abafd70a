"""The kit's tag goes after a statement's first word, where every PostgreSQL keeps it (pure)."""

from __future__ import annotations

from kit.sqltext.tag import TAG, is_kit, tagged


def test_the_tag_follows_the_first_word_once():
    assert tagged("SELECT 1") == f"SELECT {TAG} 1"
    assert tagged("  CREATE INDEX i ON t (a)\n") == f"CREATE {TAG} INDEX i ON t (a)"
    assert tagged("ROLLBACK") == f"ROLLBACK {TAG}"
    assert tagged(tagged("SELECT 1")) == tagged("SELECT 1")
    assert is_kit(f"SELECT {TAG} 1") and is_kit(f"{TAG} SELECT 1") and not is_kit("SELECT 1 /* app */")
