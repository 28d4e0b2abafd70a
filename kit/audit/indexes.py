"""Index checks: unused, duplicate or prefix-covered, invalid indexes and constraints, bloat
(talks to PostgreSQL, read-only)."""

from __future__ import annotations

from sqlalchemy import Connection

from kit.audit.base import CheckResult, frame, result

UNUSED = """/* kit */
SELECT s.schemaname AS schema, s.relname AS "table", s.indexrelname AS index,
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
    rows["severity"] = ["medium" if age >= 7 and size >= 1 << 20 else "low" if age >= 7 else "info"
                        for age, size in zip(rows["stats_age_days"], rows["size_bytes"])]
    rows["remediation"] = [f"DROP INDEX CONCURRENTLY {s}.{i};  -- after checking replicas and rare jobs"
                           for s, i in zip(rows["schema"], rows["index"])]
    return result("unused_indexes", rows, ok="no index unused over 7+ days of statistics",
                  found="{n} indexes unused over 7+ days of statistics")


# Same table, method, predicate and expressions; one's key columns a prefix of the other's.
DUPLICATES = """/* kit */
WITH ix AS (
  SELECT x.indexrelid, x.indrelid, i.relname AS name, n.nspname AS schema, t.relname AS "table",
         am.amname, x.indisunique, string_to_array(x.indkey::text, ' ')::int2[] AS keys,
         string_to_array(x.indclass::text, ' ')::oid[] AS classes,
         coalesce(pg_get_expr(x.indexprs, x.indrelid), '') AS exprs,
         coalesce(pg_get_expr(x.indpred, x.indrelid), '') AS pred, pg_relation_size(x.indexrelid) AS size_bytes
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am ON am.oid = i.relam
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND x.indisvalid)
SELECT a.schema, a."table", a.name AS index, b.name AS covered_by, a.size_bytes,
       pg_get_indexdef(a.indexrelid) AS definition, pg_get_indexdef(b.indexrelid) AS covering_definition
FROM ix a JOIN ix b ON a.indrelid = b.indrelid AND a.indexrelid <> b.indexrelid
 AND a.amname = b.amname AND a.exprs = b.exprs AND a.pred = b.pred
 AND a.keys = b.keys[1:array_length(a.keys, 1)] AND a.classes = b.classes[1:array_length(a.classes, 1)]
 AND NOT a.indisunique
 AND (array_length(a.keys, 1) < array_length(b.keys, 1) OR a.indexrelid > b.indexrelid)
ORDER BY a.size_bytes DESC"""


def duplicate_indexes(conn: Connection) -> CheckResult:
    """Indexes whose keys are the same as, or a prefix of, another index's (same method, predicate)."""
    rows = frame(conn, DUPLICATES)
    rows["severity"] = "medium"
    rows["remediation"] = [f"DROP INDEX CONCURRENTLY {s}.{i};  -- covered by {c}"
                           for s, i, c in zip(rows["schema"], rows["index"], rows["covered_by"])]
    return result("duplicate_indexes", rows, ok="no duplicate or prefix-covered index",
                  found="{n} indexes are covered by another index")


INVALID = """/* kit */
SELECT n.nspname AS schema, t.relname AS "table", i.relname AS name, 'index' AS kind,
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
        if k == "index" else f"ALTER TABLE {s}.{t} VALIDATE CONSTRAINT {n};"
        for s, t, n, k in zip(rows["schema"], rows["table"], rows["name"], rows["kind"])]
    return result("invalid_objects", rows, ok="no invalid index or constraint",
                  found="{n} invalid indexes or constraints")


# A btree estimate in the spirit of PgHero's / ioguix's: expected leaf pages from row count and
# column widths at 90% fill, compared with the actual pages.
BLOAT = """/* kit */
WITH ix AS (
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
    rows["severity"] = ["medium" if b >= min_bytes and p >= 50 else "info"
                        for b, p in zip(rows["bloat_bytes"], rows["bloat_pct"].fillna(0))]
    rows["remediation"] = [f"REINDEX INDEX CONCURRENTLY {s}.{i};" if sev != "info" else ""
                           for s, i, sev in zip(rows["schema"], rows["index"], rows["severity"])]
    return result("index_bloat", rows, ok="no index with 10 MB and 50% or more estimated bloat",
                  found="{n} indexes look bloated")
