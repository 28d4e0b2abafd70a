"""Index checks: unused, duplicate or prefix-covered, foreign keys without an index, invalid indexes
and constraints, bloat (talks to PostgreSQL, read-only; :func:`covers` and :func:`redundant` are pure)."""

from __future__ import annotations

import pandas as pd
from psycopg import sql as psql
from sqlalchemy import Connection, text

from kit.audit.base import CheckResult, frame, result

UNUSED = """SELECT /* kit */ s.schemaname AS schema, s.relname AS "table", s.indexrelname AS index,
       pg_relation_size(s.indexrelid) AS size_bytes, s.idx_scan,
       d.stats_reset, extract(epoch FROM now() - coalesce(d.stats_reset, pg_postmaster_start_time()))
           / 86400.0 AS stats_age_days
FROM pg_stat_user_indexes s
JOIN pg_index x ON x.indexrelid = s.indexrelid
CROSS JOIN (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()) d
WHERE s.idx_scan = 0 AND NOT x.indisunique AND NOT x.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = s.indexrelid)
ORDER BY pg_relation_size(s.indexrelid) DESC"""


def unused_indexes(conn: Connection) -> CheckResult:
    """Indexes never scanned since the statistics began (their age is given: young stats prove little)."""
    rows = frame(conn, UNUSED)
    rows["severity"] = [
        "medium" if age >= 7 and size >= 1 << 20 else "low" if age >= 7 else "info"
        for age, size in zip(rows["stats_age_days"], rows["size_bytes"], strict=False)
    ]
    rows["remediation"] = [
        f"DROP INDEX CONCURRENTLY {s}.{i};  -- after checking replicas and rare jobs"
        for s, i in zip(rows["schema"], rows["index"], strict=False)
    ]
    return result(
        "unused_indexes",
        rows,
        ok="no index unused over 7+ days of statistics",
        found="{n} indexes unused over 7+ days of statistics",
    )


# Everything that decides whether one index can stand in for another. indclass, indcollation and
# indoption have one entry per key column (indnkeyatts); indkey's tail holds the INCLUDE columns.
INDEX_DEFS = """SELECT /* kit */ x.indexrelid::bigint AS oid, x.indrelid::bigint AS table_oid, n.nspname AS schema, t.relname AS "table",
       i.relname AS index, am.amname AS method, x.indisunique AS is_unique, x.indisprimary AS is_primary,
       x.indisexclusion AS is_exclusion,
       EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) AS is_constraint,
       (string_to_array(x.indkey::text, ' ')::int2[])[1:x.indnkeyatts] AS keys,
       coalesce((string_to_array(x.indkey::text, ' ')::int2[])[x.indnkeyatts + 1:x.indnatts], '{}') AS include,
       string_to_array(x.indclass::text, ' ')::oid[] AS opclasses,
       string_to_array(x.indcollation::text, ' ')::oid[] AS collations,
       string_to_array(x.indoption::text, ' ')::int2[] AS options,
       coalesce(pg_get_expr(x.indexprs, x.indrelid), '') AS expressions,
       coalesce(pg_get_expr(x.indpred, x.indrelid), '') AS predicate,
       pg_relation_size(x.indexrelid) AS size_bytes, pg_get_indexdef(x.indexrelid) AS definition
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am ON am.oid = i.relam
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  AND x.indisvalid AND x.indisready
ORDER BY x.indrelid, x.indexrelid"""

_PREFIX_METHODS = {"btree"}  # only a btree serves a query on a prefix of its keys


def covers(b: dict, a: dict) -> bool:
    """Whether index ``b`` serves every query index ``a`` serves (pure): same table, method,
    predicate and expressions; ``a``'s keys with their opclass, collation and sort order/NULLS a
    prefix of ``b``'s (equal for a method other than btree); ``a``'s INCLUDE columns among ``b``'s
    columns; and when ``a`` is unique, ``b`` unique on the very same keys."""
    if a["oid"] == b["oid"] or a["table_oid"] != b["table_oid"] or a["method"] != b["method"]:
        return False
    if a["is_exclusion"] or b["is_exclusion"] or a["predicate"] != b["predicate"]:
        return False
    if a["expressions"] != b["expressions"]:
        return False
    n = len(a["keys"])
    if n > len(b["keys"]) or (a["method"] not in _PREFIX_METHODS and n != len(b["keys"])):
        return False
    for part in ("keys", "opclasses", "collations", "options"):
        if list(a[part]) != list(b[part])[:n]:
            return False
    if not set(a["include"]) <= set(b["keys"]) | set(b["include"]):
        return False
    return not a["is_unique"] or (b["is_unique"] and n == len(b["keys"]))


