"""``fixes.sql``: the plan as a file a person reviews and psql runs — one statement per fix, each
after a comment saying why, what it should change, which statements it should help (redacted)
and, once applied, its verdict (pure).

Every comment line is written through :func:`kit.escape.sql_comment`: a table or constraint name,
a statement text, an error message — anything from the database — cannot end its comment line and
put a statement of its own on the next. The statements themselves quote every name (psycopg's
``sql.Identifier`` or pglast's deparser), so a name is an identifier there, never SQL, and one that
holds a control character is written ``U&"..."`` (:func:`kit.escape.sql_statement`): one printable line.

A leftover INVALID index of a new index's name (a failed concurrent build) would make ``CREATE INDEX
CONCURRENTLY IF NOT EXISTS`` skip the build and leave it invalid; so does an INVALID index the
kit's interrupted builds left. Each gets a guarded drop first: psql builds the ``DROP INDEX
CONCURRENTLY`` (``\\gexec``) only while the index is still INVALID — by the time the file is run,
an apply may have built a valid index under that name again.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Final, Literal

from kit import escape
from kit.fixes.model import CREATE, PLANNED, Fix, Leftover
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


Mode = Literal["dry run", "applied", "nothing to apply"]  # what the file says was done
DRY: Final = "dry run"
APPLIED: Final = "applied"
NOTHING: Final = "nothing to apply"
_HEADS: dict[Mode, str] = {
    DRY: "-- Dry run: nothing below was applied (kit run -p apply true applies it after a safety pre-flight).",
    APPLIED: "-- Applied by the kit, then verified: each verdict says whether it was kept, reverted (undone again) "
    "or failed.",
    NOTHING: "-- Apply was asked for; the plan holds nothing to apply, so nothing was changed.",
}
# psql runs the statement this query returns (\gexec): only while the index is INVALID
GUARDED_DROP = """SELECT format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I', n.nspname, c.relname)
FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = {schema} AND c.relname = {name} AND NOT x.indisvalid \\gexec"""


def _literal(text: str) -> str:
    """``text`` as a string constant that means the same whatever ``standard_conforming_strings`` is:
    an escape string, every quote doubled, every backslash and control character escaped."""
    body = "".join(
        "\\\\" if ch == "\\" else "''" if ch == "'" else (f"\\u{ord(ch):04x}" if not ch.isprintable() else ch)
        for ch in text
    )
    return f"E'{body}'"


def _guarded_drop(schema: str, name: str) -> str:
    return GUARDED_DROP.format(schema=_literal(schema), name=_literal(name))


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
            out.append(_guarded_drop(f.schema, f.name))
        out.append("")
    return out


def _cost(fix: Fix) -> list[str]:
    """What a new index costs: its size, the rows the workload wrote to its table, the estimates."""
    if fix.kind != CREATE:
        return []
    parts = [f"~{fix.est_bytes / 2**20:.1f} MiB" if fix.est_bytes else "size unknown"]
    if fix.rows_written is not None:
        parts.append(
            f"the workload wrote {fix.rows_written:,} rows to {fix.target_table} over its window: "
            f"~{fix.write_ms or 0:,.0f} ms more of index writes (estimate)"
        )
    if fix.saved_ms is not None:
        parts.append(f"~{fix.saved_ms:,.0f} ms of its statements' time saved (estimate)")
    return _wrapped("cost", "; ".join(parts))


def render(
    fixes: tuple[Fix, ...] | list[Fix],
    *,
    target: str,
    mode: Mode,
    statements: dict[str, str] | None = None,
    details: dict[str, str] | None = None,
    leftovers: tuple[Leftover, ...] | list[Leftover] = (),
) -> str:
    """The file's text; ``mode`` is :data:`DRY`, :data:`APPLIED` or :data:`NOTHING`; ``statements`` maps a
    statement key to its text (redacted here again), ``details`` to a line about it (its share of the
    database's time, whether its measurement reproduced the workload); ``leftovers``: the INVALID
    indexes found before the plan."""
    statements, details = statements or {}, details or {}
    head = [
        _comment(f"dbperf kit fix plan for {target}"),
        '-- Review it, then run it with: psql "$KIT_DATABASE_URL" -v ON_ERROR_STOP=1 -f fixes.sql',
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
        if fix.verdict != PLANNED or fix.reason:
            body += _wrapped("verdict", fix.verdict + (f" ({fix.reason})" if fix.reason else ""))
        if fix.kind == CREATE and fix.index_name:
            body.append(_guarded_drop(fix.schema, fix.index_name))
        body.append(escape.sql_statement(fix.sql.rstrip().rstrip(";")) + ";")
        body.append("")
    return "\n".join(head + _leftovers(leftovers) + body)


def write(
    folder: str | Path,
    fixes: tuple[Fix, ...] | list[Fix],
    *,
    target: str,
    mode: Mode,
    statements: dict[str, str] | None = None,
    details: dict[str, str] | None = None,
    leftovers: tuple[Leftover, ...] | list[Leftover] = (),
) -> Path:
    path = Path(folder) / FILE
    path.write_text(
        render(fixes, target=target, mode=mode, statements=statements, details=details, leftovers=leftovers),
        encoding="utf-8",
    )
    return path
