"""``kit bench faults``: every fault of the reliability goals, against real servers (talks to
PostgreSQL and Redis, pauses and kills its own Redis, runs the ``kit`` command).

No ``--scale``: it starts its own PostgreSQL and Redis under ``<home>/faults`` (so pausing and
killing Redis touches no other process's cache), seeds the tiny data set and stops both at the end.

Sections (goals in brackets):

* ``redis_kill`` {requests, errors [0], stale_reads [0], l2_resumed [true]}: Redis killed under a
  reader in another process, brought back by ``kit.servers.local.up`` on its recorded port;
* ``redis_hang`` {requests, errors [0], stale_reads_beyond_window [0], window_ms}: Redis paused
  (SIGSTOP) for 3 s under the same reader;
* ``redis_partial`` {``write_pause``, ``oom``: {requests, errors [0], stale_reads_beyond_window [0],
  invalidation_failures [> 0], errors_reported [= invalidation_failures], window_ms}}: Redis still
  answering PING and reads for 3 s under the same reader while it holds or refuses what an
  invalidation needs: writes and PUBLISH paused (``CLIENT PAUSE WRITE``; the writer invalidates the
  key), and out of memory (``maxmemory`` below the memory in use, ``noeviction``; the writer
  invalidates the table's tag);
* ``cic_terminated`` {invalid_after_repair [0], second_apply_changes [0]}: a concurrent build
  terminated mid-way, then apply, then apply again;
* ``lock_idle_holder`` / ``lock_active_holder`` {seconds [active <= 120], invalid_left [0],
  blocking_pid_named [true]}: apply with the default timeouts while another session holds a lock
  idle in its transaction / runs a statement in a transaction that read a table;
* ``bad_inputs`` {cases [>= 40], one_line [= cases], exit_2 [= cases], passwords_leaked [0],
  tracebacks [0]} (:mod:`kit.demo.bench._bad_inputs`);
* ``secrets`` {files_scanned, hits [0]}: a full ``kit run`` with a password in the URL and
  password-bearing utility statements in pg_stat_statements;
* ``load`` {requests, failed, unreported_failures [0]}: loads whose requests fail in the warm-up
  and after it; the failures are counted independently of the load runner's report;
* ``hostile_names`` {runs_ok [= runs], psql_clean [true], html_scripts_executed [0],
  planted_escapes_in_output [0]}, ``data_values_in_files`` {hits [0], sampled_statements [> 0]} and
  ``least_privilege`` {tracebacks [0], exit_2, one_line and nothing_written [= cases]}: a database
  whose names try to be code and whose data must stay in it, audited and fixed through ``kit run``
  (:mod:`kit.demo.bench._hostile`);
* ``interrupted_apply`` {sigint, sigkill: backends_left [0], invalid_left_after_rerun [0],
  suffixed_after_rerun [0], bundle_status [sigint: interrupted; sigkill: not ok], exit_code
  [sigint: 130], rerun_exit_code [0], seconds_to_stop}: ``kit run -p apply true`` stopped by SIGINT,
  or SIGKILL with an application transaction open, while a concurrent build of the kit runs, then
  run again (:mod:`kit.demo.bench._applies`);
* ``overlapping_applies`` {duplicate_indexes [0], errors [0], refused [2: one per pair],
  exit_codes}: two ``kit run -p apply true`` on one database, started together and ~a build apart.

Besides the sections: ``seconds`` (the whole bench) and ``section_seconds``, ``definitions`` and
``failures`` (every figure that missed its goal, and every bad input that missed one, by name).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql
from sqlalchemy import Engine, text

from kit.config import libpq_url
from kit.db.engine import make_engine
from kit.demo import datagen
from kit.demo.bench import _applies, _bad_inputs, _hostile
from kit.demo.load import Endpoint, run_load
from kit.demo.load.pool import PoolConfig, make_pool_engine
from kit.demo.outage import OutageResult, run_outage
from kit.indexes import ApplyResult, apply_indexes, default_specs, index_status
from kit.servers import local

TEMPLATE = "faults_tiny"
PASSWORD = "Fault-pw-5e1d"  # the URL's password in the secrets run
CANARY = "canary2b9f60d1"  # inside statement texts; an identifier, so it can stand unquoted
PW_ROLE, CANARY_ROLE, READER_ROLE = "kit_fault_pw", "kit_fault_canary", "kit_fault_reader"
DEFINITIONS = {
    "stale_reads": "reads that returned a value older than one committed (and invalidated) more than "
    "window_ms before the read started; window_ms is the cache's liveness bound",
    "errors": "reads that raised; every read of the reader process is counted in requests",
    "invalidation_failures": "the writer's invalidations that invalidate() said were not delivered to Redis, "
    "counted by the writer; 0 means the fault did not bite",
    "errors_reported": "of those, how many the writer's cache counted itself (its invalidation_failures "
    "counter; each is replayed later, and logged once per episode)",
    "invalid_left": "INVALID indexes of the migration right after apply returned, the holder still there",
    "blocking_pid_named": "the holder's backend pid appears in the failed steps' messages",
    "unreported_failures": "failed requests counted by the endpoints and the pool minus the errors the "
    "load report gives; requests = every request started, warm-up included",
    "bad_inputs": "each case runs the kit command once; one_line and exit_2 count the cases that met it",
    "secrets": "files of the run folder scanned for the URL password, its URL-encoded form and the "
    "canary planted in statement texts; hits = (file, secret) pairs found",
    "psql_clean": "the dry run's fixes.sql, run with psql -v ON_ERROR_STOP=1 as the owner on a copy of the "
    "database, exits 0 and changes no relation but indexes, no constraint, schema, role or row count",
    "html_scripts_executed": "dialogs opened while every HTML report of both runs is open offline in chromium "
    "(each planted payload calls alert)",
    "planted_escapes_in_output": "occurrences of the planted terminal escape in the runs' output and files",
    "data_values_in_files": "hits = (file, needle) pairs for the canary in a sampled column's values and a "
    "password-looking alias, over both runs' files, plus their output; sampled_statements "
    "= statements measured on values drawn from that column (the test is void at 0)",
    "least_privilege": "each case runs kit run once: exit 2, one line on stderr, no traceback, no run folder",
    "interrupted_apply": _applies.DEFINITIONS["interrupted_apply"],
    "overlapping_applies": _applies.DEFINITIONS["overlapping_applies"],
}


STANDALONE = True  # kit bench starts nothing for it: run(seed=, home=)


def run(*, home: Path, seed: int = 42) -> dict[str, Any]:
    started = time.monotonic()
    fault_home = Path(home).resolve() / "faults"
    local.down(home=fault_home, purge=True)  # what an interrupted run left
    servers = local.up(home=fault_home)
    pg = servers["postgres"]
    try:
        engine = make_engine(local.create_database(pg, TEMPLATE, replace=True))
        try:
            datagen.seed(engine, scale="tiny", seed=seed, progress=False)
        finally:
            engine.dispose()
        out: dict[str, Any] = {}
        clock = _Sections()
        with clock("redis"):
            out["redis_kill"], out["redis_hang"] = _redis(fault_home, pg)
        with clock("redis_partial"):
            out["redis_partial"] = _redis_partial(fault_home, pg)
        with clock("cic_terminated"):
            out["cic_terminated"] = _cic_terminated(pg)
        with clock("lock_idle_holder"):
            out["lock_idle_holder"] = _lock_case(pg, IDLE_HOLDER)
        with clock("lock_active_holder"):
            out["lock_active_holder"] = _lock_case(pg, ACTIVE_HOLDER)
        with clock("bad_inputs"):
            out["bad_inputs"], outcomes = _bad(fault_home, pg)
        with clock("secrets"):
            out["secrets"] = _secrets(fault_home, pg)
        with clock("load"):
            out["load"] = _load(pg)
        with clock("hostile"):
            out["hostile_names"], out["data_values_in_files"], out["least_privilege"] = _hostile.run_all(pg, fault_home)
        with clock("interrupted_apply"):
            out["interrupted_apply"] = _applies.interrupted_apply(pg, home=fault_home)
        with clock("overlapping_applies"):
            out["overlapping_applies"] = _applies.overlapping_applies(pg, home=fault_home)
    finally:
        local.down(home=fault_home, purge=True)
    out["seconds"] = round(time.monotonic() - started, 1)
    out["section_seconds"] = clock.seconds
    out["definitions"] = DEFINITIONS
    out["failures"] = _failures(out) + [
        f"bad input {o['case']!r}: exit {o['exit']}, {o['lines']} line(s)"
        f"{', traceback' if o['traceback'] else ''}"
        f"{', password leaked' if o['leaked'] else ''}"
        f"{', ' + o['problems'] if o['problems'] else ''}"
        for o in outcomes
        if _missed(o)
    ]
    return out


class _Sections:
    """``with clock(name):`` adds the block's wall time to ``seconds[name]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - t0, 1)