def _keep_rank(ix: dict) -> tuple:
    """Between two indexes that cover each other, the one to keep ranks higher: a constraint's,
    then a unique one, then the older (smaller oid)."""
    return (ix["is_constraint"], ix["is_primary"], ix["is_unique"], -ix["oid"])


def redundant(indexes: list[dict]) -> list[tuple[dict, dict]]:
    """(redundant index, the index covering it) pairs (pure). An index backing a constraint is never
    the redundant one (DROP INDEX cannot remove it); of two that cover each other, the lower
    :func:`_keep_rank` goes; of several covering indexes, the smallest is named."""
    out = []
    for a in indexes:
        if a["is_constraint"]:
            continue
        coverers = [b for b in indexes if covers(b, a) and (not covers(a, b) or _keep_rank(b) > _keep_rank(a))]
        if coverers:
            out.append((a, min(coverers, key=lambda b: (b["size_bytes"], b["oid"]))))
    return out


def duplicate_indexes(conn: Connection) -> CheckResult:
    """Indexes another index stands in for: same keys (or a prefix of its keys) with the same method,
    opclass, collation, sort order, expressions, predicate and INCLUDE columns; the covering index is
    named in full, and a unique or constraint index is the one kept."""
    defs = [dict(r) for r in conn.execute(text(INDEX_DEFS)).mappings()]
    pairs = redundant(defs)
    rows = pd.DataFrame(
        [
            {
                "schema": a["schema"],
                "table": a["table"],
                "index": a["index"],
                "covered_by": f"{b['schema']}.{b['index']}",
                "size_bytes": a["size_bytes"],
                "definition": a["definition"],
                "covering_definition": b["definition"],
                "detail": f"covered by {b['schema']}.{b['index']}: {b['definition']}",
            }
            for a, b in pairs
        ],
        columns=["schema", "table", "index", "covered_by", "size_bytes", "definition", "covering_definition", "detail"],
    )
    rows["severity"] = "medium"
    rows["remediation"] = [
        f"DROP INDEX CONCURRENTLY {s}.{i};  -- covered by {c}"
        for s, i, c in zip(rows["schema"], rows["index"], rows["covered_by"], strict=False)
    ]
    return result(
        "duplicate_indexes",
        rows,
        ok="no duplicate or prefix-covered index",
        found="{n} indexes are covered by another index",
    )


# A foreign key is served by an index whose leading key columns are exactly its columns (in any
# order), valid, not partial, with the default opclass (a text_pattern_ops index cannot check =).
UNINDEXED_FKS = """SELECT /* kit */ n.nspname AS schema, t.relname AS "table", c.conname AS "constraint",
       array_agg(a.attname::text ORDER BY k.ord) AS columns, c.confrelid::regclass::text AS "references",
       greatest(t.reltuples, coalesce(s.n_live_tup, 0), 0)::bigint AS rows, pg_table_size(t.oid) AS table_bytes
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
LEFT JOIN pg_stat_user_tables s ON s.relid = t.oid
WHERE c.contype = 'f' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (
    SELECT 1 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam
    WHERE x.indrelid = c.conrelid AND x.indisvalid AND x.indpred IS NULL
      AND x.indnkeyatts >= cardinality(c.conkey)
      AND (am.amname = 'btree' OR (am.amname = 'hash' AND cardinality(c.conkey) = 1))
      AND (string_to_array(x.indkey::text, ' ')::int2[])[1:cardinality(c.conkey)] @> c.conkey
      AND (string_to_array(x.indkey::text, ' ')::int2[])[1:cardinality(c.conkey)] <@ c.conkey
      AND NOT EXISTS (SELECT 1 FROM unnest((string_to_array(x.indclass::text, ' ')::oid[])[1:cardinality(c.conkey)])
                      AS o(opc) JOIN pg_opclass p ON p.oid = o.opc WHERE NOT p.opcdefault))
GROUP BY n.nspname, t.relname, c.conname, c.confrelid, t.oid, t.reltuples, s.n_live_tup
ORDER BY rows DESC, 1, 2, 3"""


