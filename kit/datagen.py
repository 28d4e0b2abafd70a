"""Deterministic synthetic data for the seed platform at named scales (talks to PostgreSQL).

Every row is made on the server by ``INSERT ... SELECT ... FROM generate_series(lo, hi)``, in
chunks so a progress bar can move. Every pseudo-random value is a hash of (row number, seed,
column salt) mapped to [0, 1) by ``pg_temp.kit_u``, never ``random()``: the same seed gives the
same rows whatever the plan, chunking or parallelism. Ids are the row numbers themselves.

A value that depends on another table's row (a job's project, that project's creation time,
its owner) is recomputed from the same formula instead of read back with a join, so children
agree with parents: a job is created after its project, a record's project is its data
source's project, most jobs are started by the project's owner. Records come in pairs seen by
two data sources of one project (same external id, amount, date), so reconciliation matches.

Loading follows PostgreSQL's "populating a database" advice: keys and indexes are set aside
and rebuilt afterwards, all inside the one transaction that also truncates.

Shapes follow the seed platform: about 20 jobs per project on average with a long tail
(the busiest projects have hundreds), a few owners with many projects, ~3 data sources per
project, mostly completed jobs, ~90% active users, two years of history (2023-2024, UTC).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields

import pandas as pd
from psycopg import sql
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError
from tqdm.auto import tqdm

from kit.errors import KitError
from kit.schema import META_TABLE, TABLES, create_schema, restore_keys, set_aside_keys


@dataclass(frozen=True)
class Scale:
    """Row counts of one named data set, one field per table of :data:`kit.schema.TABLES`."""

    name: str
    users: int
    projects: int
    data_sources: int
    reconciliation_jobs: int
    reconciliation_records: int
    reconciliation_results: int
    reconciliation_matches: int
    uploaded_files: int
    audit_logs: int
    user_activity_logs: int

    def __post_init__(self) -> None:
        counts = self.rows
        if any(n < 1 for n in counts.values()):
            raise ValueError(f"scale {self.name!r}: every table needs at least one row, got {counts}")
        # every project owns data sources 2p-1 and 2p; records come in pairs (2k-1, 2k)
        if self.data_sources < 2 * self.projects or self.reconciliation_records % 2:
            raise ValueError(
                f"scale {self.name!r}: needs data_sources >= 2 * projects and an even number of "
                "reconciliation_records"
            )

    @property
    def rows(self) -> dict[str, int]:
        """Declared rows per table, in dependency order."""
        return {t: getattr(self, t) for t in TABLES}

    @property
    def rows_total(self) -> int:
        return sum(self.rows.values())

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"table": list(self.rows), "rows": list(self.rows.values())})


def _scale(name: str, factor: int, users: int) -> Scale:
    # Ratios shared by every scale: 20 jobs and 3 data sources per project, as many records
    # and results as jobs, half as many matches and log rows, 2 files per project.
    projects = 5 * factor
    return Scale(
        name=name,
        users=users,
        projects=projects,
        data_sources=3 * projects,
        reconciliation_jobs=20 * projects,
        reconciliation_records=20 * projects,
        reconciliation_results=20 * projects,
        reconciliation_matches=10 * projects,
        uploaded_files=2 * projects,
        audit_logs=10 * projects,
        user_activity_logs=10 * projects,
    )


SCALES: dict[str, Scale] = {
    "tiny": _scale("tiny", 60, users=200),  # 300 projects, 6,000 jobs: ~0.3 s
    "demo": _scale("demo", 10_000, users=20_000),  # 50,000 projects, 1,000,000 jobs
    "large": _scale("large", 100_000, users=200_000),  # 10x demo, for benchmarks
}

CHUNK_ROWS = 250_000  # rows per INSERT statement; only moves the progress bars


@dataclass(frozen=True)
class TableLoad:
    """Rows loaded into one table and the time it took."""

    rows: int
    seconds: float


@dataclass(frozen=True)
class SeedResult:
    """What :func:`seed` loaded. ``seconds`` is the whole call (schema, truncate, load, keys,
    ANALYZE); a table's own ``seconds`` is its INSERTs only."""

    scale: str
    seed: int
    seconds: float
    tables: dict[str, TableLoad]

    @property
    def rows_total(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def rows_per_s(self) -> float:
        return self.rows_total / self.seconds if self.seconds > 0 else 0.0

    def to_frame(self) -> pd.DataFrame:
        """One row per table: ``table, rows, seconds, rows_per_s``."""
        return pd.DataFrame(
            [
                (name, t.rows, t.seconds, t.rows / t.seconds if t.seconds > 0 else 0.0)
                for name, t in self.tables.items()
            ],
            columns=["table", "rows", "seconds", "rows_per_s"],
        )

    def to_dict(self) -> dict[str, object]:
        """The benchmark JSON shape: ``{scale, rows_total, seconds, rows_per_s, tables}``."""
        return {
            "scale": self.scale,
            "rows_total": self.rows_total,
            "seconds": self.seconds,
            "rows_per_s": self.rows_per_s,
            "tables": {name: asdict(t) for name, t in self.tables.items()},
        }


def get_scale(scale: str) -> Scale:
    """The :class:`Scale` called ``scale``; ``ValueError`` naming the valid ones otherwise."""
    try:
        return SCALES[scale]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown scale {scale!r}; expected one of {', '.join(map(repr, SCALES))}"
        ) from None


