"""``kit bench NAME``: run one benchmark module on the kit's own servers and return its figures (talks to both).

A benchmark is a module with ``run(...) -> dict`` and a few attributes that say what it needs:

- ``STANDALONE = True``: it starts or builds what it needs itself, ``run(*, seed, home)``, no scale;
- otherwise it gets a fresh, empty database on the kit's server, ``run(*, database_url, redis_url,
  scale, seed)``; ``SCALES`` names the scales it accepts (the first is the default) and a module
  that seeds a schema does so itself;
- ``TAKES_SF = True`` (TPC-H): a scale factor ``sf`` too, ``DEFAULT_SF`` when none is given.

Which module runs which NAME is the caller's table (``kit.cli.BENCHMARKS``): this module imports none.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from kit.errors import ConfigError
from kit.servers import local


def run(
    name: str, module: ModuleType, *, scale: str | None, seed: int, home: Path, sf: float | None = None
) -> dict[str, Any]:
    takes_sf = getattr(module, "TAKES_SF", False)
    if sf is not None and not takes_sf:
        raise ConfigError(f"kit bench {name} has no TPC-H scale factor; drop --sf")
    if getattr(module, "STANDALONE", False):
        if scale is not None:
            raise ConfigError(f"kit bench {name} builds what it needs itself; drop --scale")
        return {"benchmark": name, "seed": seed, **module.run(seed=seed, home=home)}
    scales: tuple[str, ...] = module.SCALES
    scale = scale or scales[0]
    if scale not in scales:
        raise ConfigError(f"unknown scale {scale!r} for kit bench {name}; choose one of {', '.join(scales)}")
    servers = local.up(home=home)
    url = local.create_database(servers["postgres"], f"bench_{name}_{scale}", replace=True)
    extra = {"sf": sf if sf is not None else module.DEFAULT_SF} if takes_sf else {}
    figures = module.run(database_url=url, redis_url=servers["redis"].url, scale=scale, seed=seed, **extra)
    return {"benchmark": name, "scale": scale, "seed": seed, **figures}
