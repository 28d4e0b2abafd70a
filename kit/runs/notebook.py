"""What a notebook's setup cell calls: connect to the audited database, set up offline plotly and
show tables with names from the database escaped (talks to PostgreSQL)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.io as pio
from IPython import get_ipython
from sqlalchemy import Engine

from kit import escape
from kit.config import mask_url, url_from_env
from kit.db.engine import make_engine
from kit.errors import ConfigError

# Embeds plotly.js once per notebook so figures render in JupyterLab and in the exported HTML
# without internet; a headless kernel's default (plotly_mimetype) is dropped by nbconvert.
PLOTLY_RENDERER = "plotly_mimetype+notebook"


@dataclass(frozen=True)
class Session:
    """The audited database and the Redis a notebook works with."""

    engine: Engine
    redis_url: str | None  # None when no Redis is configured: cache sections say so
    database: str  # masked, for display

    def _repr_markdown_(self) -> str:
        redis = mask_url(self.redis_url) if self.redis_url else "not configured"
        # escaped: the mask's asterisks must not turn into emphasis, a database name into markup
        return f"Auditing {escape.markdown(self.database)} (Redis: {escape.markdown(redis)})"


def escaped(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell through :func:`kit.escape.line` (pure): a name from the database
    that holds a control character, a line break or a right-to-left override shows as escapes."""

    def one(value: Any) -> Any:
        return escape.line(value) if isinstance(value, str) else value

    out = frame.map(one)
    out.index = out.index.map(one)
    return out


def show_frames_escaped() -> None:
    """In a kernel, show every DataFrame through :func:`escaped` (pandas escapes HTML itself, not
    control characters): one place for every table a notebook shows. Outside IPython: nothing."""
    shell = get_ipython()
    if shell is None:
        return
    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(pd.DataFrame, lambda frame: escaped(frame)._repr_html_())
    formatters["text/plain"].for_type(pd.DataFrame, lambda frame, printer, _cycle: printer.text(repr(escaped(frame))))


def open_session(database_env: str = "KIT_DATABASE_URL", redis_env: str = "KIT_REDIS_URL") -> Session:
    """Connect to the database named by the environment variable ``database_env``."""
    pio.renderers.default = PLOTLY_RENDERER
    show_frames_escaped()
    # tqdm.auto falls back to text bars without ipywidgets; its warning (a TqdmWarning) would land in
    # every report. Matched by its text: tqdm ships no type information, and this is all we use of it.
    warnings.filterwarnings("ignore", message="IProgress not found")
    url = url_from_env(database_env)
    engine = make_engine(url)
    try:
        redis_url = url_from_env(redis_env, kind="redis")
    except ConfigError:
        redis_url = None
    return Session(engine=engine, redis_url=redis_url, database=mask_url(engine.url.render_as_string()))
