"""``kit bench NAME``: run one benchmark on the kit's own servers and return its figures (talks to both).

``datagen`` measures seeding itself into a fresh database. The benchmarks in ``STANDALONE``
(``faults``, ``fleet``) start or build what they need themselves and take no scale. Every other
NAME gets a fresh database seeded at ``scale`` (so benchmarks that change the database never touch
the demo one) and calls ``kit.benchmarks.NAME.run``; a module with ``SEEDS_PLATFORM = False``
(``anydb``, ``advisor``) gets that database empty and builds its own schema, sized by the scale; a
module with ``TAKES_SF = True`` (``advisor``: TPC-H) takes a scale factor ``sf`` instead, and the
others refuse one.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from kit import benchmarks
from kit.db.engine import make_engine
from kit.errors import ConfigError
from kit.platform import datagen
from kit.servers import local

# benchmarks that start or build what they need themselves (no --scale): name -> module with run(seed=, home=)
STANDALONE = {"faults": "kit.benchmarks.faults", "fleet": "kit.fleet.bench"}
DEFAULT_SCALE = "demo"


def available() -> list[str]:
    scaled = (
        m.name
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if not m.name.startswith("_") and m.name not in STANDALONE
    )
    return ["datagen", *sorted(scaled), *STANDALONE]


def run(name: str, *, scale: str | None, seed: int, home: Path, sf: float | None = None) -> dict[str, Any]:
    if name not in available():
        raise ConfigError(f"unknown benchmark {name!r}; choose one of {', '.join(available())}")
    module = importlib.import_module(f"kit.benchmarks.{name}") if name not in ("datagen", *STANDALONE) else None
    takes_sf = getattr(module, "TAKES_SF", False)
    if sf is not None and not takes_sf:
        raise ConfigError(f"kit bench {name} has no TPC-H scale factor; drop --sf")
    if name in STANDALONE:
        if scale is not None:
            raise ConfigError(f"kit bench {name} builds what it needs itself; drop --scale")
        return {"benchmark": name, "seed": seed, **importlib.import_module(STANDALONE[name]).run(seed=seed, home=home)}
    scale = scale or DEFAULT_SCALE
    if scale not in datagen.SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(datagen.SCALES)}")
    servers = local.up(home=home)
    url = local.create_database(servers["postgres"], f"bench_{name}_{scale}", replace=True)
    if getattr(module, "SEEDS_PLATFORM", True):
        engine = make_engine(url)
        try:
            result = datagen.seed(engine, scale=scale, seed=seed)
        finally:
            engine.dispose()
        if module is None:
            return result.to_dict()
    extra = {"sf": sf if sf is not None else module.DEFAULT_SF} if takes_sf else {}
    figures = module.run(database_url=url, redis_url=servers["redis"].url, scale=scale, seed=seed, **extra)
    return {"benchmark": name, "scale": scale, "seed": seed, **figures}
