"""Load: the platform's endpoint mix driven by Locust in processes of their own, open or closed model
(:mod:`kit.demo.load.engine`), pools and their sizing (:mod:`kit.demo.load.pool`), results from raw samples
(:mod:`kit.demo.load.stats`), and an in-process thread engine for closures (:mod:`kit.demo.load.threads`).

Nothing here imports gevent: Locust's processes import :mod:`kit.demo.load.locustfile`, never a kernel.
"""

from kit.demo.load.mix import FLAVORS, MIX, Endpoint, EndpointSet, seed_endpoints
from kit.demo.load.stats import MODELS, QUANTILES, LoadResult, latency_summary
from kit.demo.load.threads import PoolMonitor, run_load

__all__ = [
    "FLAVORS",
    "MIX",
    "MODELS",
    "QUANTILES",
    "Endpoint",
    "EndpointSet",
    "LoadResult",
    "PoolMonitor",
    "latency_summary",
    "run_load",
    "seed_endpoints",
]
