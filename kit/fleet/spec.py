"""The fleet file: which databases to audit, how, how many at once and when (pure: reads one TOML file).

A fleet file names each target's database by the *environment variable* that holds its URL, never by
the URL itself; everything is checked when the file is loaded, and any mistake is one
:class:`~kit.errors.ConfigError` line naming the file, the target and what to write instead::

    [fleet]
    name = "production"            # tags the Dagster runs (default: the file's name)
    runs_dir = "runs"              # relative to this file: runs/<target>/<UTC timestamp>/
    concurrency = 2                # at most this many targets audited at once
    schedule = "0 2 * * *"         # the Dagster schedule (cron), in `timezone`
    timezone = "UTC"
    notebooks = ["01_audit.ipynb"] # what runs per target (default: the read-only audit)
    fail_on = ["new_missing_indexes>0", "new_invalid_indexes>0"]  # kit.runs.gate rules, per target
    timeout_s = 1800               # per notebook cell

    [fleet.parameters]             # notebook parameters for every target
    load_seconds = 1.0

    [[targets]]
    name = "orders"
    url_env = "ORDERS_DATABASE_URL"

    [[targets]]
    name = "billing"
    url_env = "BILLING_DATABASE_URL"
    notebooks = ["01_audit.ipynb", "02_apply_fixes.ipynb"]  # replaces the fleet's list
    fail_on = ["new_duplicate_indexes>0"]                    # replaces the fleet's rules
    parameters = { load_users = 2 }                          # merged over the fleet's

A target's ``notebooks`` and ``fail_on`` replace the fleet's defaults (what runs is then read in one
place); its ``parameters`` are merged over the fleet's. ``database_env`` is not a parameter here:
``url_env`` sets it.
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kit.config import mask_url
from kit.errors import ConfigError
from kit.runs import gate
from kit.runs.parameters import NOTEBOOKS_DIR, validate_parameters

DEFAULT_NOTEBOOKS = ("01_audit.ipynb",)
DEFAULT_FAIL_ON = ("new_missing_indexes>0", "new_invalid_indexes>0")
DEFAULT_SCHEDULE = "0 2 * * *"
REPORT_DIR = "_fleet"  # runs/_fleet/<ts>/ holds the fleet reports; no target can be named so

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")
_FLEET_KEYS = (
    "name",
    "runs_dir",
    "concurrency",
    "schedule",
    "timezone",
    "notebooks",
    "fail_on",
    "parameters",
    "timeout_s",
)
_TARGET_KEYS = ("name", "url_env", "notebooks", "fail_on", "parameters")
_URL_KEYS = ("url", "database_url", "dsn", "uri", "connection_string")
_SECRET = re.compile(r"://|password\s*=", re.I)


@dataclass(frozen=True)
class Target:
    """One database of the fleet."""

    name: str
    url_env: str  # the environment variable holding its URL
    notebooks: tuple[str, ...]
    fail_on: tuple[str, ...]
    parameters: dict[str, Any] = field(default_factory=dict, hash=False)

    def run_parameters(self) -> dict[str, Any]:
        """The notebook parameters of its runs: its own, and the variable its notebooks read the URL from."""
        return {**self.parameters, "database_env": self.url_env}


@dataclass(frozen=True)
class Fleet:
    """A loaded, checked fleet file."""

    name: str
    path: Path  # the fleet file, absolute
    runs_dir: Path  # absolute; a target's runs go to runs_dir/<target>/
    concurrency: int
    schedule: str
    timezone: str
    timeout_s: int
    targets: tuple[Target, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets)

    @property
    def report_dir(self) -> Path:
        return self.runs_dir / REPORT_DIR

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise ConfigError(f"no target {name!r} in {self.path.name}; its targets are: {', '.join(self.names)}")

    def select(self, names: tuple[str, ...] | list[str] | None = None) -> tuple[Target, ...]:
        """The targets named (all when ``names`` is empty), in the file's order."""
        if not names:
            return self.targets
        wanted = {self.target(n).name for n in names}
        return tuple(t for t in self.targets if t.name in wanted)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "target": t.name,
                    "url_env": t.url_env,
                    "notebooks": ", ".join(t.notebooks),
                    "fail_on": ", ".join(t.fail_on),
                    "parameters": t.parameters,
                }
                for t in self.targets
            ],
            columns=["target", "url_env", "notebooks", "fail_on", "parameters"],
        )


