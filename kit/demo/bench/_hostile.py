"""Hostile and real-world databases for ``kit bench faults``: names that try to be code, data that
must stay in the database, roles with too few privileges (talks to PostgreSQL, runs the ``kit``
command as a user would, opens the reports in chromium).

The database (:func:`build`) belongs to a role of its own, like an application's, and holds a name
of every awkward kind: schemas with a space, a dot and a quote; tables whose names carry a newline
followed by SQL, HTML that would run as script, a terminal escape and control characters; columns
with a quote and non-ASCII letters; a foreign key and indexes whose names end a comment line; a
``victim`` table the injected SQL would drop. Each of its tables has a statement of the workload
that an index serves, so every name reaches the plan, ``fixes.sql``, the notebooks and the charts.
One table's column is a canary: every value holds :data:`CANARY` and the workload looks rows up by
it, so the fix loop draws its parameter values from that column.

Sections (goals in brackets):

* :func:`hostile_names` {runs_ok [= runs], psql_clean [true], html_scripts_executed [0],
  planted_escapes_in_output [0]}: ``kit run`` dry, then ``kit run -p apply true``, as the owner;
  the dry run's ``fixes.sql`` run with ``psql -v ON_ERROR_STOP=1`` on a copy of the database must
  change nothing but indexes; every HTML report opened in chromium must run no script.
* :func:`data_values_in_files` {hits [0], sampled_statements [> 0]}: the canary value, and a
  password-looking quoted alias of a statement, in no file of either run and not in their output.
* :func:`least_privilege` {tracebacks [0], exit_2 [= cases], one_line [= cases], nothing_written
  [= cases]}: a pg_monitor role on a schema it may not look into, apply by a reader, apply by a
  read-only role, a role that may not connect; and a reader's dry run that must work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from kit.charts import browser
from kit.config import libpq_url
from kit.servers import local

KIT = str(Path(sys.executable).parent / "kit")
# the roles of one hostile database (suffixed with its name: roles are the whole server's)
OWNER, MONITOR, READER, READ_ONLY, NO_CONNECT = ROLES = ("owner", "monitor", "reader", "ro", "noconnect")
CANARY = "cnry5e0c1a"  # in every value of a sampled column
IDENT_SECRET = "pw6d1f0b"  # in a quoted alias that looks like a password: AS "password=..."
PLANTED_ESCAPE = "\x1b[31m"

SCHEMAS = ("Sales Ops", "eu.west", 'quoted"schema')
EVIL = "evil\nDROP TABLE victim; --"  # a newline, then SQL, then a comment
XSS = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
BREAKOUT = "</script><script>alert(3)</script>"  # ends a <script> holding a chart's JSON
ESCAPES = PLANTED_ESCAPE + "red;\x07\u202e"  # colour, bell, right-to-left override
FK = "fk\nDROP TABLE victim; --"
DUPLICATES = ("dup;\nDROP TABLE victim;--", "dup2 <b onmouseover=alert(4)>")

# (schema, table, DDL of the columns after the name, the rows' SELECT list over g (:rows: their number),
#  the column the workload looks rows up by)
TABLES = (
    (
        "Sales Ops",
        "Order",
        '("Id" bigint PRIMARY KEY, "CustomerId" bigint NOT NULL, "Status" text NOT NULL)',
        "g, g % 5000, (ARRAY['open', 'closed', 'closed', 'closed'])[1 + g % 4]",
        '"CustomerId"',
    ),
    (
        "eu.west",
        "line items",
        '(id bigint PRIMARY KEY, "order id" bigint NOT NULL, qty int)',
        "g, 1 + g % :rows, g % 7",
        '"order id"',
    ),
    ("public", EVIL, "(id bigint PRIMARY KEY, k int, v text)", "g, g % 10000, 'v'", "k"),
    ("public", XSS, '(id bigint PRIMARY KEY, "we""ird" int, body text)', "g, g % 9000, 'b'", '"we""ird"'),
    ("public", IMG, '(id bigint PRIMARY KEY, "Grüße€" int)', "g, g % 7000", '"Grüße€"'),
    ("public", BREAKOUT, "(id bigint PRIMARY KEY, k int)", "g, g % 8000", "k"),
    ("public", ESCAPES, "(id bigint PRIMARY KEY, k int)", "g, g % 3000", "k"),
    (
        'quoted"schema',
        "api_keys",
        "(id bigint PRIMARY KEY, token text NOT NULL, email text NOT NULL)",
        f"g, 'tok_live_{CANARY}_' || md5(g::text), 'user' || g || '.{CANARY}@example.org'",
        "token",
    ),
)
ROWS = 60_000


@dataclass(frozen=True)
class Hostile:
    """One hostile database and its roles (``role(OWNER)``: the owner's name)."""

    server: local.Server
    database: str
    admin_url: str

    def role(self, kind: str) -> str:
        return f"{self.database}_{kind}"

    def url(self, kind: str) -> str:
        return make_url(self.admin_url).set(username=self.role(kind)).render_as_string(hide_password=False)

    def drop(self) -> None:
        """The database, its copies' leftovers aside, and its roles."""
        local.drop_database(self.server, self.database)
        with psycopg.connect(local._admin_dsn(self.server), autocommit=True) as conn:
            for kind in ROLES:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.role(kind))))


