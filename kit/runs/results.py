"""What 01 and 02 measured, handed to 03 as one typed object instead of named files (pure I/O on the
run folder; ``.kit/artifacts`` outside ``kit run``).

    results = RunResults()                          # in 01 / 02
    results.save(nplus1_naive=naive.to_frame())     # a field name that does not exist is an error
    results = RunResults()                          # in 03
    results.nplus1_naive                            # a DataFrame, read back with its types

Each field is kept in its own JSON file as soon as it is saved, so a notebook that stops half-way
leaves what it measured; reading a field that no earlier notebook saved raises one
:class:`~kit.errors.ConfigError` naming the notebook to run.
"""

from __future__ import annotations

import functools
import io
import json
import typing
from pathlib import Path
from typing import Any

import pandas as pd

from kit.errors import ConfigError
from kit.indexes.verify import VerifyResult
from kit.store.records import artifact_path, jsonable


@functools.cache
def _fields(cls: type) -> dict[str, type]:
    """The annotated fields of ``cls``, evaluated once (every attribute read looks them up)."""
    return typing.get_type_hints(cls)


class RunResults:
    """The typed results of a run; each attribute is read from the run folder on first use."""

    # 01_audit
    diagnosis: pd.DataFrame  # why each top statement is slow: key, cause, sentence, remedy, fix, wait shares
    nplus1_naive: pd.DataFrame  # one row per request of the naive endpoints
    cache_stale_seed: dict  # stale reads of the seed's cache (no invalidation)
    load_baseline: pd.DataFrame  # one row per request of the naive load run
    load_baseline_resources: pd.DataFrame  # RSS / CPU samples of that run
    # 02_apply_fixes
    nplus1_batched: pd.DataFrame
    nplus1_writes: dict
    indexes_verify: VerifyResult
    cache_stale_fixed: dict
    cache_hits: dict
    load_fixed: pd.DataFrame
    load_fixed_resources: pd.DataFrame
    pool_sweep: pd.DataFrame
    pool_pick: dict  # {"p95_target_ms", "recommended_size"}
    ingest: pd.DataFrame

    def __init__(self, folder: str | Path | None = None) -> None:
        self._folder = Path(folder) if folder is not None else None
        self._values: dict[str, Any] = {}

    @classmethod
    def fields(cls) -> dict[str, type]:
        # as a plain ``type``: mypy checks ``type[Self]`` against functools.cache's Hashable through
        # the instances' __hash__ and refuses it, though every class is hashable
        klass: type = cls
        return _fields(klass)

    def _path(self, name: str) -> Path:
        if self._folder is not None:
            return self._folder / f"{name}.json"
        return artifact_path(f"{name}.json")

    def save(self, **values: Any) -> None:
        """Keep each named result for the later notebooks of this run."""
        kinds = self.fields()
        for name, value in values.items():
            if name not in kinds:
                raise TypeError(f"RunResults has no field {name!r}; the fields: {', '.join(kinds)}")
            if not isinstance(value, kinds[name]):
                raise TypeError(f"RunResults.{name} takes a {kinds[name].__name__}, not {type(value).__name__}")
        for name, value in values.items():
            path = self._path(name)
            if isinstance(value, pd.DataFrame):
                text = value.reset_index(drop=True).to_json(orient="table", date_format="iso")
                path.write_text(text, encoding="utf-8")
            elif isinstance(value, VerifyResult):
                value.save(path)
            else:
                path.write_text(json.dumps(value, default=jsonable), encoding="utf-8")
            self._values[name] = value

    def __getattr__(self, name: str) -> Any:
        kinds = type(self).fields()
        if name.startswith("_") or name not in kinds:
            raise AttributeError(f"RunResults has no field {name!r}")
        if name not in self._values:
            path = self._path(name)
            if not path.exists():
                raise ConfigError(
                    f"no result {name} in {path.parent}; run 01_audit and 02_apply_fixes first "
                    "(kit run runs them in order)"
                )
            if kinds[name] is pd.DataFrame:
                self._values[name] = pd.read_json(io.StringIO(path.read_text(encoding="utf-8")), orient="table")
            elif kinds[name] is VerifyResult:
                self._values[name] = VerifyResult.load(path)
            else:
                self._values[name] = json.loads(path.read_text(encoding="utf-8"))
        return self._values[name]

    def __contains__(self, name: str) -> bool:
        return name in self._values or self._path(name).exists()