def _missed(outcome: dict[str, Any]) -> bool:
    return (
        outcome["exit"] != 2
        or outcome["lines"] != 1
        or outcome["traceback"]
        or outcome["leaked"]
        or bool(outcome["problems"])
    )


def _failures(out: dict[str, Any]) -> list[str]:
    goals = [
        ("redis_kill", "errors", 0),
        ("redis_kill", "stale_reads", 0),
        ("redis_kill", "l2_resumed", True),
        ("redis_hang", "errors", 0),
        ("redis_hang", "stale_reads_beyond_window", 0),
        ("cic_terminated", "invalid_after_repair", 0),
        ("cic_terminated", "second_apply_changes", 0),
        ("lock_idle_holder", "invalid_left", 0),
        ("lock_idle_holder", "blocking_pid_named", True),
        ("lock_active_holder", "invalid_left", 0),
        ("lock_active_holder", "blocking_pid_named", True),
        ("bad_inputs", "passwords_leaked", 0),
        ("bad_inputs", "tracebacks", 0),
        ("secrets", "hits", 0),
        ("load", "unreported_failures", 0),
        ("overlapping_applies", "duplicate_indexes", 0),
        ("overlapping_applies", "errors", 0),
    ]
    missed = [
        f"{section}.{key} = {out[section][key]!r}, goal {goal!r}"
        for section, key, goal in goals
        if out[section][key] != goal
    ]
    missed += _partial_missed(out["redis_partial"])
    missed += _applies.failures(out)  # interrupted_apply's goals per case (sigint, sigkill), refused
    if out["lock_active_holder"]["seconds"] > 120:
        missed.append(f"lock_active_holder.seconds = {out['lock_active_holder']['seconds']}, goal <= 120")
    missed += _hostile_failures(out)
    bad = out["bad_inputs"]
    if bad["cases"] < 40 or bad["one_line"] != bad["cases"] or bad["exit_2"] != bad["cases"]:
        missed.append(f"bad_inputs: {bad['one_line']} one-line and {bad['exit_2']} exit-2 of {bad['cases']} cases")
    return missed


