"""dbperf kit: audit a PostgreSQL-backed application, apply the fixes, chart the improvement.

Importing ``kit`` is cheap; the notebook helpers load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "open_session", "record"]


def __getattr__(name: str):
    if name == "record":
        from kit.store.records import record

        return record
    if name == "open_session":
        from kit.runs.notebook import open_session

        return open_session
    raise AttributeError(f"module 'kit' has no attribute {name!r}")
