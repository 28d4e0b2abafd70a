"""For ``pytest -p nbval notebooks``: the notebooks run against a throwaway database seeded at tiny.

Kernels inherit the environment, so before a notebook's first cell starts its kernel the servers are
up and the variables set; they are set only while a notebook cell runs (a pytest process that also
runs the unit tests, as ``make test`` does with pytest-xdist, keeps its own environment for them).
The notebooks read what the earlier ones measured, so they run in order in one process (under
pytest-xdist too: tests/conftest.py schedules them together). The servers stop when the session ends.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from kit.db.engine import make_engine
from kit.errors import KitError
from kit.platform import datagen
from kit.servers import local

HERE = Path(__file__).parent
_prepared: dict[str, str] = {}  # the variables the kernels get, once the servers are up
_saved: dict[str, str | None] = {}
_failed: list[str] = []  # why the servers could not start: said once per cell, tried once


def _ours(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).parents


def _prepare(config: pytest.Config) -> dict[str, str]:
    if _failed:
        pytest.fail(_failed[0], pytrace=False)
    if not _prepared:
        home = Path(tempfile.mkdtemp(prefix="kit-nbval-"))
        config._kit_home = home
        try:
            servers = local.up(home=home)
            url = local.create_database(servers["postgres"], "nbval", replace=True)
            engine = make_engine(url)
            try:
                datagen.seed(engine, scale="tiny", seed=42, progress=False)
            finally:
                engine.dispose()
        except KitError as exc:
            _failed.append(f"cannot prepare the notebooks' database: {exc}")
            pytest.fail(_failed[0], pytrace=False)
        _prepared.update(KIT_DATABASE_URL=url, KIT_REDIS_URL=servers["redis"].url, KIT_HOME=str(home))
    return _prepared


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _ours(item):  # before nbval's own setup, which starts the notebook's kernel
        env = _prepare(item.config)
        _saved.update({name: os.environ.get(name) for name in env})
        os.environ.update(env)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _ours(item) and _saved:
        for name, value in _saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _saved.clear()


def pytest_sessionfinish(session: pytest.Session) -> None:
    home = getattr(session.config, "_kit_home", None)
    if home is not None:
        local.down(home=home, purge=True)