# Helper functions live in pg_temp: they vanish with the session, leave the platform's schema
# exactly as the seed defines it, and the planner inlines them (plain SQL expressions, the
# seed hash folded to a constant) as long as their arguments are plain columns, which is why
# every statement computes derived ids in an inner level first. Times stay epoch seconds
# until the end: to_timestamp(number) does not depend on the session's TimeZone.
HELPERS = """
/* kit */
CREATE OR REPLACE FUNCTION pg_temp.kit_u(g bigint, seed bigint, salt integer) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((hashint8extended(g, hashint8extended(salt, seed)) >> 11) & 9007199254740991)::float8
           / 9007199254740992.0 $$;
-- an id in 1..n; skew > 1 piles rows on a few ids, scattered over the id range (P is prime)
CREATE OR REPLACE FUNCTION pg_temp.kit_pick(g bigint, seed bigint, salt integer, n bigint, skew float8)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 1 + mod(floor(n * (pg_temp.kit_u(g, seed, salt) ^ skew))::bigint * 2147483647, n) $$;
-- row g of n, created in id order over 2023-01-01 .. 2024-12-31 UTC (epoch seconds)
CREATE OR REPLACE FUNCTION pg_temp.kit_epoch(g bigint, n bigint, seed bigint, salt integer)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 1672531200 + 63072000 * (g - 1 + pg_temp.kit_u(g, seed, salt)) / n $$;
-- a moment between epoch e and the end of the two years
CREATE OR REPLACE FUNCTION pg_temp.kit_after(e float8, u float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT e * (1 - u) + 1735603200 * u $$;
-- formulas a parent table and its children share
CREATE OR REPLACE FUNCTION pg_temp.kit_project_epoch(p bigint, seed bigint, n_projects bigint)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_temp.kit_epoch(p, n_projects, seed, 13) $$;
CREATE OR REPLACE FUNCTION pg_temp.kit_project_owner(p bigint, seed bigint, n_users bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_temp.kit_pick(p, seed, 11, n_users, 2.0) $$;
-- every project p has data sources 2p-1 and 2p; the rest belong to random projects
CREATE OR REPLACE FUNCTION pg_temp.kit_ds_project(d bigint, seed bigint, n_projects bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN d <= 2 * n_projects THEN (d + 1) / 2
                ELSE pg_temp.kit_pick(d, seed, 21, n_projects, 1.0) END $$;
CREATE OR REPLACE FUNCTION pg_temp.kit_job_project(j bigint, seed bigint, n_projects bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_temp.kit_pick(j, seed, 31, n_projects, 1.5) $$;
-- job j of project p (= kit_job_project(j)) was created after its project
CREATE OR REPLACE FUNCTION pg_temp.kit_job_epoch(j bigint, p bigint, seed bigint, n_projects bigint)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_temp.kit_after(pg_temp.kit_project_epoch(p, seed, n_projects), pg_temp.kit_u(j, seed, 32)) $$;
"""

