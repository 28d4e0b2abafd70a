"""``kit.record(name, value)``: the headline figures a notebook reports to ``kit run`` (pure I/O on the run folder).

Inside ``kit run`` each record is appended to ``records.jsonl`` in the run folder; the runner
gathers them into ``summary.json``. Outside a run, recording only checks and returns the value,
so a notebook runs the same in JupyterLab.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from kit.config import kit_home, run_dir

RECORDS_FILE = "records.jsonl"


def record(name: str, value: Any) -> Any:
    """Record a headline figure under ``name`` and return ``value`` (a JSON scalar, list or dict)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a record name must be a non-empty str, not {name!r}")
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    line = json.dumps({"name": name, "value": value}, default=jsonable)
    folder = run_dir()
    if folder is not None:
        with open(Path(folder) / RECORDS_FILE, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return value


def jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / pandas scalars
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot record a value of type {type(value).__name__}; record a number, str, list or dict")


def read_records(folder: Path) -> list[dict[str, Any]]:
    path = Path(folder) / RECORDS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def artifact_path(name: str) -> Path:
    """Where a notebook leaves a result for a later notebook of the same run (e.g. 02's
    measurements for 03's charts): the run folder inside ``kit run``, else ``.kit/artifacts``."""
    folder = run_dir() or kit_home() / "artifacts"
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / name


def save_json(name: str, value: Any) -> Path:
    path = artifact_path(f"{name}.json")
    path.write_text(json.dumps(value, default=jsonable), encoding="utf-8")
    return path
