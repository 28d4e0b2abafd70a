"""The bad inputs of ``kit bench faults``: the ``kit`` command run as a user would, once per case
(runs the console script; the cases reach PostgreSQL through it).

Every case is a mistake a user makes (a URL typed wrong, a password in a parameter, a taken port,
a file that is not a notebook, a role that may not write, a value out of range ...). The goal for
each: exit code 2, exactly one line on stderr, no traceback, its password nowhere in the output
nor in any file, and nothing written (no run folder, no server left running).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.servers import local

SECRET = "S3cret-7Qx"  # the password every case carries somewhere
KIT = str(Path(sys.executable).parent / "kit")


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    taken_port: bool = False  # "{taken}" in argv: a port another socket listens on during the case
    after: Callable[[Path], str] | None = None  # a check once the case ran: '' or what is wrong


@dataclass(frozen=True)
class Context:
    """What the cases point at: the faults servers and a few roles on them."""

    kit_home: Path  # the home whose servers the kit finds by default
    database_url: str  # a database of the faults server (the kit's own)
    pg_port: int
    wrong_password_url: str  # a role that logs in with a password, given the wrong one
    read_only_url: str  # a role that may not create anything
    unused_port: int


def cases(ctx: Context) -> list[Case]:
    s, unused = SECRET, ctx.unused_port
    down = f"postgresql://u:{s}@127.0.0.1:{unused}/x"
    nothing_started = _nothing_running
    return [
        Case("URL without a scheme", ("seed", "--database-url", f"auditor:{s}@db:5432/app")),
        Case(
            "password with a '/'", ("seed", "--apply", "--database-url", f"postgresql://u:pa/{s}@127.0.0.1:{unused}/x")
        ),
        Case(
            "password with a space",
            ("seed", "--apply", "--database-url", f"postgresql://u:pa {s}@127.0.0.1:{unused}/x"),
        ),
        Case("port not a number", ("seed", "--database-url", f"postgresql://u:{s}@db:five/app")),
        Case("port out of range in the URL", ("seed", "--database-url", f"postgresql://u:{s}@db:99999/app")),
        Case("not PostgreSQL", ("seed", "--database-url", f"mysql://root:{s}@db/app")),
        Case("not a URL", ("seed", "--database-url", "::::")),
        Case("database unreachable", ("seed", "--apply", "--database-url", down)),
        Case("wrong password", ("seed", "--apply", "--database-url", ctx.wrong_password_url)),
        Case(
            "database that does not exist",
            ("seed", "--apply", "--database-url", f"postgresql://postgres:{s}@127.0.0.1:{ctx.pg_port}/no_such_db"),
        ),
        Case("unknown scale", ("seed", "--scale", "huge")),
        Case("seed not an integer", ("seed", "--seed", "x")),
        Case("unknown option", ("seed", "--colour", "red")),
        Case(
            "a database the kit did not create",
            ("seed", "--scale", "tiny", "--database-url", ctx.database_url),
            env={"KIT_HOME": "{fresh}"},
        ),
        Case("a role that may not write", ("seed", "--scale", "tiny", "--apply", "--database-url", ctx.read_only_url)),
        Case("unknown parameter", ("run", "-p", "colour", "red")),
        Case("not a boolean", ("run", "-p", "apply", "perhaps")),
        Case("scale parameter not a scale", ("run", "-p", "scale", "huge")),
        Case("negative users", ("run", "-p", "load_users", "-5")),
        Case("zero users", ("run", "-p", "load_users", "0")),
        Case("seconds out of range", ("run", "-p", "load_seconds", "1e9")),
        Case("seconds not a number", ("run", "-p", "load_seconds", "abc")),
        Case(
            "a password as a parameter",
            ("run", "--notebook", "04_trends.ipynb", "-p", "runs_dir", f"host=db password={s}"),
        ),
        Case("a URL as a parameter", ("run", "-p", "database_env", f"postgresql://u:{s}@h/d")),
        Case("a variable name that is not one", ("run", "-p", "database_env", "not a name")),
        Case("a file that is not a notebook", ("run", "--notebook", "../README.md")),
        Case("a notebook that does not exist", ("run", "--notebook", "99_missing.ipynb")),
        Case("unknown kernel", ("run", "--kernel", "nope")),
        Case("unparsable --fail-on", ("run", "--fail-on", "nonsense")),
        Case("--fail-on without a bundle", ("run", "--fail-on", "load.p95_ms.fixed>+20%", "--no-bundle")),
        Case("run with a URL without a scheme", ("run", "--database-url", f"auditor:{s}@db/app")),
        Case("runs folder that is a file", ("history", "--runs-dir", "{file}")),
        Case("runs that do not exist", ("compare", "nope1", "nope2")),
        Case(
            "taken PostgreSQL port",
            ("services", "up", "--pg-port", "{taken}"),
            env={"KIT_HOME": "{fresh}"},
            taken_port=True,
            after=nothing_started,
        ),
        Case(
            "taken Redis port",
            ("services", "up", "--redis-port", "{taken}"),
            env={"KIT_HOME": "{fresh}"},
            taken_port=True,
            after=nothing_started,
        ),
        Case(
            "taken Redis port under cron's PATH",
            ("services", "up", "--redis-port", "{taken}"),
            env={"KIT_HOME": "{fresh}", "PATH": "/usr/bin:/bin"},
            taken_port=True,
            after=nothing_started,
        ),
        Case(
            "port out of range",
            ("services", "up", "--pg-port", "70000"),
            env={"KIT_HOME": "{fresh}"},
            after=nothing_started,
        ),
        Case(
            "taken metrics port",
            ("metrics", "serve", "--port", "{taken}", "--database-url", ctx.database_url),
            taken_port=True,
        ),
        Case("metrics port out of range", ("metrics", "serve", "--port", "70000")),
        Case("metrics of a database that is down", ("metrics", "serve", "--port", "0", "--database-url", down)),
        Case("unknown benchmark", ("bench", "nope")),
        Case("faults given a scale", ("bench", "faults", "--scale", "demo")),
        Case("zero users", ("load", "--users", "0")),
        Case("negative duration", ("load", "--duration", "-1")),
        Case("unknown flavor", ("load", "--flavor", "weird")),
        Case("unknown pool", ("load", "--pool", "nope")),
        Case("load on a database that is down", ("load", "--duration", "1", "--database-url", down)),
        Case("pre-flight of a database that is down", ("preflight", "--database-url", down)),
        Case("unknown command", ("nosuch",)),
    ]


def _nothing_running(home: Path) -> str:
    running = local.status(home=home)
    if running:
        local.down(home=home, purge=True)
        return f"left running: {', '.join(running)}"
    return ""


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def run_case(case: Case, ctx: Context, *, timeout: float = 180.0) -> dict[str, Any]:
    """Run one case in a folder of its own; what it printed, its exit code, what it left."""
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="kit-bad-input-") as tmp:
        work = Path(tmp)
        runs, fresh, file = work / "runs", work / "home", work / "a-file"
        file.write_text("not a folder\n")
        taken = stack.enter_context(_listening_socket()).getsockname()[1] if case.taken_port else None
        subst = {"{taken}": str(taken), "{fresh}": str(fresh), "{file}": str(file)}
        argv = [subst.get(a, a) for a in case.argv]
        if argv[0] in ("run", "compare") and "--runs-dir" not in argv:
            argv += ["--runs-dir", str(runs)]
        env = {**os.environ, "KIT_HOME": str(ctx.kit_home), **{k: subst.get(v, v) for k, v in case.env.items()}}
        for name in ("KIT_DATABASE_URL", "DATABASE_URL", "KIT_REDIS_URL", "REDIS_URL"):
            env.pop(name, None)  # the kit's own servers of KIT_HOME, or the URL the case gives
        proc = subprocess.run([KIT, *argv], capture_output=True, text=True, env=env, timeout=timeout, cwd=work)
        problems = case.after(Path(env["KIT_HOME"])) if case.after else ""
        written = sorted(
            str(p.relative_to(work))
            for p in work.rglob("*")
            if p.is_file() and p != file and not p.is_relative_to(fresh)
        )
        leaked = SECRET in proc.stdout + proc.stderr or any(
            SECRET in (work / p).read_text(errors="replace") for p in written
        )
        if runs.exists():
            problems += f" wrote {runs.name}/"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return {
        "case": case.name,
        "argv": " ".join(case.argv),
        "exit": proc.returncode,
        "lines": len(lines),
        "traceback": "Traceback (most recent call last)" in proc.stderr + proc.stdout,
        "leaked": leaked,
        "problems": problems.strip(),
        "stderr": lines[0][:200] if lines else "",
    }


def run_all(ctx: Context, *, workers: int = 2) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """``bad_inputs`` figures and every case's outcome."""
    todo = cases(ctx)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda c: run_case(c, ctx), todo))
    figures = {
        "cases": len(outcomes),
        "one_line": sum(o["lines"] == 1 for o in outcomes),
        "exit_2": sum(o["exit"] == 2 for o in outcomes),
        "passwords_leaked": sum(o["leaked"] for o in outcomes),
        "tracebacks": sum(o["traceback"] for o in outcomes),
    }
    return figures, outcomes