# One statement per table. Each level is OFFSET 0 (never flattened into the next) so every
# value is computed once per row: the innermost draws raw values from hashes of g, the outer
# ones derive and shape. Salts: 1-9 users, 11-19 projects, 21-29 data_sources, 30-39 jobs,
# 41-49 records, 51-59 results, 61-69 matches, 71-79 files, 81-89 audit, 91-99 activity.
INSERT_USERS = """
/* kit */ INSERT INTO users (id, email, first_name, last_name, role, is_active, last_login,
                             created_at, updated_at) OVERRIDING SYSTEM VALUE
SELECT g, CASE WHEN u_case < 0.6 THEN lower(fn || '.' || ln) ELSE fn || '.' || ln END || g || '@' || dom,
       fn, ln,
       CASE WHEN u_role < 0.02 THEN 'admin' WHEN u_role < 0.17 THEN 'manager'
            WHEN u_role < 0.77 THEN 'analyst' ELSE 'viewer' END,
       u_active < 0.9,
       CASE WHEN u_login >= 0.05 THEN to_timestamp(pg_temp.kit_after(e, u_login)) END,
       to_timestamp(e), to_timestamp(pg_temp.kit_after(e, u_upd))
FROM (SELECT g,
        (ARRAY['Alice','Bob','Carol','David','Erin','Frank','Grace','Heidi','Ivan','Judy','Mallory',
               'Niaj','Olivia','Peggy','Rupert','Sybil','Trent','Uma','Victor','Wendy'])
            [1 + floor(20 * pg_temp.kit_u(g, %(seed)s, 1))::int] AS fn,
        (ARRAY['Smith','Jones','Garcia','Mueller','Rossi','Dubois','Kowalski','Nguyen','Tanaka','Silva',
               'Okafor','Larsen','Novak','Cohen','Patel','Kim','Ivanova','Murphy','Haddad','Berg'])
            [1 + floor(20 * pg_temp.kit_u(g, %(seed)s, 2))::int] AS ln,
        (ARRAY['example.com','Acme.io','GLOBEX.COM','initech.net','Umbrella.org'])
            [1 + floor(5 * pg_temp.kit_u(g, %(seed)s, 3))::int] AS dom,
        pg_temp.kit_u(g, %(seed)s, 4) AS u_case, pg_temp.kit_u(g, %(seed)s, 5) AS u_role,
        pg_temp.kit_u(g, %(seed)s, 6) AS u_active, pg_temp.kit_u(g, %(seed)s, 7) AS u_login,
        pg_temp.kit_u(g, %(seed)s, 8) AS u_upd, pg_temp.kit_epoch(g, %(n_users)s, %(seed)s, 9) AS e
      FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r
"""

INSERT_PROJECTS = """
/* kit */ INSERT INTO projects (id, name, description, owner_id, status, is_active,
                                created_at, updated_at) OVERRIDING SYSTEM VALUE
SELECT g, company || ' ' || topic || ' ' || region,
       'Reconciles ' || lower(topic) || ' for ' || company || ' ' || region || ' entities',
       owner_id, status, status IN ('active', 'draft'), to_timestamp(e),
       to_timestamp(pg_temp.kit_after(e, u_upd))
FROM (SELECT *, CASE WHEN u_status < 0.80 THEN 'active' WHEN u_status < 0.92 THEN 'archived'
                     WHEN u_status < 0.98 THEN 'draft' ELSE 'suspended' END AS status
      FROM (SELECT g, pg_temp.kit_project_owner(g, %(seed)s, %(n_users)s) AS owner_id,
              (ARRAY['Acme','Globex','Initech','Umbrella','Hooli','Stark Industries','Wayne Enterprises',
                     'Wonka','Soylent','Tyrell','Cyberdyne','Aperture','Massive Dynamic','Vandelay',
                     'Dunder Mifflin','Pied Piper','Oscorp','Gringotts','Monarch','Nakatomi'])
                  [1 + floor(20 * pg_temp.kit_u(g, %(seed)s, 14))::int] AS company,
              (ARRAY['Bank Reconciliation','Card Settlements','Intercompany','Accounts Payable',
                     'Accounts Receivable','Payroll','Treasury','Revenue'])
                  [1 + floor(8 * pg_temp.kit_u(g, %(seed)s, 15))::int] AS topic,
              (ARRAY['EMEA','NA','LATAM','APAC'])[1 + floor(4 * pg_temp.kit_u(g, %(seed)s, 18))::int] AS region,
              pg_temp.kit_u(g, %(seed)s, 16) AS u_status, pg_temp.kit_u(g, %(seed)s, 17) AS u_upd,
              pg_temp.kit_project_epoch(g, %(seed)s, %(n_projects)s) AS e
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r OFFSET 0) AS s
"""

