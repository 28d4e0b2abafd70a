"""Redaction of statement texts before they reach a file, a notebook or a log (pure).

pg_stat_statements replaces the constants of plannable statements (SELECT, INSERT, UPDATE,
DELETE, MERGE) with ``$n``, but keeps utility statements word for word: ``ALTER ROLE app
PASSWORD '...'``, ``CREATE USER MAPPING ... OPTIONS (password '...')``, ``CREATE SERVER ...
OPTIONS (host '...')``. pg_stat_activity and a capture of the application's statements keep
every text as sent. Every statement text the kit writes goes through :func:`statement`.

The rules, applied to each statement of a text on its own (``SELECT 1; ALTER ROLE ...`` is two):

* in a utility statement every string constant becomes ``'***'``;
* in any other statement, a string constant does when it looks like a secret (a libpq connection
  string, a URL with a password, a ``password``/``secret``/``token`` word), when it follows a name
  that looks like one (``password = 'x'``, ``set_config('app.token', 'x', ...)``), and every one of
  an INSERT that names such a column;
* the value of ``SET name = value`` is masked when the name looks like a secret, even unquoted;
* a comment that looks like a secret becomes ``/* *** */``;
* a quoted identifier that carries a secret (``AS "password=hunter2"``, ``"postgres://u:pw@h"``)
  becomes ``"***"`` (a plain name such as ``password_hash`` is kept: it says what, not which).

Texts are often truncated (``left(query, 300)``): a text the scanner rejects is masked from its
first quote or comment on.
"""

from __future__ import annotations

import re
from typing import overload

from pglast import parser
from pglast.parser import ParseError

MASKED = "'***'"
MASKED_COMMENT = "/* *** */"
MASKED_IDENT = '"***"'
_STRING_TOKENS = {"SCONST", "USCONST", "BCONST", "XCONST"}
_COMMENT_TOKENS = {"C_COMMENT", "SQL_COMMENT"}
_VALUE_TOKENS = _STRING_TOKENS | {"IDENT", "ICONST", "FCONST"}
_PLANNABLE = {"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH", "VALUES", "TABLE", "ASCII_40"}
_SECRET_WORDS = r"password|passwd|pwd|secret|token|credential|api_?key|private_?key|sslkey|bearer"
# the contents of a literal or comment that give it away
_SECRET = re.compile(_SECRET_WORDS + r"|\bkey\s*=|://|\bhost\s*=|\buser\s*=", re.I)
# a quoted identifier holding a value: a secret word followed by = or :, a URL, a DSN key
_SECRET_IDENT = re.compile(r"(?:" + _SECRET_WORDS + r")\s*[=:]|://|\b(?:host|user|key)\s*=", re.I)
# a name (column, setting, option) whose value is a secret
_SECRET_NAME = re.compile(_SECRET_WORDS + r"|auth", re.I)
_NEAR = 3  # a literal at most this many tokens after a secret name is its value
_FIRST_HIDING = re.compile(r"""(?:[eEbBxXuU]&?)?'|\$[A-Za-z_0-9]*\$|/\*|--""")


@overload
def statement(text: str) -> str: ...
@overload
def statement(text: None) -> None: ...
def statement(text: str | None) -> str | None:
    """``text`` with its secret-bearing constants and comments replaced by ``'***'``."""
    if not text:
        return text
    try:
        tokens = parser.scan(text)
    except ParseError:
        return _truncated(text)
    spans: list[tuple[int, int, str]] = []
    for part in _statements(tokens):
        spans += _secret_spans(text, part)
    return _replace(text, spans)


def _statements(tokens: list) -> list[list]:
    """The tokens of each statement of a text (split at top-level ``;``)."""
    parts: list[list] = []
    current: list = []
    for tok in tokens:
        if tok.name == "ASCII_59":
            parts.append(current)
            current = []
        else:
            current.append(tok)
    parts.append(current)
    return [p for p in parts if p]


def _secret_spans(text: str, tokens: list) -> list[tuple[int, int, str]]:
    words = [t for t in tokens if t.name not in _COMMENT_TOKENS]
    spans = [
        (t.start, t.end + 1, MASKED_COMMENT)
        for t in tokens
        if t.name in _COMMENT_TOKENS and _SECRET.search(text[t.start : t.end + 1])
    ]
    if not words:
        return spans
    utility = words[0].name not in _PLANNABLE
    values = [t.name for t in words]
    names = [_is_secret_name(text, t) for t in words]
    insert_secret = words[0].name == "INSERT" and any(names)
    setting = _set_secret(text, words) if "SET" in values else None
    since_name = None  # tokens since the last secret-looking name
    for tok, secret_name in zip(words, names, strict=False):
        literal, mask = text[tok.start : tok.end + 1], MASKED
        if tok.name in _STRING_TOKENS:
            hide = (
                utility
                or insert_secret
                or _SECRET.search(literal) is not None
                or (since_name is not None and since_name <= _NEAR)
            )
        elif tok.name == "IDENT" and literal.startswith('"') and _SECRET_IDENT.search(literal):
            hide, mask = True, MASKED_IDENT
        else:
            hide = setting is not None and tok.start > setting and tok.name in _VALUE_TOKENS
        if hide:
            spans.append((tok.start, tok.end + 1, mask))
        since_name = 0 if secret_name else (since_name + 1 if since_name is not None else None)
    return spans


def _is_secret_name(text: str, tok) -> bool:
    """A name token (identifier, keyword such as PASSWORD, or a quoted setting name) that says
    the value next to it is a secret."""
    if tok.name in ("ICONST", "FCONST"):
        return False
    return _SECRET_NAME.search(text[tok.start : tok.end + 1]) is not None


def _set_secret(text: str, words: list) -> int | None:
    """For ``SET name = value`` / ``SET name TO value`` with a secret-looking name: the offset
    after which the tokens are the value; None otherwise."""
    start = next(i for i, t in enumerate(words) if t.name == "SET")
    for tok in words[start + 1 :]:
        if tok.name in ("ASCII_61", "TO"):
            name = text[words[start].end + 1 : tok.start]
            return tok.end if _SECRET_NAME.search(name) else None
    return None


def _replace(text: str, spans: list[tuple[int, int, str]]) -> str:
    out, last = [], 0
    for start, end, mask in sorted(set(spans)):
        if start < last:
            continue
        out.append(text[last:start])
        out.append(mask)
        last = end
    out.append(text[last:])
    return "".join(out)


def _truncated(text: str) -> str:
    """A text the scanner rejects (cut in the middle of a literal or comment): mask from the
    first quote or comment on, after redacting what precedes it."""
    match = _FIRST_HIDING.search(text)
    if match is None:
        return MASKED
    head = text[: match.start()]
    try:
        parser.scan(head)
    except ParseError:
        return MASKED
    return (statement(head) or "") + MASKED


MASKED_VALUE = "<value>"
_MIN_VALUE_CHARS = 3  # shorter values (0, 20, t) say nothing and are everywhere in a message


def values(text: str | None, drawn) -> str | None:
    """``text`` (an error message from a statement run on ``drawn`` values) with every one of those
    values replaced by ``<value>``: they are the user's data and never reach a file or a message."""
    if not text:
        return text
    for value in sorted(
        {str(v) for v in drawn if v is not None and len(str(v)) >= _MIN_VALUE_CHARS}, key=len, reverse=True
    ):  # the longest first: one value may contain another
        text = text.replace(value, MASKED_VALUE)
    return text
