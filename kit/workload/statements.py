"""The workload: the database's own top statements from pg_stat_statements (every kind, the
kit's own left out), over the window since the previous run of the same target when there is
one, else since the statistics were reset (talks to PostgreSQL, read-only; the statistics are
never reset).

Each statement's normalized text is made preparable again where pg_stat_statements left no SQL
(``date $6``, ``extract($1 FROM ...)``, ``$4 - $5``: :mod:`kit.sqltext.retype`), the parameters
keeping their numbers; ``Statement.rewrites`` says what was changed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from kit.audit.statements import CONTROL, diff, statements_frame
from kit.config import run_dir, target_key
from kit.db import extensions
from kit.db.engine import url_of
from kit.safety.preflight import statements_reset
from kit.sqltext.refs import references
from kit.sqltext.retype import retype
from kit.store.history import locate_runs_dir, previous_bundle
from kit.workload.model import Statement, Workload

_TEXT_CHARS = 100_000  # the whole text: it is executed, never written (only its redacted head is)


def window(now: pd.DataFrame, before: pd.DataFrame | None) -> pd.DataFrame:
    """What ran since ``before`` (every statement, with its kind and full text) (pure)."""
    if before is None or before.empty:
        out = now.copy()
    else:
        out = diff(before, now, limit=None).merge(now[["queryid", "kind"]], on="queryid", how="left")
    return out[out["calls"] > 0].sort_values("total_ms", ascending=False).reset_index(drop=True)


def select(rows: pd.DataFrame, *, top: int, min_calls: int) -> tuple[Statement, ...]:
    """The ``top`` statements by time with ``min_calls`` calls, transaction control left out (pure)."""
    total = float(rows["total_ms"].sum()) if len(rows) else 0.0
    picked = rows[(rows["calls"] >= min_calls) & ~rows["kind"].isin(CONTROL)].head(top)
    return tuple(
        Statement(
            key=str(int(r.queryid)),
            queryid=int(r.queryid),
            text=r.query,
            kind=r.kind,
            calls=int(r.calls),
            total_ms=float(r.total_ms),
            rows=int(r.rows),
            temp_written=int(getattr(r, "temp_written", 0) or 0),
            blocks=int(getattr(r, "blks_hit", 0) or 0) + int(getattr(r, "blks_read", 0) or 0),
            share_pct=100 * float(r.total_ms) / total if total > 0 else 0.0,
        )
        for r in picked.itertuples()
    )


COLUMN_TYPE = """SELECT /* kit */ format_type(a.atttypid, NULL) FROM pg_attribute a
WHERE a.attrelid = to_regclass(CASE WHEN CAST(:schema AS text) IS NULL THEN format('%I', CAST(:name AS text))
                                    ELSE format('%I.%I', CAST(:schema AS text), CAST(:name AS text)) END)
  AND a.attname = :column AND a.attnum > 0 AND NOT a.attisdropped"""


def _column_types(conn: Connection, query: str):
    """(qualifier, column) -> the column's type in the database, for the tables ``query`` names: a
    qualified column in the table its alias names, an unqualified one in the one table that has it."""
    refs = references(query)
    cache: dict[tuple, str | None] = {}

    def lookup(qualifier: str | None, column: str) -> str | None:
        if refs is None:
            return None
        rel = refs.relation(qualifier) if qualifier else None
        found = []
        for r in [rel] if rel else [] if qualifier else refs.relations:
            key = (r.schema, r.name, column)
            if key not in cache:
                row = conn.execute(text(COLUMN_TYPE), {"schema": r.schema, "name": r.name, "column": column}).first()
                cache[key] = row[0] if row else None
            if cache[key]:
                found.append(cache[key])
        return found[0] if len(set(found)) == 1 else None

    return lookup


def preparable(conn: Connection, statements: tuple[Statement, ...]) -> tuple[Statement, ...]:
    """The statements with texts PostgreSQL can prepare (:func:`kit.sqltext.retype.retype`), typed
    by the columns they are compared with; what was rewritten in ``rewrites``."""
    out = []
    for s in statements:
        done = retype(s.text, column_type=_column_types(conn, s.text))
        out.append(replace(s, text=done.text, rewrites=done.changes) if done is not None and done.changed else s)
    return tuple(out)


def _window(now: pd.DataFrame, previous: dict | None, reset) -> tuple[pd.DataFrame, dict | None, str]:
    """(rows of the window, ``previous`` when the window starts at it else None, the basis) (pure)."""
    reset_iso = reset.isoformat() if reset else None
    if previous and previous.get("snapshot") and previous.get("reset") == reset_iso:
        before = pd.DataFrame(previous["snapshot"])
        return window(now, before), previous, f"since run {previous.get('run', 'before')}"
    return window(now, None), None, "since the statistics were reset"


def read_workload(engine: Engine, *, previous: dict | None = None, top: int = 10, min_calls: int = 10) -> Workload:
    """The top statements over the window since ``previous`` (a run's bundle ``statements``
    section: its ``snapshot`` and ``reset``) when the statistics were not reset in between."""
    try:
        with engine.connect() as conn:
            why = extensions.missing(conn, "pg_stat_statements")
            if why:
                return Workload("unavailable", why, "", (), 0.0, 0)
            now = statements_frame(conn, chars=_TEXT_CHARS)
            reset = statements_reset(conn)
            rows, since_run, basis = _window(now, previous, reset)
            since = _parsed(since_run.get("created_at")) if since_run is not None else reset
            statements = select(rows, top=top, min_calls=min_calls)
            if since_run is not None and not statements:  # nothing ran since: the whole history says more
                rows, basis = (
                    window(now, None),
                    f"since the statistics were reset (nothing ran since run {since_run.get('run')})",
                )
                statements, since = select(rows, top=top, min_calls=min_calls), reset
            statements = preparable(conn, statements)
            conn.rollback()
    except DBAPIError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0]
        return Workload("unavailable", f"pg_stat_statements cannot be read: {first}", "", (), 0.0, 0)
    reset_iso = reset.isoformat() if reset else None
    message = (
        f"{len(statements)} top statements with {min_calls}+ calls of {len(rows)} statements, "
        f"{rows['total_ms'].sum() / 1000 if len(rows) else 0:.1f} s of execution time"
    )
    window_s = (datetime.now(UTC) - since).total_seconds() if since is not None else None
    return Workload(
        "ok",
        message,
        basis,
        statements,
        float(rows["total_ms"].sum()) if len(rows) else 0.0,
        int(rows["calls"].sum()) if len(rows) else 0,
        reset_iso,
        window_s,
    )


def _parsed(stamp: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


def previous_window(engine: Engine, runs_dir: str = "runs") -> dict | None:
    """The ``statements`` section of the previous finished run of this database (with its run
    name), for :func:`read_workload`; None on a first run."""
    folder = locate_runs_dir(runs_dir)
    current = run_dir()
    found = previous_bundle(
        folder,
        target=target_key(url_of(engine)),
        before=current.name if current else "~",
    )  # "~" sorts after every timestamp
    if found is None or found.statements is None:
        return None
    shown = found.to_json()  # the window as bundle.json has it: read_workload reads that shape
    return {**shown["statements"], "run": shown["run"], "created_at": shown["created_at"]}