INSERT_DATA_SOURCES = """
/* kit */ INSERT INTO data_sources (id, project_id, name, source_type, status, is_active,
                                    created_at, updated_at) OVERRIDING SYSTEM VALUE
SELECT g, project_id, kind || ' #' || g,
       CASE WHEN u_type < 0.4 THEN 'csv' WHEN u_type < 0.7 THEN 'api'
            WHEN u_type < 0.9 THEN 'database' ELSE 'sftp' END,
       status, status <> 'disconnected', to_timestamp(e), to_timestamp(pg_temp.kit_after(e, u_upd))
FROM (SELECT *, CASE WHEN u_status < 0.85 THEN 'connected' WHEN u_status < 0.90 THEN 'syncing'
                     WHEN u_status < 0.95 THEN 'error' ELSE 'disconnected' END AS status,
             pg_temp.kit_after(pg_temp.kit_project_epoch(project_id, %(seed)s, %(n_projects)s), u_e) AS e
      FROM (SELECT g, pg_temp.kit_ds_project(g, %(seed)s, %(n_projects)s) AS project_id,
              (ARRAY['Bank feed','ERP export','Card processor','Payroll file','GL extract','Billing system'])
                  [1 + floor(6 * pg_temp.kit_u(g, %(seed)s, 22))::int] AS kind,
              pg_temp.kit_u(g, %(seed)s, 23) AS u_type, pg_temp.kit_u(g, %(seed)s, 24) AS u_status,
              pg_temp.kit_u(g, %(seed)s, 25) AS u_e, pg_temp.kit_u(g, %(seed)s, 26) AS u_upd
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r OFFSET 0) AS s
"""

INSERT_JOBS = """
/* kit */ INSERT INTO reconciliation_jobs (id, project_id, name, status, created_by, total_records,
                                           matched_count, unmatched_count, started_at, completed_at,
                                           created_at, updated_at) OVERRIDING SYSTEM VALUE
SELECT g, project_id, kind || ' ' || to_char(to_timestamp(e) AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
       status, created_by, total, matched, CASE WHEN e_end IS NULL THEN 0 ELSE total - matched END,
       to_timestamp(e_start), to_timestamp(e_end), to_timestamp(e),
       to_timestamp(coalesce(e_end, e_start, e))
FROM (SELECT *, floor(total * CASE status WHEN 'completed' THEN 0.75 + 0.25 * u_rate
                                         WHEN 'pending' THEN 0 ELSE 0.5 * u_rate END)::int AS matched,
             CASE WHEN status <> 'pending' THEN e + 1 + 600 * u_wait END AS e_start,
             CASE WHEN status IN ('completed', 'failed', 'cancelled')
                  THEN e + 31 + 600 * u_wait + 7200 * u_run ^ 2 END AS e_end
      FROM (SELECT *, CASE WHEN u_status < 0.80 THEN 'completed' WHEN u_status < 0.88 THEN 'failed'
                           WHEN u_status < 0.90 THEN 'cancelled' WHEN u_status < 0.94 THEN 'running'
                           ELSE 'pending' END AS status,
                   CASE WHEN u_by < 0.7 THEN pg_temp.kit_project_owner(project_id, %(seed)s, %(n_users)s)
                        ELSE other_user END AS created_by,
                   pg_temp.kit_job_epoch(g, project_id, %(seed)s, %(n_projects)s) AS e
            FROM (SELECT g, pg_temp.kit_job_project(g, %(seed)s, %(n_projects)s) AS project_id,
                    pg_temp.kit_pick(g, %(seed)s, 33, %(n_users)s, 2.0) AS other_user,
                    (ARRAY['Daily bank match','Month-end close','Card settlements','Intercompany',
                           'Vendor statements','Payroll check'])
                        [1 + floor(6 * pg_temp.kit_u(g, %(seed)s, 34))::int] AS kind,
                    100 + floor(20000 * pg_temp.kit_u(g, %(seed)s, 35) ^ 3)::int AS total,
                    pg_temp.kit_u(g, %(seed)s, 36) AS u_status, pg_temp.kit_u(g, %(seed)s, 37) AS u_by,
                    pg_temp.kit_u(g, %(seed)s, 38) AS u_rate, pg_temp.kit_u(g, %(seed)s, 39) AS u_wait,
                    pg_temp.kit_u(g, %(seed)s, 30) AS u_run
                  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r
            OFFSET 0) AS s OFFSET 0) AS t
"""

