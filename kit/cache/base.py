"""The cache's shared vocabulary: the MISSING sentinel, the JSON codec, a manual clock and the
one-line description of an error for the log (pure).

Values travel as JSON, never pickle: a shared Redis must not be a code-execution channel. The
codec is strict (no ``default=``) so a value that would not round-trip unchanged is refused at
``set`` time instead of coming back as something else.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, Final

Timer = Callable[[], float]


class _Missing:
    """The one value meaning "not in the cache" (a cached ``None`` is a hit)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_DECODER = json.JSONDecoder()
# JSONDecoder.__init__ sets ``scan_once`` (json/decoder.py: ``scanner.make_scanner(self)``, the C
# scanner when built) but typeshed does not declare it; bound once here, typed as CPython calls it
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON; TypeError/ValueError for anything JSON cannot hold."""
    return _ENCODER.encode(value).encode()


def loads(data: bytes | str) -> Any:
    """The value of JSON text, as ``JSONDecoder.decode`` reads it, straight from its C scanner:
    what ``dumps`` writes has no whitespace around it for ``JSONDecoder.decode`` to skip, and
    that skipping is a third of an L2 hit's decoding (a value of a few hundred bytes)."""
    text = data.decode() if isinstance(data, bytes) else data
    try:
        value, end = _SCAN_ONCE(text, 0)
    except StopIteration:  # empty, or whitespace first: the full decoder reads it or says why not
        return _DECODER.decode(text)
    return value if end == len(text) else _DECODER.decode(text)


def check_ttl(ttl: float) -> float:
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool):
        raise TypeError(f"ttl must be a number of seconds, got {type(ttl).__name__}")
    if ttl <= 0:
        raise ValueError(f"ttl must be > 0 seconds, got {ttl}")
    return float(ttl)


def check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError(f"cache keys are non-empty str, got {key!r}")
    return key


def describe(exc: BaseException, *, limit: int = 100) -> str:
    """``Type: first line of the message``, shortened, control characters escaped: fit for a log line
    (a Redis error message may quote a script or a key)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ManualClock:
    """A clock that only moves when told to: expiry is tested by ``advance``, never by sleeping."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now
