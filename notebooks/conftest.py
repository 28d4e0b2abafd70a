"""For ``pytest -p nbval notebooks``: the notebooks run against a throwaway database seeded at tiny.

Kernels inherit the environment, so before a notebook's first cell starts its kernel the servers are
up and the variables set; they are set only while a notebook cell runs (a pytest process that also
runs the unit tests, as ``make test`` does with pytest-xdist, keeps its own environment for them).
The notebooks read what the earlier ones measured, so they run in order in one process (under
pytest-xdist too: tests/conftest.py schedules them together). The servers stop when the session ends.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from kit.db.engine import make_engine
from kit.errors import KitError
from kit.demo import datagen
from kit.servers import local

HERE = Path(__file__).parent
_env: dict[str, str] = {}  # the variables the kernels get, once the servers are up
_homes: list[Path] = []  # the servers' home, stopped when the session ends
_failed: list[str] = []  # why the servers could not start: said once per cell, tried once
_patch = pytest.MonkeyPatch()  # sets the variables while a notebook cell runs, then puts back what was there


def _ours(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).parents


def _prepare() -> dict[str, str]:
    if _failed:
        pytest.fail(_failed[0], pytrace=False)
    if not _env:
        home = Path(tempfile.mkdtemp(prefix="kit-nbval-"))
        _homes.append(home)
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
        _env.update(KIT_DATABASE_URL=url, KIT_REDIS_URL=servers["redis"].url, KIT_HOME=str(home))
    return _env


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _ours(item):  # before nbval's own setup, which starts the notebook's kernel
        for name, value in _prepare().items():
            _patch.setenv(name, value)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _ours(item):
        _patch.undo()


def pytest_sessionfinish(session: pytest.Session) -> None:
    for home in _homes:
        local.down(home=home, purge=True)