def _hostile_failures(out: dict[str, Any]) -> list[str]:
    names, values, roles = out["hostile_names"], out["data_values_in_files"], out["least_privilege"]
    checks = [
        ("hostile_names.runs_ok", names["runs_ok"], names["runs"]),
        ("hostile_names.psql_clean", names["psql_clean"], True),
        ("hostile_names.html_scripts_executed", names["html_scripts_executed"], 0),
        ("hostile_names.planted_escapes_in_output", names["planted_escapes_in_output"], 0),
        ("data_values_in_files.hits", values["hits"], 0),
        ("data_values_in_files.sampled_statements > 0", values["sampled_statements"] > 0, True),
        ("least_privilege.tracebacks", roles["tracebacks"], 0),
    ]
    checks += [
        (f"least_privilege.{key}", roles[key], roles["cases"]) for key in ("exit_2", "one_line", "nothing_written")
    ]
    checks.append(("least_privilege.reader_dry_run_ok", roles["reader_dry_run_ok"], True))
    return [f"{name} = {value!r}, goal {goal!r}" for name, value, goal in checks if value != goal]


def _copy(pg: local.Server) -> str:
    return local.create_database(pg, f"faults_{uuid.uuid4().hex[:8]}", template=TEMPLATE)


def _admin(pg: local.Server, database: str | None = None) -> psycopg.Connection:
    dsn = local._admin_dsn(pg)
    return psycopg.connect(dsn.replace("dbname=postgres", f"dbname={database}") if database else dsn, autocommit=True)


# -- Redis ------------------------------------------------------------------------------------


def _redis(home: Path, pg: local.Server) -> tuple[dict[str, Any], dict[str, Any]]:
    url = _copy(pg)
    redis_srv = local.status(home=home)["redis"]
    kill = run_outage(
        url, redis_srv.url, fault="kill", redis_pid=redis_srv.pid, outage_s=3.0, restart=lambda: local.up(home=home)
    )
    redis_srv = local.status(home=home)["redis"]  # the restarted one: same port, new pid
    hang = run_outage(url, redis_srv.url, fault="hang", redis_pid=redis_srv.pid, outage_s=3.0)
    return (
        {
            "requests": kill.requests,
            "errors": kill.errors,
            "stale_reads": kill.stale_reads_beyond_window,
            "l2_resumed": kill.l2_resumed,
        },
        {
            "requests": hang.requests,
            "errors": hang.errors,
            "stale_reads_beyond_window": hang.stale_reads_beyond_window,
            "window_ms": hang.window_ms,
        },
    )


