"""The tag that marks the kit's own SQL, so that pg_stat_statements and the capture tell it from
the workload (pure).

The tag goes after a statement's first word, ``SELECT /* kit */ ...``, never before it: from
PostgreSQL 18 on, pg_stat_statements keeps a statement's text from its first token, and a leading
``/* kit */ SELECT ...`` is stored as ``SELECT ...`` — the kit's own queries would then count as the
user's workload. Every version keeps a comment after the first word.
"""

from __future__ import annotations

TAG = "/* kit */"


def tagged(statement: str) -> str:
    """``statement`` with the tag after its first word (unchanged when it is tagged already)."""
    if is_kit(statement):
        return statement
    first, space, rest = statement.strip().partition(" ")
    return f"{first} {TAG}{space}{rest}"


def is_kit(statement: str) -> bool:
    """Whether ``statement`` is the kit's own (tagged, wherever the tag is)."""
    return TAG in statement