# Records come in pairs (2k-1, 2k). In 70% of pairs both sides are the same transaction seen by
# the project's two main data sources (2p-1 and 2p): same external id, amount, currency and
# date, so the reconciliation services find real matches. Other records stand alone, in any
# data source. Values are keyed on ``src`` (k for a pair, -g alone) so both sides agree.
INSERT_RECORDS = """
/* kit */ INSERT INTO reconciliation_records (id, project_id, data_source_id, source_system,
                                              external_id, amount, currency, transaction_date,
                                              status, created_at) OVERRIDING SYSTEM VALUE
SELECT g, pg_temp.kit_ds_project(ds, %(seed)s, %(n_projects)s), ds,
       CASE WHEN u_sys < 0.85
            THEN (ARRAY['netsuite','sap','quickbooks','stripe','adyen','paypal','bank_feed','xero',
                        'oracle_gl','workday'])[1 + floor(u_sys / 0.085)::int]
            ELSE 'legacy_' || lpad((1 + floor((u_sys - 0.85) / 0.15 * 200))::int::text, 3, '0') END,
       'EXT-' || CASE WHEN paired THEN k::text ELSE k || '-' || g END,
       round((5 + 99995 * u_amount ^ 4)::numeric, 2),
       CASE WHEN u_cur < 0.6 THEN 'USD' WHEN u_cur < 0.8 THEN 'EUR' WHEN u_cur < 0.9 THEN 'GBP'
            WHEN u_cur < 0.95 THEN 'CAD' ELSE 'AUD' END,
       date '2023-01-01' + day,
       CASE WHEN paired THEN CASE WHEN u_status < 0.9 THEN 'matched' ELSE 'pending' END
            WHEN u_status < 0.7 THEN 'unmatched' WHEN u_status < 0.9 THEN 'pending' ELSE 'exception' END,
       to_timestamp(1672531200 + 86400 * (day + 1 + 4 * u_lag))
FROM (SELECT g, k, paired, ds, pg_temp.kit_u(ds, %(seed)s, 42) AS u_sys,  -- one system per source
        pg_temp.kit_u(src, %(seed)s, 43) AS u_amount, pg_temp.kit_u(src, %(seed)s, 44) AS u_cur,
        floor(730 * pg_temp.kit_u(src, %(seed)s, 45))::int AS day,
        pg_temp.kit_u(g, %(seed)s, 46) AS u_lag, pg_temp.kit_u(g, %(seed)s, 47) AS u_status
      FROM (SELECT g, k, paired, CASE WHEN paired THEN k ELSE -g END AS src,
              CASE WHEN paired THEN 2 * pg_temp.kit_pick(k, %(seed)s, 41, %(n_projects)s, 1.5) - mod(g, 2)
                   ELSE pg_temp.kit_pick(g, %(seed)s, 48, %(n_data_sources)s, 1.5) END AS ds
            FROM (SELECT g, (g + 1) / 2 AS k, pg_temp.kit_u((g + 1) / 2, %(seed)s, 49) < 0.7 AS paired
                  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r
            OFFSET 0) AS s OFFSET 0) AS t
"""

INSERT_RESULTS = """
/* kit */ INSERT INTO reconciliation_results (id, job_id, left_record_id, right_record_id,
                                              confidence, status, created_at) OVERRIDING SYSTEM VALUE
SELECT g, job_id, left_id,
       CASE WHEN status = 'unmatched' THEN NULL WHEN mod(left_id, 2) = 0 THEN left_id - 1
            ELSE least(left_id + 1, %(n_reconciliation_records)s) END,
       confidence, status,
       to_timestamp(pg_temp.kit_job_epoch(job_id, job_project, %(seed)s, %(n_projects)s) + 60 + 7200 * u_lag)
FROM (SELECT *, pg_temp.kit_job_project(job_id, %(seed)s, %(n_projects)s) AS job_project,
             CASE WHEN confidence >= 0.85 THEN 'matched'
                  WHEN confidence >= 0.6 THEN CASE WHEN u_reject < 0.15 THEN 'rejected' ELSE 'review' END
                  ELSE 'unmatched' END AS status
      FROM (SELECT g, pg_temp.kit_pick(g, %(seed)s, 51, %(n_reconciliation_jobs)s, 1.5) AS job_id,
              pg_temp.kit_pick(g, %(seed)s, 52, %(n_reconciliation_records)s, 1.0) AS left_id,
              round((1 - pg_temp.kit_u(g, %(seed)s, 54) ^ 3)::numeric, 4) AS confidence,
              pg_temp.kit_u(g, %(seed)s, 55) AS u_reject, pg_temp.kit_u(g, %(seed)s, 56) AS u_lag
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r OFFSET 0) AS s
"""

