"""``kit bench NAME``: run one benchmark on the kit's own servers and return its figures (talks to both).

``datagen`` measures seeding itself into a fresh database. A benchmark module that sets
``OWN_SERVERS = True`` (``faults``) starts, seeds and stops what it needs itself and takes no scale.
Every other NAME gets a fresh database seeded at ``scale`` (so benchmarks that change the
database never touch the demo one) and calls ``kit.benchmarks.NAME.run``.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from kit import benchmarks, datagen, local
from kit.db import make_engine
from kit.errors import ConfigError


def available() -> list[str]:
    return ["datagen", *sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_"))]


def run(name: str, *, scale: str | None, seed: int, home: Path) -> dict[str, Any]:
    if name not in available():
        raise ConfigError(f"unknown benchmark {name!r}; choose one of {', '.join(available())}")
    if name != "datagen":
        module = importlib.import_module(f"kit.benchmarks.{name}")
        if getattr(module, "OWN_SERVERS", False):
            if scale is not None:
                raise ConfigError(f"kit bench {name} seeds what it needs itself; drop --scale")
            return {"benchmark": name, "seed": seed, **module.run(home=home, seed=seed)}
    scale = scale or "demo"
    if scale not in datagen.SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(datagen.SCALES)}")
    servers = local.up(home=home)
    url = local.create_database(servers["postgres"], f"bench_{name}_{scale}", replace=True)
    engine = make_engine(url)
    try:
        result = datagen.seed(engine, scale=scale, seed=seed)
    finally:
        engine.dispose()
    if name == "datagen":
        return result.to_dict()
    figures = module.run(database_url=url, redis_url=servers["redis"].url, scale=scale, seed=seed)
    return {"benchmark": name, "scale": scale, "seed": seed, **figures}