# -- Redis partial failures -----------------------------------------------------------------------


def _redis_partial(home: Path, pg: local.Server) -> dict[str, dict[str, Any]]:
    """Writes paused, then Redis out of memory, each for 3 s under a reader in another process."""
    url = _copy(pg)
    redis_url = local.status(home=home)["redis"].url
    pause = run_outage(url, redis_url, fault="write_pause", outage_s=3.0)
    oom = run_outage(url, redis_url, fault="oom", outage_s=3.0, invalidate_by="tag")
    return {"write_pause": _partial_figures(pause), "oom": _partial_figures(oom)}


def _partial_figures(result: OutageResult) -> dict[str, Any]:
    return {
        "requests": result.requests,
        "errors": result.errors,
        "stale_reads_beyond_window": result.stale_reads_beyond_window,
        "invalidation_failures": result.invalidation_failures,
        "errors_reported": result.failures_reported,
        "window_ms": result.window_ms,
    }


def _partial_missed(partial: dict[str, dict[str, Any]]) -> list[str]:
    missed = []
    for kind, figures in partial.items():
        name = f"redis_partial.{kind}"
        missed += [
            f"{name}.{key} = {figures[key]}, goal 0"
            for key in ("errors", "stale_reads_beyond_window")
            if figures[key] != 0
        ]
        if figures["invalidation_failures"] == 0:
            missed.append(f"{name}.invalidation_failures = 0, goal > 0 (the fault did not bite)")
        if figures["errors_reported"] != figures["invalidation_failures"]:
            missed.append(
                f"{name}.errors_reported = {figures['errors_reported']}, goal "
                f"{figures['invalidation_failures']} (every invalidation failure)"
            )
    return missed


# -- indexes ----------------------------------------------------------------------------------

PHASE = "SELECT /* kit */ phase FROM pg_stat_progress_create_index"
INVALID = "SELECT /* kit */ count(*) FROM pg_index WHERE NOT indisvalid"


def _apply_quietly(engine: Engine) -> ApplyResult:
    return apply_indexes(engine, apply=True, progress=None, out=None, sample_s=0)


def _invalid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text(INVALID)).scalar_one()


def _cic_terminated(pg: local.Server) -> dict[str, int]:
    """One concurrent build terminated while it waits for an old snapshot: INVALID; then apply
    (repairs it and builds the rest), then apply again (nothing to do)."""
    url = _copy(pg)
    engine = make_engine(url)
    spec = default_specs(engine)[0]
    dsn = libpq_url(url)
    try:
        with psycopg.connect(dsn) as blocker, psycopg.connect(dsn, autocommit=True) as admin:
            blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            blocker.execute("SELECT /* kit */ 1")  # an old snapshot: the build waits for it at its end
            pid: list[int] = []
            thread = threading.Thread(target=_build, args=(dsn, spec.create_sql, pid), daemon=True)
            thread.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                row = admin.execute(PHASE).fetchone()
                if row and "old snapshots" in row[0]:
                    break
                time.sleep(0.05)
            admin.execute("SELECT /* kit */ pg_terminate_backend(%s)", pid)
            thread.join(10)
        if index_status(engine, (spec,)).state_of(spec.name) != "invalid":
            raise RuntimeError(f"the terminated build of {spec.name} did not leave an INVALID index")
        _apply_quietly(engine)
        invalid = _invalid(engine)
        second = _apply_quietly(engine)
        return {"invalid_after_repair": invalid, "second_apply_changes": len(second.names("applied"))}
    finally:
        engine.dispose()


