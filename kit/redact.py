"""Redaction of statement texts before they reach a file, a notebook or a log (pure).

pg_stat_statements replaces the constants of plannable statements (SELECT, INSERT, UPDATE,
DELETE, MERGE) with ``$n``, but keeps utility statements word for word: ``ALTER ROLE app
PASSWORD '...'``, ``CREATE USER MAPPING ... OPTIONS (password '...')``, ``CREATE SERVER ...
OPTIONS (host '...')``. Every statement text the kit writes goes through :func:`statement`.

The rule: in a utility statement every string constant becomes ``'***'``; in any other
statement the string constants that look like a secret (a libpq connection string, a URL with
a password, a ``password``/``secret``/``token`` word) do. Texts are often truncated (``left(query,
300)``), so an unterminated quote masks everything after it.
"""

from __future__ import annotations

import re

from pglast import parser
from pglast.parser import ParseError

MASKED = "'***'"
_STRING_TOKENS = {"SCONST", "USCONST", "BCONST", "XCONST"}
_PLANNABLE = {"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH", "VALUES", "TABLE", "ASCII_40"}
_SECRET = re.compile(r"password|passwd|secret|token|\bkey\s*=|://|\bhost\s*=|\buser\s*=", re.I)
_FIRST_QUOTE = re.compile(r"""(?:[eEbBxXuU]&?)?'|\$[A-Za-z_0-9]*\$""")


def statement(text: str | None) -> str | None:
    """``text`` with its secret-bearing string constants replaced by ``'***'``."""
    if not text:
        return text
    try:
        tokens = parser.scan(text)
    except ParseError:
        return _truncated(text)
    if not tokens:
        return text
    utility = tokens[0].name not in _PLANNABLE
    out, last = [], 0
    for tok in tokens:
        if tok.name not in _STRING_TOKENS:
            continue
        literal = text[tok.start:tok.end + 1]
        if utility or _SECRET.search(literal):
            out.append(text[last:tok.start])
            out.append(MASKED)
            last = tok.end + 1
    out.append(text[last:])
    return "".join(out)


def _truncated(text: str) -> str:
    """A text the scanner rejects (cut in the middle of a literal): mask from the first quote on,
    after redacting what precedes it."""
    match = _FIRST_QUOTE.search(text)
    if match is None:
        return text
    head = text[:match.start()]
    try:
        parser.scan(head)
    except ParseError:
        return MASKED
    return head + MASKED