def unindexed_foreign_keys(conn: Connection, *, min_rows: int = 10_000, high_rows: int = 1_000_000) -> CheckResult:
    """Foreign keys whose referencing columns lead no index: joins on them and every DELETE or key
    UPDATE of the referenced row scan the referencing table. A finding from ``min_rows`` rows
    (high from ``high_rows``); smaller tables are listed as info."""
    rows = frame(conn, UNINDEXED_FKS)
    rows["columns"] = rows["columns"].map(list)
    rows["severity"] = ["high" if r >= high_rows else "medium" if r >= min_rows else "info" for r in rows["rows"]]
    rows["detail"] = [
        f"{', '.join(c)} references {ref}" for c, ref in zip(rows["columns"], rows["references"], strict=False)
    ]
    rows["remediation"] = [
        f"CREATE INDEX CONCURRENTLY ON {_qualified(s, t)} ({', '.join(_ident(c) for c in cols)});"
        for s, t, cols in zip(rows["schema"], rows["table"], rows["columns"], strict=False)
    ]
    return result(
        "unindexed_foreign_keys",
        rows,
        ok=f"every foreign key of a {min_rows}+ row table is indexed",
        found="{n} foreign keys have no index on their referencing columns",
    )


def _ident(name: str) -> str:
    return psql.Identifier(name).as_string(None)


def _qualified(schema: str, table: str) -> str:
    return psql.Identifier(schema, table).as_string(None)


INVALID = """SELECT /* kit */ n.nspname AS schema, t.relname AS "table", i.relname AS name, 'index' AS kind,
       pg_get_indexdef(i.oid) AS definition
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE NOT (x.indisvalid AND x.indisready)
UNION ALL
SELECT n.nspname, t.relname, c.conname, 'constraint', pg_get_constraintdef(c.oid)
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE NOT c.convalidated"""


def invalid_objects(conn: Connection) -> CheckResult:
    """Invalid indexes (failed concurrent builds) and NOT VALID constraints."""
    rows = frame(conn, INVALID)
    rows["severity"] = ["high" if k == "index" else "medium" for k in rows["kind"]]
    rows["remediation"] = [
        f"DROP INDEX CONCURRENTLY {s}.{n}; then recreate it (kit.indexes.apply_indexes repairs declared ones)"
        if k == "index"
        else f"ALTER TABLE {s}.{t} VALIDATE CONSTRAINT {n};"
        for s, t, n, k in zip(rows["schema"], rows["table"], rows["name"], rows["kind"], strict=False)
    ]
    return result(
        "invalid_objects", rows, ok="no invalid index or constraint", found="{n} invalid indexes or constraints"
    )


# A btree estimate in the spirit of PgHero's / ioguix's: expected leaf pages from row count and
# column widths at 90% fill, compared with the actual pages.
BLOAT = """WITH /* kit */ ix AS (
  SELECT n.nspname AS schema, t.relname AS "table", i.relname AS index, i.relpages, t.reltuples,
         current_setting('block_size')::int AS bs,
         (SELECT coalesce(sum(s.avg_width), 8 * x.indnatts) FROM pg_stats s
          WHERE s.schemaname = n.nspname AND s.tablename = t.relname
            AND s.attname = ANY(ARRAY(SELECT a.attname FROM pg_attribute a
                                      WHERE a.attrelid = t.oid AND a.attnum = ANY(x.indkey::int2[])))) AS width
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am ON am.oid = i.relam
  WHERE am.amname = 'btree' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    AND i.relpages > 0)
SELECT schema, "table", index, relpages::bigint * bs AS size_bytes,
       greatest(relpages - ceil(reltuples * (width + 16) / (bs * 0.9)), 0)::bigint * bs AS bloat_bytes
FROM ix ORDER BY 5 DESC"""


def index_bloat(conn: Connection, *, min_bytes: int = 10 << 20) -> CheckResult:
    """Estimated wasted space per btree index (an estimate: REINDEX CONCURRENTLY reclaims it)."""
    rows = frame(conn, BLOAT)
    rows["bloat_pct"] = (100 * rows["bloat_bytes"] / rows["size_bytes"].where(rows["size_bytes"] > 0)).round(1)
    rows["severity"] = [
        "medium" if b >= min_bytes and p >= 50 else "info"
        for b, p in zip(rows["bloat_bytes"], rows["bloat_pct"].fillna(0), strict=False)
    ]
    rows["remediation"] = [
        f"REINDEX INDEX CONCURRENTLY {s}.{i};" if sev != "info" else ""
        for s, i, sev in zip(rows["schema"], rows["index"], rows["severity"], strict=False)
    ]
    return result(
        "index_bloat", rows, ok="no index with 10 MB and 50% or more estimated bloat", found="{n} indexes look bloated"
    )
