"""Benchmarks run by ``kit bench NAME``: one module per NAME with ``run(...) -> dict``.

Each ``run(*, database_url, redis_url, scale, seed)`` receives a database already seeded at
``scale`` and returns a JSON-ready dict; both sides of every ratio are measured in the same run.
"""
