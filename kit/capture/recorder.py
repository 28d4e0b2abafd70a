"""Record every statement run through a SQLAlchemy engine or connection (talks to PostgreSQL only
through the caller's own statements; listens with SQLAlchemy's public event API).

    with capture(engine) as log:
        with log.unit("search_projects"):
            naive.search_projects(conn, query="acme", page=1, per_page=20)
    log.to_frame()

Each :class:`Statement` carries the SQL (its secrets redacted by :func:`kit.sqltext.redact.statement`),
its duration and row count, a normalized fingerprint (:mod:`kit.sqltext.fingerprint`, parsed once per
distinct text per process) and, with ``call_sites=True``, the first call site in application
code. Statements are grouped into units of work (one "request" each) with :meth:`QueryLog.unit`.
Parameters are recorded only with ``record_params=True``, and then values
whose name matches ``redact`` are masked. The kit's own diagnostic SQL (tagged ``/* kit */``) is
left out unless ``include_kit=True``.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import re
import sys
import sysconfig
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, event

from kit.sqltext import fingerprint as fp
from kit.sqltext import redact as redaction
from kit.sqltext.tag import is_kit

if TYPE_CHECKING:  # pandas loads where a log is framed: this module is a pytest plugin in every pytest process
    import pandas as pd

DEFAULT_REDACT = r"pass(word)?|secret|token|api_?key|credential|email|ssn|iban|card"
_REDACTED = "***"
_MAX_PARAM_SETS = 3  # executemany: keep the first few parameter sets only
_KIT_DIR = Path(__file__).resolve().parents[1]
# the kit's stand-ins for an application count as application code for call sites
_APP_DIRS = (_KIT_DIR / "services", _KIT_DIR / "benchmarks")


@dataclass(frozen=True)
class Statement:
    """One statement as the driver ran it."""

    seq: int
    unit: str | None  # the unit of work's name (an endpoint), None outside any unit
    unit_id: int  # one per entry into a unit; 0 outside any unit
    sql: str
    normalized: str
    fingerprint: str
    duration_ms: float
    rowcount: int
    executemany: bool
    call_site: str | None
    params: Any = None


@dataclass(frozen=True)
class _Unit:
    name: str
    id: int


class QueryLog:
    """The statements seen by one :func:`capture`, in order, with their units of work."""

    def __init__(self, *, record_params: bool, redact: str, include_kit: bool, call_sites: bool):
        self.record_params = record_params
        self.include_kit = include_kit
        self.call_sites = call_sites
        self._redact = re.compile(redact, re.I) if redact else None
        self._unit: contextvars.ContextVar[_Unit | None] = contextvars.ContextVar("kit_unit", default=None)
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        # the hook only appends a raw tuple here (deque appends are atomic across threads);
        # Statements are built from them when the log is read, off the application's request path
        self._raw: deque[tuple] = deque()
        self._statements: list[Statement] = []
        self._verdicts: dict[str, bool] = {}  # source file -> is application code

    @property
    def statements(self) -> list[Statement]:
        """The statements recorded so far, in order."""
        if self._raw:
            with self._lock:
                while self._raw:
                    stmt = self._build(*self._raw.popleft())
                    if stmt is not None:
                        self._statements.append(stmt)
        return self._statements

    def __len__(self) -> int:
        return len(self.statements)

    def __iter__(self) -> Iterator[Statement]:
        return iter(list(self.statements))

    def __repr__(self) -> str:
        return f"<QueryLog {len(self.statements)} statements in {len(self.units())} units>"

    @contextmanager
    def unit(self, name: str) -> Iterator[_Unit]:
        """Group the statements run inside the block as one unit of work named ``name``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a unit of work needs a non-empty name, got {name!r}")
        current = _Unit(name, next(self._ids))
        token = self._unit.set(current)
        try:
            yield current
        finally:
            self._unit.reset(token)

    def units(self) -> dict[int, list[Statement]]:
        """Statements by unit id (0 holds those run outside any unit)."""
        out: dict[int, list[Statement]] = {}
        for stmt in list(self.statements):
            out.setdefault(stmt.unit_id, []).append(stmt)
        return out

    def counts_per_unit(self, name: str | None = None) -> list[int]:
        """How many statements each unit of work (optionally only those named ``name``) ran."""
        return [len(v) for k, v in self.units().items() if k and (name is None or v[0].unit == name)]

    def top_fingerprints(self, n: int = 5) -> list[tuple[str, int, str]]:
        """The ``n`` most repeated fingerprints: (fingerprint, count, normalized SQL)."""
        counts = Counter(s.fingerprint for s in self.statements)
        text = {s.fingerprint: s.normalized for s in self.statements}
        return [(f, c, text[f]) for f, c in counts.most_common(n)]

    def clear(self) -> None:
        with self._lock:
            self._raw.clear()
            self._statements.clear()

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        cols = [f for f in Statement.__dataclass_fields__]
        return pd.DataFrame([{c: getattr(s, c) for c in cols} for s in self.statements], columns=cols)

    # -- called by the event listeners -------------------------------------------------------

    def _listeners(self) -> tuple[Callable[..., Any], Callable[..., None]]:
        """before/after_cursor_execute: as little work as possible while the application waits
        (a clock read, then one tuple appended; :meth:`_build` makes the Statement when the log
        is read)."""
        append, unit, verdicts = self._raw.append, self._unit.get, self._verdicts
        params = self._params if self.record_params else None
        sites = self.call_sites
        clock = time.perf_counter
        # a cursor runs one statement at a time; one that failed leaves its start to be overwritten
        starts: dict[int, float] = {}

        def before(conn, cursor, statement, parameters, context, executemany):
            starts[id(cursor)] = clock()
            return statement, parameters  # listened with retval=True: no wrapper call around it

        def after(conn, cursor, statement, parameters, context, executemany):
            ended = clock()
            append(
                (
                    statement,
                    unit(),
                    ended - starts.pop(id(cursor), ended),
                    _rowcount(cursor),
                    executemany,
                    _call_site(verdicts) if sites else None,
                    params(parameters, executemany) if params else None,
                )
            )

        return before, after

    def _build(
        self,
        statement: str,
        unit: _Unit | None,
        duration_s: float,
        rowcount: int,
        executemany: bool,
        site: tuple[CodeType, int] | None,
        params: Any,
    ) -> Statement | None:
        if not self.include_kit and is_kit(statement):
            return None
        redacted, normalized, fingerprint = _shape(statement)
        return Statement(
            seq=next(self._seq),
            unit=unit.name if unit else None,
            unit_id=unit.id if unit else 0,
            sql=redacted,
            normalized=normalized,
            fingerprint=fingerprint,
            duration_ms=duration_s * 1000.0,
            rowcount=rowcount,
            executemany=executemany,
            call_site=f"{site[0].co_filename}:{site[1]} in {site[0].co_name}" if site else None,
            params=params,
        )

    def _params(self, parameters: Any, executemany: bool) -> Any:
        if executemany and isinstance(parameters, Sequence) and not isinstance(parameters, (str, bytes)):
            return [self._redacted(p) for p in list(parameters)[:_MAX_PARAM_SETS]]
        return self._redacted(parameters)

    def _redacted(self, params: Any) -> Any:
        if isinstance(params, Mapping):
            return {k: (_REDACTED if self._redact and self._redact.search(str(k)) else v) for k, v in params.items()}
        if isinstance(params, Sequence) and not isinstance(params, (str, bytes)):
            # positional values have no column name to judge them by: keep none of them
            return [_REDACTED] * len(params) if self._redact else list(params)
        return params


