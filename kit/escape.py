"""Names and texts from the database, shown as data and never as code: one helper per output kind (pure).

A table, schema, column, constraint or index name — and any statement text — comes from whoever can
create objects in the audited database. It may hold a newline (which would end a comment line of
``fixes.sql`` and put a statement of its own on the next), a terminal escape (which recolours or
moves the cursor of whoever reads a log), markup (which runs as script in an HTML report) or
right-to-left overrides (which make a reviewer read another text than the one that runs).

* :func:`line` — a log line, a terminal, a one-line message: every control character, line or
  paragraph separator and bidirectional control is written as a ``\\xNN`` / ``\\uNNNN`` escape.
* :func:`sql_comment` — the text of a ``--`` comment line: :func:`line`, so nothing can end the line.
* :func:`sql_statement` — a statement for a file a person reviews and psql runs (``fixes.sql``): a
  quoted identifier that holds such a character is written in PostgreSQL's Unicode escape form
  (``U&"evil\000aDROP"``), the same name to the server, one printable line to the reader.
* :func:`html` — text inside HTML: ``& < > " '`` as entities.
* :func:`lines_to` — a ``print``-like callable that escapes each line (:func:`line`) first.
* :func:`chart` — a label, trace name or hover text of a plotly figure (plotly draws a few HTML
  tags and decodes entities): :func:`line`, then :func:`html` — shown as typed, never as markup.
* :func:`markdown` — text inside markdown rendered to HTML (a notebook's ``_repr_markdown_``):
  :func:`line`, then every markdown punctuation mark backslash-escaped, then :func:`html`.

In SQL, names go through ``psycopg.sql.Identifier`` (or OIDs); that is not this module's job.
"""

from __future__ import annotations

import html as _html
import re
import unicodedata
from collections.abc import Callable

from pglast import parser

# Categories Cc (C0, DEL, C1), Zl / Zp (U+2028, U+2029), and the bidirectional controls (Cf ones
# that reorder text: Trojan Source) — plus the other invisible format characters of Cf.
_MD_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cf")


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def line(text: object) -> str:
    """``text`` with every character that could end, hide or reorder a line written as an escape."""
    text = "" if text is None else str(text)
    if text.isprintable() and not any(_unsafe(ch) for ch in text):  # the common case, no copy
        return text
    return "".join(_escaped(ch) if _unsafe(ch) else ch for ch in text)


def sql_comment(text: object) -> str:
    """``text`` for the inside of a ``--`` comment line: it cannot end the line (see :func:`line`)."""
    return line(text)


def sql_statement(text: str) -> str:
    """``text`` (SQL) with every quoted identifier and plain string constant that holds a character
    :func:`line` would escape rewritten as ``U&"..."`` / ``U&'...'`` (needs standard_conforming_strings,
    on by default since PostgreSQL 9.1)."""
    if text.isprintable():
        return text
    out, last = [], 0
    for tok in parser.scan(text):
        quoted = text[tok.start : tok.end + 1]
        mark = quoted[:1]
        if tok.name in ("IDENT", "SCONST") and mark in ('"', "'") and any(_unsafe(ch) for ch in quoted):
            body = quoted[1:-1].replace("\\", "\\\\")  # the escape character itself, doubled
            out += [
                text[last : tok.start],
                "U&" + mark,
                "".join(_unicode_escape(ch) if _unsafe(ch) else ch for ch in body),
                mark,
            ]
            last = tok.end + 1
    return "".join(out) + text[last:]


def _unicode_escape(ch: str) -> str:
    code = ord(ch)
    return f"\\{code:04x}" if code <= 0xFFFF else f"\\+{code:06x}"


def html(text: object) -> str:
    """``text`` for the inside of an HTML element or attribute."""
    return _html.escape("" if text is None else str(text), quote=True)


def chart(text: object) -> str:
    """``text`` for a plotly label, trace name or hover text (plotly shows ``&lt;`` as ``<``)."""
    return html(line(text))


def charts(values) -> list[str]:
    """:func:`chart` of each of ``values`` (a column of labels)."""
    return [chart(v) for v in values]


def markdown(text: object) -> str:
    """``text`` for markdown that a notebook renders to HTML: one line, no markup, no emphasis."""
    # backslashes before the entities: an entity's own '#' (&#x27;) must stay as it is
    return html(_MD_PUNCTUATION.sub(r"\\\1", line(text)))


def lines_to(out: Callable[[str], None] | None) -> Callable[[str], None]:
    """``out`` (``print``, a logger's method) for lines that name things from the database: each
    line through :func:`line` first (idempotent: escaping twice changes nothing); None says nothing."""
    if out is None:
        return lambda _text: None
    return lambda text: out(line(text))
