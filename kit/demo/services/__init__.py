"""The seed platform's service layer, twice: :mod:`~kit.demo.services.naive` as the audit found it and
:mod:`~kit.demo.services.batched` fixed, with identical signatures and results (talks to PostgreSQL).

    from kit.demo.services import naive, batched
    with engine.connect() as conn:
        assert naive.list_users(conn, page=1, per_page=20) == batched.list_users(conn, page=1, per_page=20)
"""

from __future__ import annotations

from kit.demo.services import batched, naive

ENDPOINTS = (
    "search_projects",
    "list_users",
    "list_projects",
    "get_project",
    "get_reconciliation_jobs",
    "update_project",
    "run_reconciliation_job",
)
IMPLEMENTATIONS = {"naive": naive, "batched": batched}

__all__ = ["ENDPOINTS", "IMPLEMENTATIONS", "batched", "naive"]
