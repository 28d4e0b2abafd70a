"""``fixes.sql``: the plan as a file a person reviews and psql runs — one statement per fix, each
after a comment saying why, what it should change, which statements it should help (redacted)
and, once applied, its verdict (pure).

Every comment line is written through :func:`kit.escape.sql_comment`: a table or constraint name,
a statement text, an error message — anything from the database — cannot end its comment line and
put a statement of its own on the next. The statements themselves quote every name (psycopg's
``sql.Identifier`` or pglast's deparser), so a name is an identifier there, never SQL, and one that
holds a control character is written ``U&"..."`` (:func:`kit.escape.sql_statement`): one printable line.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from kit import escape
from kit.fixes.model import Fix
from kit.sqltext import redact

FILE = "fixes.sql"
_LINE = re.compile(r"\s+")


def _one_line(text: str, width: int = 110) -> str:
    text = escape.sql_comment(_LINE.sub(" ", text or "").strip())
    return text if len(text) <= width else text[: width - 3] + "..."


def _comment(text: str) -> str:
    return "-- " + escape.sql_comment(text)


def _wrapped(label: str, text: str) -> list[str]:
    """``--    label: text`` wrapped into comment lines (nothing is cut: the file is for review). Escaped
    before the blanks are folded: a newline inside a name shows as ``\\x0a``, not as a blank."""
    text = _LINE.sub(" ", escape.sql_comment(text or "")).strip()
    lines = textwrap.wrap(text, width=100, break_long_words=False, break_on_hyphens=False) or [""]
    return [f"--    {label}: {lines[0]}"] + [f"--      {line}" for line in lines[1:]]


def render(fixes: tuple[Fix, ...] | list[Fix], *, target: str, applied: bool,
           statements: dict[str, str] | None = None) -> str:
    """The file's text; ``statements`` maps a statement key to its text (redacted here again)."""
    statements = statements or {}
    head = [
        _comment(f"dbperf kit fix plan for {target}"),
        "-- Review it, then run it with: psql \"$KIT_DATABASE_URL\" -v ON_ERROR_STOP=1 -f fixes.sql",
        "-- (CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction block: no --single-transaction)",
        "-- Applied by the kit, then verified: each verdict says what it kept or reverted." if applied else
        "-- Dry run: nothing below was applied (kit run -p apply true applies it after a safety pre-flight).",
        f"-- {len(fixes)} fix(es).",
        "",
    ]
    body = []
    for n, fix in enumerate(fixes, 1):
        body.append(_comment(f"{n}. {fix.kind} on {fix.target_table}  [{fix.source}]"))
        body += _wrapped("why", fix.why)
        body += _wrapped("expect", fix.expect)
        for key in fix.statements:
            text = statements.get(key)
            shown = _one_line(redact.statement(text) or "", 90) if text else ""
            body.append(_comment(f"   helps {key}") + (f": {shown}" if shown else ""))
        if fix.verdict != "planned" or fix.reason:
            body += _wrapped("verdict", fix.verdict + (f" ({fix.reason})" if fix.reason else ""))
        body.append(escape.sql_statement(fix.sql.rstrip().rstrip(";")) + ";")
        body.append("")
    return "\n".join(head + body)


def write(folder: str | Path, fixes: tuple[Fix, ...] | list[Fix], *, target: str, applied: bool,
          statements: dict[str, str] | None = None) -> Path:
    path = Path(folder) / FILE
    path.write_text(render(fixes, target=target, applied=applied, statements=statements), encoding="utf-8")
    return path
