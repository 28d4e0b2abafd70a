"""``fixes.sql``: the plan as a file a person reviews and psql runs — one statement per fix, each
after a comment saying why, what it should change, which statements it should help (redacted)
and, once applied, its verdict (pure: text only; psycopg's ``sql`` module quotes, nothing connects).

Every comment line is written through :func:`kit.escape.sql_comment`: a table or constraint name,
a statement text, an error message — anything from the database — cannot end its comment line and
put a statement of its own on the next. The statements themselves quote every name (psycopg's
``sql.Identifier`` or pglast's deparser), so a name is an identifier there, never SQL, and one that
holds a control character is written ``U&"..."`` (:func:`kit.escape.sql_statement`): one printable line.
Before each new index, psql drops a leftover INVALID index of its name (``\\gset`` / ``\\if``), which
``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` would silently accept.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from psycopg import sql

from kit import escape
from kit.fixes.model import CREATE, Fix
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


DRY, APPLIED, NOTHING = "dry run", "applied", "nothing to apply"
_HEADS = {
    DRY: "-- Dry run: nothing below was applied (kit run -p apply true applies it after a safety pre-flight).",
    APPLIED: "-- Applied by the kit, then verified: each verdict says whether it was kept, reverted (undone again) "
             "or failed.",
    NOTHING: "-- Apply was asked for; the plan holds nothing to apply, so nothing was changed.",
}
# A leftover INVALID index of the same name (a failed concurrent build) would make IF NOT EXISTS skip
# the build and leave it invalid: psql drops it first (\gset and \if are psql's).
_GUARD = sql.SQL("SELECT EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(format('%I.%I', {}, {})) "
                 "AND NOT indisvalid) AS {} \\gset")


def _guard(n: int, schema: str, name: str) -> list[str]:
    flag = f"kit_invalid_{n}"
    drop = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name))
    return [escape.sql_statement(_GUARD.format(sql.Literal(schema), sql.Literal(name),
                                               sql.Identifier(flag)).as_string(None)),
            f"\\if :{flag}", escape.sql_statement(drop.as_string(None)) + ";", "\\endif"]


def _cost(fix: Fix) -> list[str]:
    """What a new index costs: its size, the rows the workload wrote to its table, the estimates."""
    if fix.kind != CREATE:
        return []
    parts = [f"~{fix.est_bytes / 2**20:.1f} MiB" if fix.est_bytes else "size unknown"]
    if fix.rows_written is not None:
        parts.append(f"the workload wrote {fix.rows_written:,} rows to {fix.target_table} over its window: "
                     f"~{fix.write_ms or 0:,.0f} ms more of index writes (estimate)")
    if fix.saved_ms is not None:
        parts.append(f"~{fix.saved_ms:,.0f} ms of its statements' time saved (estimate)")
    return _wrapped("cost", "; ".join(parts))


def render(fixes: tuple[Fix, ...] | list[Fix], *, target: str, mode: str,
           statements: dict[str, str] | None = None, details: dict[str, str] | None = None) -> str:
    """The file's text; ``mode`` is :data:`DRY`, :data:`APPLIED` or :data:`NOTHING`; ``statements`` maps a
    statement key to its text (redacted here again), ``details`` to a line about it (its share of the
    database's time, whether its measurement reproduced the workload)."""
    statements, details = statements or {}, details or {}
    head = [
        _comment(f"dbperf kit fix plan for {target}"),
        "-- Review it, then run it with: psql \"$KIT_DATABASE_URL\" -v ON_ERROR_STOP=1 -f fixes.sql",
        "-- (CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction block: no --single-transaction)",
        _HEADS[mode],
        f"-- {len(fixes)} fix(es).",
        "",
    ]
    body = []
    for n, fix in enumerate(fixes, 1):
        body.append(_comment(f"{n}. {fix.kind} on {fix.target_table}  [{fix.source}]"))
        body += _wrapped("why", fix.why)
        body += _wrapped("expect", fix.expect)
        body += _cost(fix)
        for key in fix.statements:
            text = statements.get(key)
            shown = _one_line(redact.statement(text) or "", 90) if text else ""
            body.append(_comment(f"   helps {key}") + (f": {shown}" if shown else ""))
            if details.get(key):
                body += _wrapped("  measured", details[key])
        if fix.verdict != "planned" or fix.reason:
            body += _wrapped("verdict", fix.verdict + (f" ({fix.reason})" if fix.reason else ""))
        if fix.kind == CREATE and fix.index_name:
            body += _guard(n, fix.schema, fix.index_name)
        body.append(escape.sql_statement(fix.sql.rstrip().rstrip(";")) + ";")
        body.append("")
    return "\n".join(head + body)


def write(folder: str | Path, fixes: tuple[Fix, ...] | list[Fix], *, target: str, mode: str,
          statements: dict[str, str] | None = None, details: dict[str, str] | None = None) -> Path:
    path = Path(folder) / FILE
    path.write_text(render(fixes, target=target, mode=mode, statements=statements, details=details),
                    encoding="utf-8")
    return path
