"""Safety pre-flight before the kit touches a database it did not create: replica, role and
privileges, timeouts in force, age of the statistics, extensions, open transactions
(talks to PostgreSQL; read-only, in one rolled-back transaction).

``check(engine)`` returns a :class:`Preflight`; ``Preflight.require_safe()`` raises
:class:`~kit.errors.UnsafeOperation` with every reason when applying changes would be unsafe;
``Preflight.require_readable()`` raises :class:`~kit.errors.DatabaseRefused` when the role cannot
even see the tables it would audit (no USAGE on their schema): ``kit run`` calls both before
anything runs, so a privilege problem is one line and exit 2, never a failed notebook.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from kit import escape
from kit.db import extensions
from kit.db.engine import driver
from kit.db.sessions import Backend, open_transactions, sessions_frame
from kit.errors import DatabaseRefused, UnsafeOperation

_FRESH_STATS_S = 3600.0  # statistics younger than this say little about the workload


@dataclass(frozen=True)
class Preflight:
    """What the pre-flight found, whether applying changes is safe, and why not."""

    server_version: str
    is_replica: bool
    role: str
    superuser: bool
    read_only: bool  # default_transaction_read_only for this role/database
    tables_checked: int
    tables_not_owned: tuple[str, ...]  # CREATE INDEX needs ownership (or superuser)
    schemas_without_usage: tuple[str, ...]  # schemas of user tables this role may not even look into
    statement_timeout: str
    lock_timeout: str
    idle_in_transaction_session_timeout: str
    stats_reset: datetime | None  # pg_stat_database.stats_reset (None: never reset)
    stats_age_s: float  # since stats_reset, else since the server started
    statements_reset: datetime | None  # pg_stat_statements_info.stats_reset (PostgreSQL 14+)
    pg_stat_statements: bool
    hypopg: bool
    sessions: tuple[Backend, ...]  # other sessions inside a transaction, oldest first
    long_tx_s: float
    safe_to_apply: bool
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def long_transactions(self) -> tuple[Backend, ...]:
        return tuple(s for s in self.sessions if (s.xact_age_s or 0) >= self.long_tx_s)

    @property
    def idle_in_transaction(self) -> tuple[Backend, ...]:
        return tuple(s for s in self.sessions if str(s.state).startswith("idle in transaction"))

    def to_frame(self) -> pd.DataFrame:
        """One row per check: check, value, verdict (ok | warning | unsafe)."""
        long_tx, idle = self.long_transactions, self.idle_in_transaction
        rows = [
            ("server", self.server_version, "ok"),
            ("replica (in recovery)", self.is_replica, "unsafe" if self.is_replica else "ok"),
            ("role", self.role + (" (superuser)" if self.superuser else ""), "warning" if self.superuser else "ok"),
            ("read-only transactions", self.read_only, "unsafe" if self.read_only else "ok"),
            (
                "may create indexes on",
                f"{self.tables_checked - len(self.tables_not_owned)} of {self.tables_checked} tables",
                "unsafe" if self.tables_not_owned else "ok",
            ),
            (
                "schemas without USAGE",
                len(self.schemas_without_usage),
                "unsafe" if self.schemas_without_usage else "ok",
            ),
            ("statement_timeout", self.statement_timeout, "ok"),
            ("lock_timeout", self.lock_timeout, "ok"),
            ("idle_in_transaction_session_timeout", self.idle_in_transaction_session_timeout, "ok"),
            (
                "statistics since",
                self.stats_reset or "server start",
                "warning" if self.stats_age_s < _FRESH_STATS_S else "ok",
            ),
            (
                "statistics age (h)",
                round(self.stats_age_s / 3600, 2),
                "warning" if self.stats_age_s < _FRESH_STATS_S else "ok",
            ),
            ("pg_stat_statements reset", self.statements_reset, "ok"),
            ("pg_stat_statements", self.pg_stat_statements, "ok" if self.pg_stat_statements else "warning"),
            ("hypopg", self.hypopg, "ok" if self.hypopg else "warning"),
            (f"transactions open >= {self.long_tx_s:.0f} s", len(long_tx), "unsafe" if long_tx else "ok"),
            ("idle in transaction", len(idle), "warning" if idle else "ok"),
            ("safe to apply", self.safe_to_apply, "ok" if self.safe_to_apply else "unsafe"),
        ]
        return pd.DataFrame([{"check": c, "value": str(v), "verdict": s} for c, v, s in rows])

    def sessions_frame(self) -> pd.DataFrame:
        return sessions_frame(self.sessions)

    def require_safe(self) -> None:
        """Raise UnsafeOperation naming every reason when applying changes would be unsafe."""
        if not self.safe_to_apply:
            raise UnsafeOperation(
                "pre-flight: unsafe to change this database: "
                + "; ".join(self.reasons)
                + " — nothing was changed; fix these and re-run"
            )

    def require_readable(self) -> None:
        """Raise DatabaseRefused when the role may not look into a schema that holds user tables:
        their statements could be neither planned nor measured, and the audit's findings would be wrong."""
        if self.schemas_without_usage:
            names = ", ".join(self.schemas_without_usage[:3]) + (" ..." if len(self.schemas_without_usage) > 3 else "")
            raise DatabaseRefused(
                f"role {self.role} has no USAGE on {len(self.schemas_without_usage)} schema(s) with tables ({names}): "
                f"the kit cannot see their tables; GRANT USAGE ON SCHEMA ... TO {self.role} (and SELECT, or "
                "pg_read_all_data, to measure their statements), or run as a role that has it — nothing was run"
            )

    def _repr_markdown_(self) -> str:
        # reasons name tables and sessions: data from the database, escaped (never markup)
        head = (
            "**safe to apply**"
            if self.safe_to_apply
            else "**unsafe to apply**: " + escape.markdown("; ".join(self.reasons))
        )
        return head + ("\n\n" + "\n".join(f"- {escape.markdown(w)}" for w in self.warnings) if self.warnings else "")


