"""The ``interrupted_apply`` and ``overlapping_applies`` sections of ``kit bench faults``: ``kit run -p
apply true`` (the console script) on a shop database big enough that a concurrent build takes
seconds, interrupted while it builds, or started twice (talks to PostgreSQL; signals only the
``kit run`` processes it starts).

* ``interrupted_apply``: per case, a fresh copy of the shop, ``kit run -p apply true`` stopped
  while a ``CREATE INDEX CONCURRENTLY`` of the kit's is in progress — ``sigint``: SIGINT to the
  run's process group, as a terminal's Ctrl-C; ``sigkill``: SIGKILL to it while an application
  transaction is open, so that the build waits — then the same ``kit run`` again.
* ``overlapping_applies``: per case, a fresh copy, two ``kit run -p apply true`` — ``at_once``:
  started together; ``apart``: the second once the first is building.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from kit.benchmarks import anydb
from kit.config import libpq_url
from kit.servers import local

KIT = str(Path(sys.executable).parent / "kit")
ROWS = 1_200_000  # order_items: its index builds in a few seconds on this kind of machine
TEMPLATE = "applies_shop_{rows}"
RUN_TIMEOUT_S = 900
REFUSAL = "another session is applying indexes or fixes to this database"
DEFINITIONS = {  # per figure of each section (kit bench faults' DEFINITIONS holds them)
    "interrupted_apply": {
        "setup": "per case a fresh copy of a 1.2 M-row shop, its workload driven; kit run -p apply true stopped "
        "while a concurrent build of the kit runs: SIGINT to its process group (sigint), or SIGKILL to it "
        "with an application transaction open that the build waits for (sigkill); then the same run again",
        "backends_left": "backends of the kit (application_name dbperf-kit...) still running a statement in the "
        "database 2 s after the kit run process exited",
        "seconds_to_stop": "from the signal until no concurrent build of the kit runs in the server",
        "seconds_to_exit": "from the signal until the kit run process has exited",
        "invalid_after_interrupt": "INVALID indexes right after, before the rerun",
        "invalid_left_after_rerun": "INVALID indexes once the rerun has ended",
        "suffixed_after_rerun": "indexes named kit_..._idx_<n>: built beside a leftover instead of under its name",
        "bundle_status": "the interrupted run's bundle status ('no bundle': it wrote none)",
        "history_status": "what kit history shows for the interrupted run",
        "rerun_baseline": "the run the rerun's bundle compared with (previous_run)",
    },
    "overlapping_applies": {
        "setup": "per case a fresh copy and two kit run -p apply true: started together (at_once), or the second "
        "once the first is building (apart)",
        "duplicate_indexes": "indexes with the same table, key columns, collations, operator classes, expressions "
        "and predicate as another, once both runs have ended",
        "errors": "runs that ended otherwise than exit 0 or the one-line refusal naming the holder (exit 2)",
        "refused": "runs refused with that one line",
    },
}

KIT_BUILDS = """SELECT /* kit */ p.pid, p.phase FROM pg_stat_progress_create_index p JOIN pg_stat_activity a ON a.pid = p.pid
WHERE a.application_name = 'dbperf-kit-build' AND a.datname = current_database()"""
KIT_ACTIVE = """SELECT /* kit */ count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE 'dbperf-kit%' AND state = 'active'"""
INVALID = "SELECT /* kit */ count(*) FROM pg_index WHERE NOT indisvalid"
SUFFIXED = "SELECT /* kit */ count(*) FROM pg_class WHERE relkind = 'i' AND relname ~ '^kit_.*_idx_[0-9]+$'"
DUPLICATES = """SELECT /* kit */ count(*) - count(DISTINCT (x.indrelid, x.indkey::text, x.indcollation::text, x.indclass::text,
                                  x.indoption::text, coalesce(pg_get_expr(x.indexprs, x.indrelid), ''),
                                  coalesce(pg_get_expr(x.indpred, x.indrelid), '')))
FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = 'public'"""


def template(pg: local.Server, *, rows: int = ROWS) -> str:
    """The shop, built once per server as the template every case copies (its workload is driven on
    each copy: pg_stat_statements keeps statements per database)."""
    name = TEMPLATE.format(rows=rows)
    with psycopg.connect(local._admin_dsn(pg), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return name
    anydb.build(local.create_database(pg, name), rows=rows)
    return name


def interrupted_apply(pg: local.Server, *, home: Path, rows: int = ROWS) -> dict[str, Any]:
    shop = template(pg, rows=rows)
    return {
        "sigint": _interrupted(pg, home, shop, rows=rows, sig=signal.SIGINT, app_transaction=False),
        "sigkill": _interrupted(pg, home, shop, rows=rows, sig=signal.SIGKILL, app_transaction=True),
    }


def overlapping_applies(pg: local.Server, *, home: Path, rows: int = ROWS) -> dict[str, Any]:
    template_ = template(pg, rows=rows)
    cases = {
        "at_once": _overlapping(pg, home, template_, rows=rows, apart=False),
        "apart": _overlapping(pg, home, template_, rows=rows, apart=True),
    }
    total = {key: sum(c[key] for c in cases.values()) for key in ("duplicate_indexes", "errors", "refused")}
    return {**total, "exit_codes": {name: c["exit_codes"] for name, c in cases.items()}, "cases": cases}


def failures(out: dict[str, Any]) -> list[str]:
    """The per-case figures of ``interrupted_apply`` and the refusals of ``overlapping_applies`` that
    missed their goal (faults.py lists the flat goals)."""
    missed = []
    for case in ("sigint", "sigkill"):
        got = out["interrupted_apply"][case]
        goals: dict[str, object] = {
            "backends_left": 0,
            "invalid_left_after_rerun": 0,
            "suffixed_after_rerun": 0,
            "rerun_exit_code": 0,
            "rerun_compared_with_interrupted": False,
            "stderr_tracebacks": 0,
        }
        if case == "sigint":
            goals.update(bundle_status="interrupted", exit_code=130)
        missed += [f"interrupted_apply.{case}.{k} = {got[k]!r}, goal {v!r}" for k, v in goals.items() if got[k] != v]
        if case == "sigkill" and got["bundle_status"] == "ok":
            missed.append("interrupted_apply.sigkill.bundle_status = 'ok', goal: anything else")
    over = out["overlapping_applies"]
    if over["refused"] != 2:
        missed.append(f"overlapping_applies.refused = {over['refused']!r}, goal 2 (one run of each pair)")
    return missed


# -- helpers ----------------------------------------------------------------------------------


def _copy(pg: local.Server, template: str, rows: int) -> str:
    url = local.create_database(pg, f"applies_{uuid.uuid4().hex[:8]}", template=template)
    anydb.drive(url, rows=rows, scans=12, lookups=60)
    return url


def _env(url: str, home: Path) -> dict[str, str]:
    redis = local.status(home=home).get("redis")
    return {
        **os.environ,
        "KIT_DATABASE_URL": url,
        "KIT_HOME": str(home),
        **({"KIT_REDIS_URL": redis.url} if redis else {}),
    }


def _start(url: str, home: Path, runs: Path) -> subprocess.Popen:
    """``kit run -p apply true`` in a session of its own, as a shell starts a foreground job; its
    output into files next to ``runs`` (a pipe nobody reads while it runs could fill and block it)."""
    runs.parent.mkdir(parents=True, exist_ok=True)
    with open(runs.parent / f"{runs.name}.out", "w") as out, open(runs.parent / f"{runs.name}.err", "w") as err:
        return subprocess.Popen(
            [KIT, "run", "-p", "apply", "true", "-p", "repeats", "3", "--runs-dir", str(runs)],
            env=_env(url, home),
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def _stderr(runs: Path) -> str:
    return (runs.parent / f"{runs.name}.err").read_text(errors="replace")


def _scalar(conn: psycopg.Connection, query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None  # every query given is a count(*): one row
    return row[0]


def _wait_for_build(
    conn: psycopg.Connection, proc: subprocess.Popen, *, phase: str = "", timeout_s: float = 600
) -> str:
    """Wait until a concurrent build of the kit is in progress (in ``phase``, when given); its phase."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = conn.execute(KIT_BUILDS).fetchone()
        if row and phase in row[1]:
            return row[1]
        if proc.poll() is not None:
            raise RuntimeError(f"kit run ended (exit {proc.returncode}) before a build was seen")
        time.sleep(0.02)
    raise RuntimeError(f"no concurrent build of the kit{' in phase ' + phase if phase else ''} within {timeout_s} s")


def _stop_times(conn: psycopg.Connection, proc: subprocess.Popen, *, timeout_s: float = 300) -> tuple[float, float]:
    """Seconds from now until no concurrent build of the kit runs, and until ``proc`` has exited."""
    started, stopped, exited = time.monotonic(), None, None
    while stopped is None or exited is None:
        now = time.monotonic() - started
        if now > timeout_s:
            raise RuntimeError(f"the kit's build or its process still running {timeout_s} s after the signal")
        if stopped is None and conn.execute(KIT_BUILDS).fetchone() is None:
            stopped = now
        if exited is None and proc.poll() is not None:
            exited = now
        time.sleep(0.02)
    return stopped, exited


def _run_of(runs: Path) -> Path | None:
    folders = sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    return folders[0] if folders else None


def _bundle(folder: Path | None) -> dict[str, Any] | None:
    path = folder / "bundle.json" if folder else None
    return json.loads(path.read_text()) if path and path.exists() else None


def _history_status(url: str, home: Path, runs: Path, run: str) -> str | None:
    proc = subprocess.run(
        [KIT, "history", "--runs-dir", str(runs)], env=_env(url, home), capture_output=True, text=True, timeout=120
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.strip().startswith(run)), "")
    words = line.split()
    if len(words) < 2:
        return None
    return "no bundle" if words[1:3] == ["no", "bundle"] else words[1]  # the status column