@functools.lru_cache(maxsize=4096)
def _shape(statement: str) -> tuple[str, str, str]:
    """(redacted text, redacted normal form, fingerprint) of a statement text, once per process:
    an N+1 loop runs the same text with new parameters. The fingerprint ignores literals and
    comments, so it is taken from the text as sent; what is kept is redacted."""
    return (redaction.statement(statement), redaction.statement(fp.normalize(statement)), fp.fingerprint(statement))


def _call_site(verdicts: dict[str, bool]) -> tuple[CodeType, int] | None:
    """The first frame outside SQLAlchemy, the drivers, the standard library and the kit's own
    machinery (the kit's services and benchmarks count as application code), as (code, line)."""
    frame: FrameType | None = sys._getframe(2)  # the listener's caller: SQLAlchemy's dispatch
    while frame is not None:
        code = frame.f_code
        path = code.co_filename  # a str caches its hash; a code object hashes its contents each time
        app = verdicts.get(path)
        if app is None:
            app = verdicts[path] = _is_app(path)
        if app:
            return code, frame.f_lineno
        frame = frame.f_back
    return None


def _is_app(path: str) -> bool:
    if path.startswith("<") or "site-packages" in path or "dist-packages" in path:
        return False
    p = Path(path).resolve()
    if Path(sysconfig.get_paths()["stdlib"]).resolve() in p.parents:
        return False
    if _KIT_DIR in p.parents:
        return any(d in p.parents for d in _APP_DIRS)
    return True


@contextmanager
def capture(
    target: Engine | Connection,
    *,
    record_params: bool = False,
    redact: str = DEFAULT_REDACT,
    include_kit: bool = False,
    call_sites: bool = False,
) -> Iterator[QueryLog]:
    """Record the statements ``target`` (an Engine, or one Connection) runs inside the block.

    ``call_sites=True`` also records where in the application each statement was run from: a
    walk up the stack per statement, about as much work again as the rest of the capture, so it
    is only done when asked (the N+1 audit asks)."""
    if not isinstance(target, (Engine, Connection)):
        raise TypeError(
            f"capture() needs a SQLAlchemy Engine or Connection, got {type(target).__name__}; "
            "pass the engine from kit.db.engine.make_engine() or a connection from engine.connect()"
        )
    log = QueryLog(record_params=record_params, redact=redact, include_kit=include_kit, call_sites=call_sites)
    before, after = log._listeners()
    event.listen(target, "before_cursor_execute", before, retval=True)
    event.listen(target, "after_cursor_execute", after)
    try:
        yield log
    finally:
        event.remove(target, "before_cursor_execute", before)
        event.remove(target, "after_cursor_execute", after)


def _rowcount(cursor: Any) -> int:
    try:
        count = cursor.rowcount
    except Exception:  # a closed or server-side cursor: the count is simply unknown
        return -1
    return int(count) if count is not None else -1
