"""The notebook parameters of ``kit run``, checked before anything runs (no database: reads the
notebooks' ``parameters`` cells, and the run folder the ``plan`` parameter names).

papermill injects whatever it is given; this module is what stands between a command line and a
kernel: each parameter must be declared by one of the notebooks (:func:`declared_parameters`), is
converted to the declared type (:func:`coerce`: strings from the command line), must lie in its
range or among its choices (:func:`check_value`: RANGES, CHOICES), and never carries a secret or
a URL. :func:`validate_parameters` does all of it and says which notebook gets which parameter.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from kit.config import looks_secret, mask_url, shipped
from kit.errors import ConfigError, KitError, ParameterError
from kit.store.history import resolve_run

NOTEBOOKS = ("01_audit.ipynb", "02_apply_fixes.ipynb", "03_report.ipynb")
NOTEBOOKS_DIR = shipped("notebooks")

# What a value may be, by parameter name, in whichever notebook declares it (papermill checks
# nothing; the type check below only the type): inclusive numeric ranges, allowed choices.
RANGES: dict[str, tuple[float, float]] = {
    "load_users": (1, 10_000),
    "load_seconds": (0.1, 3_600),
    "last_runs": (1, 10_000),
    "top_statements": (1, 500),
    "repeats": (1, 1_000),
    "min_calls": (1, 1_000_000_000),
    "index_budget_mb": (0, 100_000_000),
    "wait_sample_s": (0, 600),
}
CHOICES: dict[str, tuple[str, ...]] = {"scale": ("tiny", "demo", "large")}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# papermill's inferred type names -> the Python types a value may have
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "bool": (bool,),
    "int": (int,),
    "float": (float, int),
    "list": (list,),
    "dict": (dict,),
}


def declared_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """The parameters a notebook declares in its ``parameters`` cell: name -> {type, default}."""
    expected = f"expected one of {', '.join(NOTEBOOKS)} in {NOTEBOOKS_DIR}"
    if Path(path).suffix != ".ipynb":
        raise ConfigError(f"not a notebook: {path} (not an .ipynb file); {expected}")
    if not Path(path).is_file():
        raise ConfigError(f"notebook not found: {path}; {expected}")
    import papermill  # with nbformat's validator: ~1 s, paid only when a notebook is read

    try:
        found = papermill.inspect_notebook(str(path))
    except Exception as exc:  # nbformat/JSON errors of assorted types: the file is not a notebook
        raise ConfigError(f"not a notebook: {path} cannot be read as one ({type(exc).__name__}); {expected}") from None
    return {name: {"type": _type_name(p), "default": p["default"]} for name, p in found.items()}


def _type_name(param: dict[str, Any]) -> str:
    """The annotated type, else the type of the literal default (papermill infers only annotations)."""
    if param["inferred_type_name"] not in {"None", None}:
        return param["inferred_type_name"]
    try:
        return type(ast.literal_eval(param["default"])).__name__
    except (ValueError, SyntaxError):
        return "None"


def coerce(name: str, value: Any, type_name: str) -> Any:
    """``value`` as the declared type; strings from the command line are converted, others checked."""
    if isinstance(value, str) and type_name != "str":
        value = _parse(name, value, type_name)
    allowed = _TYPES.get(type_name)
    if allowed is None:
        return value
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        raise ParameterError(f"parameter {name} expects {type_name}, got {type(value).__name__} {value!r}")
    return value


def _parse(name: str, raw: str, type_name: str) -> Any:
    try:
        if type_name == "bool":
            lowered = raw.strip().lower()
            if lowered in {"true", "1", "yes", "on"}:
                return True
            if lowered in {"false", "0", "no", "off"}:
                return False
            raise ValueError(raw)
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name in {"list", "dict"}:
            return json.loads(raw)
    except ValueError:
        raise ParameterError(f"parameter {name} expects {type_name}, got {raw!r}") from None
    return raw


def validate_parameters(
    parameters: dict[str, Any], notebooks: list[Path], *, runs_dir: Path = Path("runs")
) -> dict[Path, dict[str, Any]]:
    """Per notebook, the parameters it declares, typed; an unknown or ill-typed one is an error."""
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    known = {name: spec["type"] for params in declared.values() for name, spec in params.items()}
    for name, value in parameters.items():
        if name not in known:
            raise ParameterError(f"unknown parameter {name!r}; the notebooks declare: {', '.join(sorted(known))}")
        text = json.dumps(value, default=str) if not isinstance(value, str) else value
        if looks_secret(text):  # parameter values are written into the executed notebooks
            raise ParameterError(
                f"parameter {name} holds a password; secrets never travel as parameters: "
                "put it in an environment variable and pass the variable's name instead"
            )
        if "://" in text:
            raise ParameterError(
                f"parameter {name} looks like a URL ({mask_url(text)}); pass URLs through "
                "the environment (KIT_DATABASE_URL) and name the variable instead"
            )
    typed = {name: check_value(name, coerce(name, value, known[name])) for name, value in parameters.items()}
    if typed.get("migrations"):
        typed["migrations"] = _migrations_path(typed["migrations"])
    if typed.get("plan"):
        typed["plan"] = _plan_path(typed["plan"], runs_dir)
    return {nb: {k: v for k, v in typed.items() if k in params} for nb, params in declared.items()}


def _migrations_path(value: str) -> str:
    """The ``migrations`` parameter as an absolute path (the kernels run in the notebooks' folder)."""
    path = Path(value).expanduser().resolve()
    if not path.exists():
        raise ParameterError(
            f"parameter migrations names {value}, which does not exist; give a .sql file or a folder of .sql files"
        )
    return str(path)


def _plan_path(value: str, runs_dir: Path) -> str:
    """The ``plan`` parameter as the absolute folder of a dry run that wrote a plan (``latest``,
    ``previous``, a folder name under ``runs_dir`` or a path)."""
    try:
        folder = resolve_run(value, runs_dir=runs_dir)
    except KitError as exc:
        raise ParameterError(f"parameter plan: {exc}") from None
    if not (folder / "loop.json").exists():
        raise ParameterError(
            f"parameter plan names run {folder.name}, which planned no fixes (no loop.json); "
            "give the folder of a dry run of 02_apply_fixes"
        )
    return str(folder.resolve())


def check_value(name: str, value: Any) -> Any:
    """``value`` if it is in the range or among the choices of parameter ``name`` (see RANGES, CHOICES)."""
    if name in RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = RANGES[name]
        if not low <= value <= high:
            raise ParameterError(f"parameter {name} must be between {low:g} and {high:g}, got {value!r}")
    if name in CHOICES and value not in CHOICES[name]:
        raise ParameterError(f"parameter {name} must be one of {', '.join(CHOICES[name])}, got {value!r}")
    if name.endswith("_env") and isinstance(value, str) and not _ENV_NAME.fullmatch(value):
        raise ParameterError(f"parameter {name} names an environment variable (like KIT_DATABASE_URL), got {value!r}")
    return value