def _tracebacks(text: str) -> int:
    return text.count("Traceback (most recent call last)")


# -- interrupted apply ------------------------------------------------------------------------


def _interrupted(
    pg: local.Server, home: Path, template: str, *, rows: int, sig: signal.Signals, app_transaction: bool
) -> dict[str, Any]:
    """Steps: 1. kit run -p apply true; 2. wait for its build (with an application transaction open:
    until the build waits for it); 3. the signal to the run's process group; 4. when the build, then
    the process, stopped; 2 s later, the kit's backends still active; 5. the application transaction
    ends; 6. the same run again, and what it left."""
    url = _copy(pg, template, rows)
    dsn = libpq_url(url)
    with (
        tempfile.TemporaryDirectory(prefix="kit-applies-") as tmp,
        psycopg.connect(dsn, autocommit=True, application_name="bench-observer") as conn,
    ):
        runs = Path(tmp) / "runs"
        proc = _start(url, home, runs)  # 1.
        app = None
        try:
            _wait_for_build(conn, proc)  # 2.
            if app_transaction:
                app = psycopg.connect(dsn, application_name="shop-app")
                app.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                app.execute("SELECT count(*) FROM customers")  # a snapshot older than the build's
                _wait_for_build(conn, proc, phase="old snapshots")
            os.killpg(proc.pid, sig)  # 3.
            stopped, exited = _stop_times(conn, proc)  # 4.
            time.sleep(max(0.0, 2.0 - (max(stopped, exited) - exited)))  # 2 s after the exit
            backends_left = _scalar(conn, KIT_ACTIVE)
            err = _stderr(runs)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            if app is not None:
                app.close()  # 5.
        invalid_before = _scalar(conn, INVALID)
        first = _run_of(runs)  # (the rerun's folder sorts after it)
        bundle = _bundle(first)
        history = _history_status(url, home, runs, first.name) if first else None
        rerun = subprocess.run(
            [KIT, "run", "-p", "apply", "true", "-p", "repeats", "3", "--runs-dir", str(runs)],
            env=_env(url, home),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )  # 6.
        second = sorted(p for p in runs.iterdir() if p.is_dir())[-1]
        baseline = (_bundle(second) or {}).get("previous_run")
        loop = second / "loop.json"
        dropped = (
            [f["index"] for f in json.loads(loop.read_text()).get("leftovers", []) if f["action"] == "dropped"]
            if loop.exists()
            else []
        )
        return {
            "exit_code": proc.returncode,
            "seconds_to_stop": round(stopped, 2),
            "seconds_to_exit": round(exited, 2),
            "backends_left": backends_left,
            "invalid_after_interrupt": invalid_before,
            "bundle_status": bundle["status"] if bundle else "no bundle",
            "history_status": history,
            "stderr_last_line": (err.strip().splitlines() or [""])[-1][:300],
            "stderr_tracebacks": _tracebacks(err),
            "rerun_exit_code": rerun.returncode,
            "rerun_error": rerun.stderr.strip().splitlines()[-1][:300] if rerun.returncode else "",
            "invalid_left_after_rerun": _scalar(conn, INVALID),
            "suffixed_after_rerun": _scalar(conn, SUFFIXED),
            "rerun_dropped_leftovers": dropped,
            "rerun_baseline": baseline,
            "rerun_compared_with_interrupted": bool(first and baseline == first.name),
        }


# -- overlapping applies ----------------------------------------------------------------------


def _overlapping(pg: local.Server, home: Path, template: str, *, rows: int, apart: bool) -> dict[str, Any]:
    """Two runs: started together, or the second once the first is building."""
    url = _copy(pg, template, rows)
    with (
        tempfile.TemporaryDirectory(prefix="kit-applies-") as tmp,
        psycopg.connect(libpq_url(url), autocommit=True, application_name="bench-observer") as conn,
    ):
        started = time.monotonic()
        procs = [_start(url, home, Path(tmp) / "a")]
        if apart:
            _wait_for_build(conn, procs[0])
        delay = time.monotonic() - started
        procs.append(_start(url, home, Path(tmp) / "b"))
        codes = [p.wait(timeout=RUN_TIMEOUT_S) for p in procs]
        errs = [_stderr(Path(tmp) / name) for name in ("a", "b")]
        refused = [
            code == 2 and len(err.strip().splitlines()) == 1 and REFUSAL in err
            for code, err in zip(codes, errs, strict=False)
        ]
        lines = [err.strip().splitlines()[-1][:300] if err.strip() else "" for err in errs]
        return {
            "delay_s": round(delay, 1),
            "exit_codes": codes,
            "refused": sum(refused),
            "errors": sum(1 for code, ok in zip(codes, refused, strict=False) if code != 0 and not ok),
            "duplicate_indexes": _scalar(conn, DUPLICATES),
            "invalid_left": _scalar(conn, INVALID),
            "stderr": [ln for ln in lines if ln],
        }