def _build(dsn: str, stmt, pid: list[int]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        pid.append(conn.info.backend_pid)
        try:
            conn.execute(stmt)
        except psycopg.Error:
            pass  # terminated, as intended


IDLE_HOLDER = (
    "c.execute('LOCK TABLE users IN SHARE MODE')\n"  # then idle in its transaction
    "print(c.info.backend_pid, flush=True)\nimport time\ntime.sleep(600)\n"
)
ACTIVE_HOLDER = (
    "c.execute('SELECT count(*) FROM users')\n"
    "print(c.info.backend_pid, flush=True)\n"
    "c.execute('SELECT pg_sleep(600)')\n"
)  # a statement running inside the transaction


def _lock_case(pg: local.Server, holder_code: str) -> dict[str, Any]:
    """Apply every index with the default timeouts and retries while another process holds on."""
    url = _copy(pg)
    engine = make_engine(url)
    code = f"import psycopg\nc = psycopg.connect({libpq_url(url)!r})\n" + holder_code
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None  # stdout=PIPE
        holder_pid = int(holder.stdout.readline())
        time.sleep(0.5)  # the holder's statement is running
        started = time.monotonic()
        result = _apply_quietly(engine)
        seconds = time.monotonic() - started
        invalid = _invalid(engine)
    finally:
        holder.kill()
        holder.wait(10)
        engine.dispose()
    named = any(str(holder_pid) in s.message for s in result.steps if s.status == "failed")
    return {"seconds": round(seconds, 1), "invalid_left": invalid, "blocking_pid_named": named}


# -- bad inputs -------------------------------------------------------------------------------


@contextlib.contextmanager
def _password_role(
    pg: local.Server, role: str, password: str, *, superuser: bool = False, databases: tuple[str, ...] = ()
) -> Iterator[None]:
    """A role that must log in with ``password`` over TCP (the kit's server trusts everyone else);
    dropped afterwards with what it owns in ``databases``."""
    hba = Path(pg.data_dir) / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + original)
    create = "CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}" if superuser else "CREATE ROLE {} LOGIN PASSWORD {}"
    with _admin(pg) as conn:
        conn.execute(sql.SQL(create).format(sql.Identifier(role), sql.Literal(password)))
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        hba.write_text(original)
        for database in (*databases, None):
            with _admin(pg, database) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        with _admin(pg) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _tcp_port(pg: local.Server) -> int:
    """The server's port: the bad inputs and the secrets run log in over TCP with passwords."""
    if pg.port is None:
        raise RuntimeError(
            f"kit bench faults logs in over TCP, and this PostgreSQL ({pg.engine}) listens on a unix socket "
            "only: install PostgreSQL (apt-get install postgresql) so that the kit starts that one"
        )
    return pg.port


def _bad(home: Path, pg: local.Server) -> tuple[dict[str, int], list[dict[str, Any]]]:
    port = _tcp_port(pg)
    url = _copy(pg)
    database = url.rsplit("/", 1)[1]
    with (
        _password_role(pg, PW_ROLE, "right-" + PASSWORD, databases=(database,)),
        _password_role(pg, READER_ROLE, _bad_inputs.SECRET, databases=(database,)),
    ):
        with _admin(pg, database) as conn:
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        ctx = _bad_inputs.Context(
            kit_home=home,
            database_url=url,
            pg_port=port,
            wrong_password_url=f"postgresql://{PW_ROLE}:{_bad_inputs.SECRET}@127.0.0.1:{port}/{database}",
            read_only_url=f"postgresql://{READER_ROLE}:{_bad_inputs.SECRET}@127.0.0.1:{port}/{database}",
            unused_port=local.free_port(),
        )
        return _bad_inputs.run_all(ctx)


# -- secrets ----------------------------------------------------------------------------------

# each runs in the audited database, so pg_stat_statements keeps its text there ({port}, {db} filled in)
PLANTED = (
    f"CREATE ROLE {CANARY_ROLE} LOGIN PASSWORD '{CANARY}'",
    f"ALTER ROLE {CANARY_ROLE} PASSWORD '{CANARY}'",
    "CREATE EXTENSION IF NOT EXISTS postgres_fdw",
    "CREATE SERVER kit_canary_srv FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', dbname 'none')",
    f"CREATE USER MAPPING FOR {CANARY_ROLE} SERVER kit_canary_srv OPTIONS (user 'app', password '{CANARY}')",
    "CREATE EXTENSION IF NOT EXISTS dblink",
    "SELECT dblink_connect_u('kitc', 'host=127.0.0.1 port={port} dbname={db} user=postgres password=" + CANARY + "')",
    "SELECT dblink_disconnect('kitc')",
    f"SET app.api_key = {CANARY}",
    f"/* password={CANARY} */ SELECT 1",
)