def build(pg: local.Server, database: str | None = None, *, rows: int = ROWS) -> Hostile:
    """A hostile database on ``pg`` (see the module docstring) with ``rows`` rows per table, owned by
    a role of its own, with the roles of :func:`least_privilege`."""
    database = database or f"hostile_{uuid.uuid4().hex[:8]}"
    db = Hostile(pg, database, local.create_database(pg, database, replace=True))
    owner, monitor, reader, ro, noconnect = (sql.Identifier(db.role(kind)) for kind in ROLES)
    with psycopg.connect(local._admin_dsn(pg), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(owner))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE pg_monitor").format(monitor))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE pg_read_all_data, pg_read_all_stats").format(reader))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(ro, owner))
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(ro))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(noconnect))
        name = sql.Identifier(database)
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(name, owner))
        conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(name))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}, {}, {}").format(name, owner, monitor, reader, ro))
    with psycopg.connect(libpq_url(db.admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(owner))
        conn.execute(sql.SQL("SET ROLE {}").format(owner))
        conn.execute("CREATE TABLE victim (id int PRIMARY KEY)")
        for schema in SCHEMAS:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for schema, table, columns, select, _key in TABLES:
            name = sql.Identifier(schema, table)
            conn.execute(sql.SQL("CREATE TABLE {} {}").format(name, sql.SQL(columns)))
            conn.execute(
                sql.SQL("INSERT INTO {} SELECT {} FROM generate_series(1, {}) g").format(
                    name, sql.SQL(select.replace(":rows", str(int(rows)))), sql.Literal(rows)
                )
            )
        conn.execute(
            sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ("order id") REFERENCES {}').format(
                sql.Identifier("eu.west", "line items"), sql.Identifier(FK), sql.Identifier("Sales Ops", "Order")
            )
        )
        for index in DUPLICATES:
            conn.execute(
                sql.SQL("CREATE INDEX {} ON {} (k)").format(sql.Identifier(index), sql.Identifier("public", ESCAPES))
            )
        conn.execute("ANALYZE")
        conn.execute("RESET ROLE")
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {}, {} TO {}").format(
                sql.Identifier("eu.west"), sql.Identifier('quoted"schema'), monitor
            )
        )
    return db


def drive(url: str, *, calls: int = 40) -> int:
    """The application's workload as the owner, bound parameters (pg_stat_statements keeps ``$n``)."""
    done = 0
    with psycopg.connect(libpq_url(url), autocommit=True, application_name="hostile-app") as conn:
        for i in range(calls):
            for schema, table, _columns, _select, key in TABLES:
                value = f"tok_live_{CANARY}_{i}" if key == "token" else i + 1
                conn.execute(
                    sql.SQL("SELECT * FROM {} WHERE {} = %s").format(sql.Identifier(schema, table), sql.SQL(key)),
                    [value],
                )
                done += 1
            conn.execute(
                sql.SQL("SELECT id AS {} FROM {} WHERE token = %s").format(
                    sql.Identifier(f"password={IDENT_SECRET}"), sql.Identifier('quoted"schema', "api_keys")
                ),
                [f"tok_live_{CANARY}_{i}"],
            )
            done += 1
    return done


def kit_run(url: str, runs_dir: Path, *argv: str, home: Path) -> subprocess.CompletedProcess:
    """``kit run ARGV`` as a user runs it: the console script, the URL in the environment only."""
    env = {**os.environ, "KIT_DATABASE_URL": url, "KIT_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    env.pop("KIT_REDIS_URL", None)
    return subprocess.run(
        [KIT, "run", "--runs-dir", str(runs_dir), *argv], capture_output=True, text=True, env=env, timeout=900
    )


def _run_folders(runs_dir: Path) -> list[Path]:
    return sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()) if Path(runs_dir).is_dir() else []


