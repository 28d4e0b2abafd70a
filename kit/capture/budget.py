"""Query budgets for tests: a context manager and a pytest plugin (talks to PostgreSQL only through
the code under test).

    with assert_max_queries(engine, 2, max_repeats=1):
        batched.search_projects(conn, query="acme", page=1, per_page=20)

raises :class:`kit.errors.QueryBudgetExceeded` (an AssertionError, so pytest reports a failure)
when more statements ran than allowed, or one fingerprint repeated more than ``max_repeats``
times. The message reads like pytest-django's: expected and actual counts, the most repeated
fingerprints, then the statements.

Installed with the kit, the ``pytest11`` entry point registers this module as a plugin: any test
suite gets the ``assert_max_queries`` and ``assert_num_queries`` fixtures without a conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from sqlalchemy import Connection, Engine

from kit.capture.recorder import QueryLog, capture
from kit.errors import QueryBudgetExceeded

_LIST_AT_MOST = 20  # statements listed in a failure message
_TOP = 3  # repeated fingerprints listed in a failure message


@contextmanager
def assert_max_queries(
    target: Engine | Connection, n: int, *, max_repeats: int | None = None, exact: bool = False
) -> Iterator[QueryLog]:
    """Fail when the block runs more than ``n`` statements on ``target`` (exactly ``n`` with
    ``exact=True``), or one fingerprint more than ``max_repeats`` times."""
    _check_budget("n", n, minimum=0)
    if max_repeats is not None:
        _check_budget("max_repeats", max_repeats, minimum=1)
    with capture(target) as log:
        yield log
    # only reached when the block did not raise: its own error is the more useful one
    message = budget_violation(log, n, max_repeats=max_repeats, exact=exact)
    if message:
        raise QueryBudgetExceeded(message)


def assert_num_queries(target: Engine | Connection, n: int) -> AbstractContextManager[QueryLog]:
    """Fail unless the block runs exactly ``n`` statements on ``target``."""
    return assert_max_queries(target, n, exact=True)


def budget_violation(log: QueryLog, n: int, *, max_repeats: int | None = None, exact: bool = False) -> str | None:
    """The failure message for ``log`` against the budget, or None when it is kept."""
    done = len(log)
    top = log.top_fingerprints(_TOP)
    if exact and done != n:
        head = f"expected {n} queries, {done} were done"
    elif done > n:
        head = f"expected at most {n} queries, {done} were done"
    elif max_repeats is not None and top and top[0][1] > max_repeats:
        head = f"expected no statement repeated more than {max_repeats} times, one ran {top[0][1]} times"
    else:
        return None
    advice = (
        "; update the expected count"
        if done < n
        else "; reduce the round trips (batch with = ANY(...)) or raise the budget"
    )
    lines = [head + advice]
    lines += [f"top fingerprint x{count}: {_one_line(text)}" for _fp, count, text in top if count > 1]
    lines.append("queries:")
    lines += [f"  {i}. {_one_line(s.normalized)}" for i, s in enumerate(log.statements[:_LIST_AT_MOST], 1)]
    if done > _LIST_AT_MOST:
        lines.append(f"  ... and {done - _LIST_AT_MOST} more")
    return "\n".join(lines)


def _one_line(sql: str) -> str:
    return " ".join(sql.split())


def _check_budget(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


# -- pytest plugin (entry point pytest11) -------------------------------------------------------


@pytest.fixture(name="assert_max_queries")
def assert_max_queries_fixture() -> Callable[..., AbstractContextManager[QueryLog]]:
    """``with assert_max_queries(engine, n, max_repeats=None): ...`` inside a test."""
    return assert_max_queries


@pytest.fixture(name="assert_num_queries")
def assert_num_queries_fixture() -> Callable[..., AbstractContextManager[QueryLog]]:
    """``with assert_num_queries(engine, n): ...`` inside a test (exact count)."""
    return assert_num_queries