INSERT_MATCHES = """
/* kit */ INSERT INTO reconciliation_matches (id, project_id, job_id, left_record_id, right_record_id,
                                              confidence, match_type, created_at) OVERRIDING SYSTEM VALUE
SELECT g, job_project, job_id, 2 * pair - 1, 2 * pair, round((1 - 0.65 * u_conf ^ 6)::numeric, 4),
       CASE WHEN u_type < 0.5 THEN 'exact' WHEN u_type < 0.75 THEN 'rule'
            WHEN u_type < 0.95 THEN 'fuzzy' ELSE 'manual' END,
       to_timestamp(pg_temp.kit_job_epoch(job_id, job_project, %(seed)s, %(n_projects)s) + 60 + 7200 * u_lag)
FROM (SELECT *, pg_temp.kit_job_project(job_id, %(seed)s, %(n_projects)s) AS job_project
      FROM (SELECT g, pg_temp.kit_pick(g, %(seed)s, 61, %(n_reconciliation_jobs)s, 1.5) AS job_id,
              pg_temp.kit_pick(g, %(seed)s, 62, %(n_reconciliation_records)s / 2, 1.0) AS pair,
              pg_temp.kit_u(g, %(seed)s, 64) AS u_conf, pg_temp.kit_u(g, %(seed)s, 65) AS u_type,
              pg_temp.kit_u(g, %(seed)s, 66) AS u_lag
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r OFFSET 0) AS s
"""

INSERT_FILES = """
/* kit */ INSERT INTO uploaded_files (id, project_id, uploaded_by, filename, content_type, file_size,
                                      status, created_at) OVERRIDING SYSTEM VALUE
SELECT g, project_id,
       CASE WHEN u_by < 0.6 THEN pg_temp.kit_project_owner(project_id, %(seed)s, %(n_users)s)
            ELSE other_user END,
       kind || '_' || g || '.' || ext,
       CASE ext WHEN 'csv' THEN 'text/csv' WHEN 'json' THEN 'application/json'
                WHEN 'pdf' THEN 'application/pdf'
                ELSE 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet' END,
       1024 + floor(50000000 * u_size ^ 4)::bigint,
       CASE WHEN u_status < 0.90 THEN 'processed' WHEN u_status < 0.95 THEN 'failed'
            WHEN u_status < 0.98 THEN 'processing' ELSE 'uploaded' END,
       to_timestamp(pg_temp.kit_after(pg_temp.kit_project_epoch(project_id, %(seed)s, %(n_projects)s), u_e))
FROM (SELECT g, pg_temp.kit_pick(g, %(seed)s, 71, %(n_projects)s, 1.5) AS project_id,
        pg_temp.kit_pick(g, %(seed)s, 72, %(n_users)s, 2.0) AS other_user,
        (ARRAY['bank_statement','gl_export','card_settlements','payroll','vendor_invoices','ar_aging'])
            [1 + floor(6 * pg_temp.kit_u(g, %(seed)s, 73))::int] AS kind,
        (ARRAY['csv','csv','xlsx','json','pdf'])[1 + floor(5 * pg_temp.kit_u(g, %(seed)s, 74))::int] AS ext,
        pg_temp.kit_u(g, %(seed)s, 75) AS u_by, pg_temp.kit_u(g, %(seed)s, 76) AS u_size,
        pg_temp.kit_u(g, %(seed)s, 77) AS u_status, pg_temp.kit_u(g, %(seed)s, 78) AS u_e
      FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r
"""