# -- psql on a copy ---------------------------------------------------------------------------

NOT_INDEXES = """SELECT /* kit */ c.relkind::text, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind NOT IN ('i', 'I') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
UNION ALL SELECT 'constraint', conrelid::regclass::text, conname FROM pg_constraint
  WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
UNION ALL SELECT 'schema', '', nspname FROM pg_namespace
UNION ALL SELECT 'role', '', rolname FROM pg_roles
ORDER BY 1, 2, 3"""
USER_TABLES = """SELECT /* kit */ n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"""


def catalog_state(url: str) -> set[tuple]:
    """Every relation but indexes, constraint, schema and role, and each user table's row count."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        state = {tuple(r) for r in conn.execute(NOT_INDEXES).fetchall()}
        for schema, table in conn.execute(USER_TABLES).fetchall():
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()
            assert count is not None  # count(*): one row
            state.add(("rows", schema, table, count[0]))
    return state


def psql_clean(db: Hostile, fixes_sql: Path) -> dict[str, Any]:
    """``psql -v ON_ERROR_STOP=1 -f fixes.sql`` as the owner on a copy of the database: its exit
    code, and how many relations, constraints, schemas, roles or row counts it changed (goal 0)."""
    copy = f"{db.database}_copy"
    url = local.create_database(db.server, copy, template=db.database)
    as_owner = make_url(url).set(username=db.role(OWNER)).render_as_string(hide_password=False)
    try:
        before = catalog_state(url)
        proc = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", libpq_url(as_owner), "-f", str(fixes_sql)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        after = catalog_state(url)
    finally:
        local.drop_database(db.server, copy)
    changed = before ^ after
    return {
        "psql_exit": proc.returncode,
        "non_index_changes": len(changed),
        "changes": sorted(repr(c) for c in changed)[:10],
        "psql_errors": proc.stderr.strip().splitlines()[:3],
        "psql_clean": proc.returncode == 0 and not changed,
    }


# -- reports in chromium ----------------------------------------------------------------------


def scripts_executed(pages: list[Path], *, settle_ms: int = 500) -> tuple[int, int]:
    """(dialogs opened, pages that show a hostile name escaped) over ``pages`` opened offline in
    chromium: every payload of :func:`build` calls ``alert``, so a dialog is a script that ran."""
    dialogs = shown = 0
    with browser.launch() as chromium:
        for html in pages:
            page, _blocked = browser.offline_page(chromium)
            fired: list[str] = []
            page.on("dialog", lambda d, fired=fired: (fired.append(d.message), d.dismiss()))
            try:
                page.goto(Path(html).resolve().as_uri(), wait_until="load")
                page.wait_for_timeout(settle_ms)
                shown += any(name in page.inner_text("body") for name in (XSS, IMG, BREAKOUT))
            finally:
                page.context.close()
            dialogs += len(fired)
    return dialogs, shown


def scan(folder: Path, needles: list[bytes]) -> tuple[int, list[tuple[str, bytes]]]:
    """Files under ``folder`` and the (file, needle) pairs found in them."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    return len(files), [(str(p.relative_to(folder)), n) for p in files for n in needles if n in p.read_bytes()]


# -- the sections -----------------------------------------------------------------------------


def hostile_runs(db: Hostile, home: Path, work: Path, *, dry_notebooks: tuple[str, ...] = ()) -> dict[str, Any]:
    """Drive the workload, then ``kit run`` dry (``dry_notebooks`` only, when given) and with apply
    (every notebook) as the owner; what the sections need."""
    owner = db.url(OWNER)
    calls = drive(owner)
    runs = work / "runs"
    dry = kit_run(owner, runs, *(arg for name in dry_notebooks for arg in ("--notebook", name)), home=home)
    dry_folder = _run_folders(runs)[-1] if _run_folders(runs) else None
    psql = (
        psql_clean(db, dry_folder / "fixes.sql")
        if dry_folder and (dry_folder / "fixes.sql").exists()
        else {"psql_exit": None, "non_index_changes": None, "psql_clean": False, "changes": [], "psql_errors": []}
    )
    applied = kit_run(owner, runs, "-p", "apply", "true", home=home)
    return {"calls": calls, "runs_dir": runs, "procs": [dry, applied], "folders": _run_folders(runs), "psql": psql}


