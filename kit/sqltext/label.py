"""A statement's short readable name: its kind and the table it is about — ``SELECT orders``,
``UPDATE pgbench_branches``, ``SELECT order_items +2`` — for chart labels and headings, where a
queryid means nothing to a reader (pure; the text itself stays available beside it)."""

from __future__ import annotations

from kit.sqltext.fingerprint import shape
from kit.sqltext.refs import TABLE, kind_of, references


def short_name(query: str | None) -> str:
    """``KIND table`` (the table written, else the first one read), ``+n`` for the other tables;
    a statement about no table is its first keyword (``COMMIT``, ``SET``)."""
    text = query or ""
    refs = references(text)
    if refs is not None:
        kind = refs.kind if refs.kind != "other" else kind_of(text)
        tables = [r.name for r in (refs.target, *refs.relations) if r is not None and r.kind == TABLE]
    else:  # several statements, or one the parser rejects: the fallback's tables, in name order
        kind, tables = kind_of(text), sorted(shape(text).tables)
    tables = list(dict.fromkeys(tables))
    if not tables:
        return kind.upper()
    more = f" +{len(tables) - 1}" if len(tables) > 1 else ""
    return f"{kind.upper()} {tables[0]}{more}"