def load(path: str | Path, *, check_parameters: bool = True) -> Fleet:
    """Read and check a fleet file; any mistake is one ConfigError line. With ``check_parameters``
    each target's parameters are checked against the notebooks it runs (papermill's inspection)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"fleet file not found: {path}; write one (see the README's Scheduling section)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path.name}: not a text file; a fleet file is TOML") from None
    fleet = parse(raw, path=path)
    if check_parameters:
        _check_parameters(fleet)
    return fleet


def parse(raw: dict[str, Any], *, path: Path) -> Fleet:
    """A Fleet from the TOML document ``raw`` of the file at ``path`` (pure)."""
    where = path.name
    _no_secrets(raw, where)
    _known(raw, ("fleet", "targets"), where)
    top = _table(raw.get("fleet", {}), f"{where}: [fleet]")
    _known(top, _FLEET_KEYS, f"{where}: [fleet]")
    name = _str(top.get("name", _default_name(path)), f"{where}: [fleet] name")
    if not _NAME.match(name):
        raise ConfigError(
            f"{where}: [fleet] name {name!r} must be lowercase letters, digits, '-' or '_' (it tags the Dagster runs)"
        )
    notebooks = _notebooks(top.get("notebooks", list(DEFAULT_NOTEBOOKS)), f"{where}: [fleet] notebooks")
    fail_on = _rules(top.get("fail_on", list(DEFAULT_FAIL_ON)), f"{where}: [fleet] fail_on")
    parameters = _parameters(top.get("parameters", {}), f"{where}: [fleet] parameters")
    targets = raw.get("targets")
    if not isinstance(targets, list) or not targets:
        raise ConfigError(f"{where}: no targets; add one [[targets]] table per database with name and url_env")
    parsed: list[Target] = []
    for i, entry in enumerate(targets):
        parsed.append(_target(entry, f"{where}: targets[{i}]", notebooks, fail_on, parameters))
    seen: set[str] = set()
    for t in parsed:
        if t.name in seen:
            raise ConfigError(f"{where}: target name {t.name!r} is used twice; each target needs its own name")
        seen.add(t.name)
    runs_dir = Path(_str(top.get("runs_dir", "runs"), f"{where}: [fleet] runs_dir"))
    return Fleet(
        name=name,
        path=path,
        runs_dir=(runs_dir if runs_dir.is_absolute() else path.parent / runs_dir).resolve(),
        concurrency=_positive(top.get("concurrency", 1), f"{where}: [fleet] concurrency"),
        schedule=_cron(top.get("schedule", DEFAULT_SCHEDULE), f"{where}: [fleet] schedule"),
        timezone=_zone(top.get("timezone", "UTC"), f"{where}: [fleet] timezone"),
        timeout_s=_positive(top.get("timeout_s", 1800), f"{where}: [fleet] timeout_s"),
        targets=tuple(parsed),
    )


def _default_name(path: Path) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", path.stem.lower()).strip("-") or "fleet"


def _target(
    entry: Any, where: str, notebooks: tuple[str, ...], fail_on: tuple[str, ...], parameters: dict[str, Any]
) -> Target:
    entry = _table(entry, where)
    name = entry.get("name")
    if isinstance(name, str) and name:
        where = f"{where} ({name})"
    for key in entry:
        if key.lower() in _URL_KEYS:
            raise ConfigError(
                f"{where}: a URL never goes in the fleet file ({key} = ...); export it in an "
                "environment variable and name that variable with url_env"
            )
    _known(entry, _TARGET_KEYS, where)
    name = _str(name, f"{where}: name")
    if not _NAME.match(name):
        raise ConfigError(
            f"{where}: name {name!r} must be 1-63 lowercase letters, digits, '-' or '_', starting "
            "with a letter or digit (it names the target's run folder and Dagster partition)"
        )
    url_env = _str(entry.get("url_env"), f"{where}: url_env")
    if not _ENV_NAME.match(url_env):
        raise ConfigError(
            f"{where}: url_env {url_env!r} is not an environment variable name; write e.g. "
            f'url_env = "{name.upper().replace("-", "_")}_DATABASE_URL"'
        )
    own = _parameters(entry.get("parameters", {}), f"{where}: parameters")
    return Target(
        name=name,
        url_env=url_env,
        notebooks=_notebooks(entry["notebooks"], f"{where}: notebooks") if "notebooks" in entry else notebooks,
        fail_on=_rules(entry["fail_on"], f"{where}: fail_on") if "fail_on" in entry else fail_on,
        parameters={**parameters, **own},
    )


def _no_secrets(value: Any, where: str, key: str = "") -> None:
    """A URL or a password anywhere in the file is refused before anything else is read."""
    if isinstance(value, dict):
        for k, v in value.items():
            _no_secrets(v, where, f"{key}.{k}" if key else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_secrets(v, where, f"{key}[{i}]")
    elif isinstance(value, str) and _SECRET.search(value):
        raise ConfigError(
            f"{where}: {key} holds a URL or password ({mask_url(value)!r}); the fleet file names "
            'environment variables only: export the URL and write url_env = "THAT_VARIABLE"'
        )


def _known(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; expected one of {', '.join(allowed)}")


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, not {type(value).__name__}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string" + ("" if value is None else f", not {value!r}"))
    return value.strip()


def _positive(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a whole number >= 1, not {value!r}")
    return value


def _notebooks(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{where} must be a non-empty list of notebook file names, e.g. ["01_audit.ipynb"]')
    for name in value:
        if "/" in name or not (NOTEBOOKS_DIR / name).is_file():
            shipped = sorted(p.name for p in NOTEBOOKS_DIR.glob("0*.ipynb"))
            raise ConfigError(f"{where}: no notebook {name!r}; the kit ships {', '.join(shipped)}")
    return tuple(value)


def _rules(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{where} must be a list of rules, e.g. ["new_missing_indexes>0"]')
    for text in value:
        try:
            gate.parse_rule(text)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(v.strip() for v in value)


def _parameters(value: Any, where: str) -> dict[str, Any]:
    value = _table(value, where)
    if "database_env" in value:
        raise ConfigError(f"{where}: database_env is set by the target's url_env; remove it here")
    for k, v in value.items():
        if not isinstance(v, (str, int, float, bool, list)):
            raise ConfigError(f"{where}: {k} must be a string, number, boolean or list, not {type(v).__name__}")
    return dict(value)


def _cron(value: Any, where: str) -> str:
    text = _str(value, where)
    fields = text.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ConfigError(
            f'{where} {text!r} is not a cron expression of 5 fields (minute hour day month weekday), e.g. "0 2 * * *"'
        )
    return " ".join(fields)


def _zone(value: Any, where: str) -> str:
    text = _str(value, where)
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f'{where} {text!r} is not a time zone name, e.g. "UTC" or "Europe/Berlin"') from None
    return text


def _check_parameters(fleet: Fleet) -> None:
    """Each target's parameters against the notebooks it runs (the runner's own check)."""
    for t in fleet.targets:
        try:
            validate_parameters(t.run_parameters(), [NOTEBOOKS_DIR / n for n in t.notebooks])
        except ConfigError as exc:
            raise ConfigError(f"{fleet.path.name}: target {t.name}: {exc}") from None