SETTINGS = """SELECT /* kit */ current_setting('server_version') AS server_version, pg_is_in_recovery() AS is_replica,
       current_user AS role, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       current_setting('default_transaction_read_only') = 'on' AS read_only,
       current_setting('statement_timeout') AS statement_timeout,
       current_setting('lock_timeout') AS lock_timeout,
       current_setting('idle_in_transaction_session_timeout') AS idle_in_transaction_session_timeout,
       d.stats_reset,
       extract(epoch FROM now() - coalesce(d.stats_reset, pg_postmaster_start_time()))::float8 AS stats_age_s
FROM pg_stat_database d WHERE d.datname = current_database()"""


def _settings(conn: Connection) -> dict:
    return dict(conn.execute(text(SETTINGS)).mappings().one())


STATEMENTS_RESET = "SELECT /* kit */ stats_reset FROM pg_stat_statements_info"


def statements_reset(conn: Connection) -> datetime | None:
    """When pg_stat_statements was last reset (None when unusable or before PostgreSQL 14)."""
    try:
        with conn.begin_nested():
            return conn.execute(text(STATEMENTS_RESET)).scalar_one()
    except DBAPIError:  # the view is missing or not preloaded: the extensions row says why
        return None


def _extensions(conn: Connection) -> dict[str, bool]:
    return {name: extensions.usable(conn, name) for name in extensions.ENABLE}


OWNERSHIP = """SELECT /* kit */ c.oid, c.oid::regclass::text AS "table", pg_has_role(current_user, c.relowner, 'USAGE') AS may_build
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%%'
  AND (cardinality(%(schemas)s::text[]) = 0
       OR (n.nspname, c.relname) IN (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[])))
ORDER BY 2"""


def _ownership(pg, tables: list[tuple[str, str]]) -> list[tuple[int, str, bool]]:
    """(OID, name as PostgreSQL prints it, may build) of ``tables`` (schema, name), else of every user table."""

    def owned(pairs: list[tuple[str, str]]) -> list:
        return pg.execute(OWNERSHIP, {"schemas": [s for s, _ in pairs], "names": [n for _, n in pairs]}).fetchall()

    rows = owned(tables)
    if not rows and tables:  # none of the declared tables exist here: judge every user table
        rows = owned([])
    return [(oid, t, bool(ok)) for oid, t, ok in rows]


# schemas that hold user tables (not an extension's) and that the role may not look into
NO_USAGE = """SELECT /* kit */ quote_ident(n.nspname) FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
  AND NOT has_schema_privilege(n.oid, 'USAGE')
  AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                              AND d.objid = c.oid AND d.deptype = 'e'))
ORDER BY 1"""