INSERT_AUDIT = """
/* kit */ INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, ip_address,
                                  created_at) OVERRIDING SYSTEM VALUE
SELECT g, CASE WHEN u_system >= 0.05 THEN user_id END,
       CASE WHEN u_action < 0.50 THEN 'view' WHEN u_action < 0.75 THEN 'update'
            WHEN u_action < 0.90 THEN 'create' WHEN u_action < 0.97 THEN 'export' ELSE 'delete' END,
       resource_type, pg_temp.kit_pick(g, %(seed)s, 85, n_resource, 1.5),
       ('10.' || (ip >> 16) || '.' || ((ip >> 8) & 255) || '.' || (ip & 255))::inet, to_timestamp(e)
FROM (SELECT *, CASE resource_type WHEN 'project' THEN %(n_projects)s
                    WHEN 'reconciliation_job' THEN %(n_reconciliation_jobs)s
                    WHEN 'data_source' THEN %(n_data_sources)s WHEN 'user' THEN %(n_users)s
                    ELSE %(n_uploaded_files)s END::bigint AS n_resource
      FROM (SELECT *, CASE WHEN u_type < 0.35 THEN 'project' WHEN u_type < 0.70 THEN 'reconciliation_job'
                           WHEN u_type < 0.80 THEN 'data_source' WHEN u_type < 0.90 THEN 'user'
                           ELSE 'uploaded_file' END AS resource_type
            FROM (SELECT g, pg_temp.kit_pick(g, %(seed)s, 81, %(n_users)s, 2.0) AS user_id,
                    pg_temp.kit_u(g, %(seed)s, 82) AS u_system, pg_temp.kit_u(g, %(seed)s, 83) AS u_action,
                    pg_temp.kit_u(g, %(seed)s, 84) AS u_type,
                    floor(16777216 * pg_temp.kit_u(g, %(seed)s, 86))::int AS ip,
                    pg_temp.kit_epoch(g, %(n_audit_logs)s, %(seed)s, 87) AS e
                  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r
            OFFSET 0) AS s OFFSET 0) AS t
"""

INSERT_ACTIVITY = """
/* kit */ INSERT INTO user_activity_logs (id, user_id, activity_type, description, created_at)
OVERRIDING SYSTEM VALUE
SELECT g, user_id, activity_type, initcap(replace(activity_type, '_', ' ')), to_timestamp(e)
FROM (SELECT g, user_id, e,
             CASE WHEN u_type < 0.30 THEN 'login' WHEN u_type < 0.65 THEN 'view_project'
                  WHEN u_type < 0.80 THEN 'run_job' WHEN u_type < 0.88 THEN 'upload_file'
                  WHEN u_type < 0.93 THEN 'export_report' ELSE 'logout' END AS activity_type
      FROM (SELECT g, pg_temp.kit_pick(g, %(seed)s, 91, %(n_users)s, 2.0) AS user_id,
              pg_temp.kit_u(g, %(seed)s, 92) AS u_type,
              pg_temp.kit_epoch(g, %(n_user_activity_logs)s, %(seed)s, 93) AS e
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r OFFSET 0) AS s
"""

INSERTS: dict[str, str] = {
    "users": INSERT_USERS,
    "projects": INSERT_PROJECTS,
    "data_sources": INSERT_DATA_SOURCES,
    "reconciliation_jobs": INSERT_JOBS,
    "reconciliation_records": INSERT_RECORDS,
    "reconciliation_results": INSERT_RESULTS,
    "reconciliation_matches": INSERT_MATCHES,
    "uploaded_files": INSERT_FILES,
    "audit_logs": INSERT_AUDIT,
    "user_activity_logs": INSERT_ACTIVITY,
}


def _params(scale: Scale, seed: int, lo: int, hi: int) -> dict[str, int]:
    counts = {f"n_{f.name}": getattr(scale, f.name) for f in fields(scale) if f.name != "name"}
    return {"seed": seed, "lo": lo, "hi": hi, **counts}


def _render(conn: Connection, stmt: sql.Composable) -> str:
    return stmt.as_string(conn.connection.driver_connection)


SET_LOCAL = "/* kit */ SELECT set_config(%(name)s, %(value)s, true)"


def _configure(conn: Connection, lock_timeout_ms: int) -> None:
    # TRUNCATE waits for every session using the tables: fail with advice instead of hanging.
    # JIT compiles each chunk's expressions for nothing; a generic plan (psycopg prepares a
    # statement run 5 times) would hash the seed again on every row; memory lets keys build
    # in one sort.
    settings = {
        "lock_timeout": str(int(lock_timeout_ms)),
        "jit": "off",
        "plan_cache_mode": "force_custom_plan",
        "work_mem": "64MB",
        "maintenance_work_mem": "256MB",
    }
    for name, value in settings.items():
        conn.exec_driver_sql(SET_LOCAL, {"name": name, "value": value})