def hostile_names(state: dict[str, Any]) -> dict[str, Any]:
    """Both runs ok, the dry run's fixes.sql clean under psql, no script in a report, no planted escape anywhere."""
    procs, folders = state["procs"], state["folders"]
    pages = [p for f in folders for p in sorted(f.glob("*.html"))]
    dialogs, shown = scripts_executed(pages)
    output = "".join(p.stdout + p.stderr for p in procs)
    files = [p for f in folders for p in f.rglob("*") if p.is_file()]
    escapes = output.count(PLANTED_ESCAPE) + sum(p.read_bytes().count(PLANTED_ESCAPE.encode()) for p in files)
    fixes = [f for f in folders if (f / "fixes.sql").exists()]
    return {
        "runs": len(procs),
        "runs_ok": sum(p.returncode == 0 for p in procs),
        "run_errors": [p.stderr.strip().splitlines()[-1][:300] for p in procs if p.returncode and p.stderr.strip()],
        "fixes_sql_files": len(fixes),
        **state["psql"],
        "html_pages": len(pages),
        "html_scripts_executed": dialogs,
        "pages_showing_hostile_names": shown,
        "planted_escapes_in_output": escapes,
    }


def data_values_in_files(state: dict[str, Any]) -> dict[str, Any]:
    """The canary value and the password-looking alias in no file of either run, nor in their output; and
    how many statements were measured on values drawn from the canary column (the check is void at 0)."""
    needles = [CANARY.encode(), IDENT_SECRET.encode()]
    files, hits = scan(state["runs_dir"], needles)
    output = "".join(p.stdout + p.stderr for p in state["procs"])
    output_hits = sum(n.decode() in output for n in needles)
    sampled = 0
    for folder in state["folders"]:
        loop = folder / "loop.json"
        if loop.exists():
            statements = json.loads(loop.read_text(encoding="utf-8"))["statements"]
            sampled += sum(s["mode"] == "measured" and "api_keys" in (s["query"] or "") for s in statements)
    return {
        "files_scanned": files,
        "hits": len(hits) + output_hits,
        "hit_files": sorted({f for f, _ in hits}),
        "sampled_statements": sampled,
    }


def least_privilege(db: Hostile, home: Path, work: Path, *, reader_run: bool = True) -> dict[str, Any]:
    """Each case through ``kit run``: one line on stderr, exit 2, no traceback, no run folder; then
    (``reader_run``) the positive control: a reader's dry run works."""
    cases = {
        "monitor without USAGE": (db.url(MONITOR), ()),
        "apply by a reader": (db.url(READER), ("-p", "apply", "true")),
        "apply by a read-only role": (db.url(READ_ONLY), ("-p", "apply", "true")),
        "a role that may not connect": (db.url(NO_CONNECT), ()),
    }
    out: dict[str, Any] = {
        "cases": len(cases),
        "exit_2": 0,
        "one_line": 0,
        "tracebacks": 0,
        "nothing_written": 0,
        "outcomes": [],
    }
    folders = {name: work / f"lp-{uuid.uuid4().hex[:6]}" for name in cases}

    def refused(names: list[str]) -> list[tuple[str, Any]]:
        return [(name, kit_run(cases[name][0], folders[name], *cases[name][1], home=home)) for name in names]

    # independent refusals run at once, but the applies one after the other: an apply takes the database's
    # apply lock before its pre-flight, and the second would be refused for the first's lock instead
    applies = [name for name, (_url, args) in cases.items() if "apply" in args]
    groups = [applies, *([name] for name in cases if name not in applies)]
    with ThreadPoolExecutor(len(groups)) as pool:
        found = dict(pair for done in pool.map(refused, groups) for pair in done)
    procs = {name: found[name] for name in cases}
    for name, proc in procs.items():
        runs = folders[name]
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        traceback = "Traceback" in proc.stdout + proc.stderr
        written = bool(_run_folders(runs))
        out["exit_2"] += proc.returncode == 2
        out["one_line"] += len(lines) == 1
        out["tracebacks"] += traceback
        out["nothing_written"] += not written
        out["outcomes"].append(
            {
                "case": name,
                "exit": proc.returncode,
                "lines": len(lines),
                "first": lines[0][:300] if lines else "",
                "traceback": traceback,
                "written": written,
            }
        )
    if reader_run:
        out["reader_dry_run_ok"] = kit_run(db.url(READER), work / "lp-reader", home=home).returncode == 0
    return out


def run_all(pg: local.Server, home: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(hostile_names, data_values_in_files, least_privilege) on one hostile database."""
    db = build(pg)
    try:
        with tempfile.TemporaryDirectory(prefix="kit-hostile-") as tmp:
            work = Path(tmp)
            state = hostile_runs(db, home, work)
            return hostile_names(state), data_values_in_files(state), least_privilege(db, home, work)
    finally:
        db.drop()