def plant_secrets(conn: psycopg.Connection, *, port: int, database: str) -> int:
    """Run the password-bearing statements of :data:`PLANTED`; how many texts pg_stat_statements kept
    with the canary in them."""
    for stmt in PLANTED:
        conn.execute(stmt.replace("{port}", str(port)).replace("{db}", database))
    kept = conn.execute("SELECT count(*) FROM pg_stat_statements WHERE query LIKE %s", [f"%{CANARY}%"]).fetchone()
    assert kept is not None  # count(*): one row
    return kept[0]


def remove_secrets(conn: psycopg.Connection) -> None:
    conn.execute(
        sql.SQL("DROP USER MAPPING IF EXISTS FOR {} SERVER kit_canary_srv").format(sql.Identifier(CANARY_ROLE))
    )
    conn.execute("DROP SERVER IF EXISTS kit_canary_srv")
    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(CANARY_ROLE)))


def _secrets(home: Path, pg: local.Server) -> dict[str, int]:
    """A full `kit run` (the console script) with a password in the URL and secrets in statement texts."""
    port = _tcp_port(pg)
    url = _copy(pg)
    database = url.rsplit("/", 1)[1]
    with _password_role(pg, PW_ROLE, PASSWORD, superuser=True, databases=(database,)):
        with _admin(pg, database) as conn:
            if plant_secrets(conn, port=port, database=database) < 4:
                raise RuntimeError("pg_stat_statements did not keep the planted statements")
        env = {
            "KIT_DATABASE_URL": f"postgresql://{PW_ROLE}:{PASSWORD}@127.0.0.1:{port}/{database}",
            "KIT_REDIS_URL": local.status(home=home)["redis"].url,
            "KIT_HOME": str(home),
        }
        try:
            with tempfile.TemporaryDirectory(prefix="kit-secrets-") as tmp:
                proc = subprocess.run(
                    [_bad_inputs.KIT, "run", "-p", "scale", "tiny", "--runs-dir", tmp],
                    capture_output=True,
                    text=True,
                    env={**os.environ, **env},
                    timeout=900,
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"the secrets run failed: {proc.stderr.strip()[-300:]}")
                needles = [PASSWORD.encode(), quote(PASSWORD).encode(), CANARY.encode()]
                files, hits = _hostile.scan(Path(tmp), needles)
                output_hits = sum(n.decode() in proc.stdout + proc.stderr for n in needles)
        finally:
            with _admin(pg, database) as conn:
                remove_secrets(conn)
    return {"files_scanned": files, "hits": len(hits) + output_hits}


# -- load -------------------------------------------------------------------------------------

TIMED_OUT = "SELECT /* kit */ set_config('statement_timeout', '700ms', true), pg_sleep(1.0)"


def _load(pg: local.Server) -> dict[str, int]:
    """Two loads whose requests fail during the warm-up and after it: statements that time out
    (counted by the endpoint itself) and a pool too small for its users (counted by the pool)."""
    url = _copy(pg)
    calls, failures, lock = [0], [0], threading.Lock()

    def slow(conn, rng) -> None:
        with lock:
            calls[0] += 1
        try:
            conn.execute(text(TIMED_OUT))
        except Exception:
            with lock:
                failures[0] += 1
            raise

    engine = make_pool_engine(url, PoolConfig("ample", pool_size=10, pool_timeout=30))
    try:
        first = run_load(
            engine,
            [Endpoint("slow", slow)],
            users=8,
            duration_s=2.0,
            warmup_s=1.0,
            progress=False,
            n_boot=50,
            sample_resources=False,
        )
    finally:
        engine.dispose()
    engine = make_pool_engine(url, PoolConfig("tight", pool_size=2, pool_timeout=0.5))
    held = [0]

    def hold(conn, rng) -> None:
        with lock:
            held[0] += 1
        conn.execute(text("SELECT /* kit */ pg_sleep(0.4)"))

    try:
        second = run_load(
            engine,
            [Endpoint("hold", hold)],
            users=12,
            duration_s=2.0,
            warmup_s=1.0,
            progress=False,
            n_boot=50,
            sample_resources=False,
        )
    finally:
        engine.dispose()
    timeouts = int(sum(second.pool[phase]["timeouts"] for phase in ("warmup", "measure")))  # a count
    started = calls[0] + held[0] + timeouts  # a request either ran on a connection or timed out waiting
    failed = failures[0] + timeouts
    return {"requests": started, "failed": failed, "unreported_failures": failed - (first.errors + second.errors)}