def _truncate(conn: Connection) -> None:
    stmt = sql.SQL("/* kit */ TRUNCATE {} RESTART IDENTITY CASCADE").format(
        sql.SQL(", ").join(map(sql.Identifier, TABLES))
    )
    conn.exec_driver_sql(_render(conn, stmt))


SET_IDENTITY = "/* kit */ SELECT setval(pg_get_serial_sequence(quote_ident(%(table)s), 'id'), %(last)s)"


def _load_table(conn: Connection, table: str, scale: Scale, seed: int, bar: tqdm) -> TableLoad:
    """Insert ``scale``'s rows into ``table`` chunk by chunk; ids are 1..n."""
    n = scale.rows[table]
    started = time.perf_counter()
    for lo in range(1, n + 1, CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS - 1, n)
        conn.exec_driver_sql(INSERTS[table], _params(scale, seed, lo, hi))
        bar.update(hi - lo + 1)
    # Ids were given explicitly (OVERRIDING SYSTEM VALUE): move the identity past them so
    # the application's own inserts keep working.
    conn.exec_driver_sql(SET_IDENTITY, {"table": table, "last": n})
    return TableLoad(rows=n, seconds=time.perf_counter() - started)


SAVE_META = """
/* kit */ INSERT INTO kit_meta (key, value)
VALUES ('scale', %(scale)s), ('seed', %(seed)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
"""


def seed(
    engine: Engine,
    *,
    scale: str = "demo",
    seed: int = 42,
    progress: bool = True,
    lock_timeout_ms: int = 10_000,
) -> SeedResult:
    """Replace the platform's data with the ``scale`` data set made from ``seed``.

    All in one transaction, so other sessions see the old data or the new, never a mix:

    1. create the schema if it is missing;
    2. set aside keys and indexes (PostgreSQL's bulk-load advice; the same ones come back);
    3. truncate the ten tables (RESTART IDENTITY CASCADE);
    4. load them in dependency order, one progress bar per table;
    5. rebuild primary keys and indexes, ANALYZE, validate foreign keys;
    6. record scale and seed in ``kit_meta``.
    """
    spec = get_scale(scale)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not -(2**63) <= seed < 2**63:
        raise ValueError(f"seed must fit in a bigint (-2**63 .. 2**63-1), got {seed}")
    started = time.perf_counter()
    loads: dict[str, TableLoad] = {}
    try:
        with engine.begin() as conn:
            _configure(conn, lock_timeout_ms)
            create_schema(conn)
            conn.exec_driver_sql(HELPERS)
            aside = set_aside_keys(conn)
            _truncate(conn)
            for table in TABLES:
                with tqdm(
                    total=spec.rows[table], desc=table, unit="rows", unit_scale=True,
                    disable=not progress,
                ) as bar:
                    loads[table] = _load_table(conn, table, spec, seed, bar)
            restore_keys(conn, aside, analyze=True)
            conn.exec_driver_sql(SAVE_META, {"scale": spec.name, "seed": str(seed)})
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise KitError(
                f"seeding waited more than {lock_timeout_ms} ms for a lock on the platform's "
                "tables: another session is using them (an open notebook transaction?). "
                "Commit or close it, then seed again."
            ) from exc
        raise
    return SeedResult(
        scale=spec.name, seed=seed, seconds=time.perf_counter() - started, tables=loads
    )


READ_META = "/* kit */ SELECT key, value FROM kit_meta WHERE key IN ('scale', 'seed')"
META_EXISTS = "/* kit */ SELECT to_regclass(quote_ident(%(table)s)) IS NOT NULL"


def seeded_scale(conn: Connection) -> tuple[str, int] | None:
    """``(scale, seed)`` of the last :func:`seed`, or None when never seeded."""
    if not conn.exec_driver_sql(META_EXISTS, {"table": META_TABLE}).scalar_one():
        return None
    meta = dict(conn.exec_driver_sql(READ_META).all())
    if "scale" not in meta or "seed" not in meta:
        return None
    return meta["scale"], int(meta["seed"])