def check(engine: Engine, *, tables=None, long_tx_s: float = 60.0) -> Preflight:
    """Run the pre-flight on ``engine``'s database for ``tables`` ((schema, name) pairs; every user
    table when None). A transaction open for ``long_tx_s`` or more makes applying unsafe."""
    if long_tx_s <= 0:
        raise ValueError(f"long_tx_s must be positive, got {long_tx_s!r}")
    wanted = [(str(s), str(n)) for s, n in (tables or ())]
    with engine.connect() as conn:
        try:
            settings = _settings(conn)
            ext = _extensions(conn)
            reset = statements_reset(conn)
            pg = driver(conn)  # same session, psycopg API
            owned = _ownership(pg, wanted)
            no_usage = tuple(r[0] for r in pg.execute(NO_USAGE).fetchall())
            sessions = tuple(open_transactions(pg, tables=[oid for oid, _t, _ok in owned]))
        finally:
            conn.rollback()
    not_owned = tuple(t for _oid, t, ok in owned if not ok)
    reasons, warnings = judge(settings, not_owned, sessions, long_tx_s=long_tx_s, ext=ext, no_usage=no_usage)
    return Preflight(
        server_version=settings["server_version"],
        is_replica=bool(settings["is_replica"]),
        role=settings["role"],
        superuser=bool(settings["superuser"]),
        read_only=bool(settings["read_only"]),
        tables_checked=len(owned),
        tables_not_owned=not_owned,
        schemas_without_usage=no_usage,
        statement_timeout=settings["statement_timeout"],
        lock_timeout=settings["lock_timeout"],
        idle_in_transaction_session_timeout=settings["idle_in_transaction_session_timeout"],
        stats_reset=settings["stats_reset"],
        stats_age_s=float(settings["stats_age_s"]),
        statements_reset=reset,
        pg_stat_statements=bool(ext.get("pg_stat_statements")),
        hypopg=bool(ext.get("hypopg")),
        sessions=sessions,
        long_tx_s=long_tx_s,
        safe_to_apply=not reasons,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
    )


def judge(
    settings: dict,
    not_owned: tuple[str, ...],
    sessions: tuple[Backend, ...],
    *,
    long_tx_s: float,
    ext: dict,
    no_usage: tuple[str, ...] = (),
) -> tuple[list[str], list[str]]:
    """(reasons it is unsafe to apply, warnings worth showing) — pure."""
    reasons, warnings = [], []
    if no_usage:
        reasons.append(
            f"role {settings['role']} has no USAGE on schema(s) {', '.join(no_usage[:3])}"
            + (" ..." if len(no_usage) > 3 else "")
            + "; it cannot see their tables"
        )
    if settings["is_replica"]:
        reasons.append("the server is a read-only standby (pg_is_in_recovery); connect to the primary")
    if settings["read_only"]:
        reasons.append(f"role {settings['role']} works in read-only transactions (default_transaction_read_only)")
    if not_owned:
        listed = ", ".join(not_owned[:3]) + (" ..." if len(not_owned) > 3 else "")
        reasons.append(
            f"role {settings['role']} does not own {len(not_owned)} table(s) ({listed}); "
            "CREATE INDEX needs the owner's role"
        )
    mine = [s for s in sessions if s.own_process]
    if mine:
        reasons.append(
            f"this process holds {len(mine)} open transaction(s) (pid "
            f"{', '.join(str(s.pid) for s in mine)}); commit or roll back first"
        )
    old = [s for s in sessions if not s.own_process and (s.xact_age_s or 0) >= long_tx_s]
    if old:
        oldest = max(s.xact_age_s or 0 for s in old)
        reasons.append(
            f"{len(old)} other transaction(s) open for {long_tx_s:.0f} s or more (oldest {oldest:.0f} s, "
            f"pid {old[0].pid}); a concurrent index build would wait for them"
        )
    if settings["superuser"]:
        warnings.append(
            f"connected as superuser {settings['role']}: an audit needs only pg_monitor; apply needs the tables' owner"
        )
    if float(settings["stats_age_s"]) < _FRESH_STATS_S:
        warnings.append(
            f"statistics cover only {float(settings['stats_age_s']) / 60:.0f} min: unused-index and "
            "top-query findings are weak"
        )
    if settings["statement_timeout"] in {"0", "0ms"}:
        warnings.append("no statement_timeout for this role: the kit sets its own on every statement it runs")
    for name, usable in ext.items():
        if not usable:
            warnings.append(f"{name} is not usable: see inventory.extensions for how to enable it")
    idle = [s for s in sessions if str(s.state).startswith("idle in transaction")]
    if idle and not old:
        warnings.append(f"{len(idle)} session(s) idle in transaction")
    return reasons, warnings
