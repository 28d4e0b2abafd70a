"""For ``pytest -p nbval notebooks``: the notebooks run against a throwaway database seeded at tiny.

Kernels inherit the environment, so the servers are started and the variables exported
before the first notebook starts, and stopped when the session ends.
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


def pytest_sessionstart(session: pytest.Session) -> None:
    home = Path(tempfile.mkdtemp(prefix="kit-nbval-"))
    session.config._kit_home = home
    try:
        servers = local.up(home=home)
        url = local.create_database(servers["postgres"], "nbval", replace=True)
        engine = make_engine(url)
        try:
            datagen.seed(engine, scale="tiny", seed=42, progress=False)
        finally:
            engine.dispose()
    except KitError as exc:
        raise pytest.UsageError(f"cannot prepare the notebooks' database: {exc}") from exc
    os.environ.update(KIT_DATABASE_URL=url, KIT_REDIS_URL=servers["redis"].url, KIT_HOME=str(home))


def pytest_sessionfinish(session: pytest.Session) -> None:
    home = getattr(session.config, "_kit_home", None)
    if home is not None:
        local.down(home=home, purge=True)
