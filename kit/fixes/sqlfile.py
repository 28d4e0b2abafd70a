"""``fixes.sql``: the plan as a file a person reviews and psql runs — one statement per fix, each
after a comment saying why, what it should change, which statements it should help (redacted)
and, once applied, its verdict (pure).

Every comment line is written through :func:`kit.escape.sql_comment`: a table or constraint name,
a statement text, an error message — anything from the database — cannot end its comment line and
put a statement of its own on the next. The statements themselves quote every name (psycopg's
``sql.Identifier`` or pglast's deparser), so a name is an identifier there, never SQL.

INVALID indexes the kit's interrupted builds left come first, each as a guarded drop: psql builds
the ``DROP INDEX CONCURRENTLY`` (``\\gexec``) only while the index is still INVALID — by the time
the file is run, an apply may have built a valid index under that name again.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from kit import escape
from kit.fixes.model import Fix, Leftover
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


# psql runs the statement this query returns (\gexec): only while the index is INVALID
GUARDED_DROP = """SELECT format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I', n.nspname, c.relname)
FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = {schema} AND c.relname = {name} AND NOT x.indisvalid \\gexec"""


def _literal(text: str) -> str:
    """``text`` as a string constant that means the same whatever ``standard_conforming_strings`` is:
    an escape string, every quote doubled, every backslash and control character escaped."""
    body = "".join("\\\\" if ch == "\\" else "''" if ch == "'" else
                   (f"\\u{ord(ch):04x}" if not ch.isprintable() else ch) for ch in text)
    return f"E'{body}'"


def _leftovers(leftovers: tuple[Leftover, ...] | list[Leftover]) -> list[str]:
    """Comments on every INVALID index found before the plan; a guarded drop for each of the kit's
    that is still there (a dropped one's drop would do nothing)."""
    if not leftovers:
        return []
    out = [_comment(f"INVALID indexes found before planning ({len(leftovers)}): failed concurrent builds"), ""]
    for n, f in enumerate(leftovers, 1):
        out.append(_comment(f"L{n}. {f.qualified} on {f.schema}.{f.table}"))
        out += _wrapped("why", f.why)
        out += _wrapped("state", f.action)
        if f.kit and f.action != "dropped" and not f.building_pid:
            out.append(GUARDED_DROP.format(schema=_literal(f.schema), name=_literal(f.name)))
        out.append("")
    return out


def render(fixes: tuple[Fix, ...] | list[Fix], *, target: str, applied: bool,
           statements: dict[str, str] | None = None, leftovers: tuple[Leftover, ...] | list[Leftover] = ()) -> str:
    """The file's text; ``statements`` maps a statement key to its text (redacted here again);
    ``leftovers``: the INVALID indexes found before the plan."""
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
        body.append(fix.sql.rstrip().rstrip(";") + ";")
        body.append("")
    return "\n".join(head + _leftovers(leftovers) + body)


def write(folder: str | Path, fixes: tuple[Fix, ...] | list[Fix], *, target: str, applied: bool,
          statements: dict[str, str] | None = None, leftovers: tuple[Leftover, ...] | list[Leftover] = ()) -> Path:
    path = Path(folder) / FILE
    path.write_text(render(fixes, target=target, applied=applied, statements=statements, leftovers=leftovers),
                    encoding="utf-8")
    return path
