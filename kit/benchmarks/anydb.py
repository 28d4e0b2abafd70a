"""Benchmark: the general loop on a database that is not the platform (talks to PostgreSQL).

A small shop schema — customers, products, orders, order_items (the biggest table: ``rows``
rows, 1.2 M at scale demo), payments — is built with planted problems:

- ``order_items.order_id`` references orders and has no index (a missing foreign-key index);
- the hot lookup of an order by ``tracking_code`` has only ``(status, tracking_code)``, an index
  on the wrong leading column;
- ``products_sku_idx`` duplicates the index of the ``UNIQUE (sku)`` constraint;
- ``customers_email_c_idx`` is ``(email COLLATE "C")`` next to ``(email)``: it looks like a
  duplicate and is not one (a collation-only look-alike, used by its own query);
- ``payments`` was analyzed at 1 % of its rows, then loaded, with autovacuum off: stale statistics.

With ``real_world`` (the benchmark's default), three shapes real databases have and the demo does
not, each with its own planted problem:

- ``events`` is partitioned by month (as many rows as ``order_items``); the hot read counts one
  account's events of one week: it needs ``(account_id, created_at)`` on the partitioned parent
  (built partition by partition, then attached);
- ``tickets`` has a skewed ``status`` (0.5 % ``'open'``); the hot read asks for one assignee's open
  tickets: a partial index ``(assignee_id) WHERE status = 'open'`` serves it at a fraction of the size;
- ``heartbeats`` is write-heavy: every device's row is updated over and over (HOT updates of
  ``seen_at``), and a rare read filters on ``seen_at``: an index there would cost the writes more
  than it saves the read — planting no problem, only a trap (any fix on it is a false positive).

A parameterized workload is driven through psycopg, so pg_stat_statements has real calls; the
loop then runs end to end with apply; the same workload is driven again, and the share of the
database's time the planted statements take before and after comes from pg_stat_statements.
"""

from __future__ import annotations

import hashlib
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import psycopg

from kit.audit.statements import statements_frame
from kit.config import libpq_url
from kit.db.engine import make_engine, one_row
from kit.fixes import KEPT, run_loop
from kit.fixes.model import ANALYZE, CREATE, DROP
from kit.workload import read_workload

SEEDS_PLATFORM = False  # kit.benchmarks.bench gives this benchmark an empty database
ROWS = {"tiny": 100_000, "demo": 1_200_000, "large": 5_000_000}
SCALES = ("demo", "tiny", "large")  # kit bench anydb --scale: the first is the default

SCHEMA = """
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL, name text, country text,
                        created_at timestamptz NOT NULL);
CREATE TABLE products (id bigint PRIMARY KEY, sku text NOT NULL, name text, price numeric(10, 2),
                       CONSTRAINT products_sku_key UNIQUE (sku));
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL,
                     tracking_code text NOT NULL, total numeric(12, 2), created_at timestamptz NOT NULL);
CREATE TABLE order_items (id bigint PRIMARY KEY, order_id bigint NOT NULL, product_id bigint NOT NULL,
                          qty int NOT NULL, price numeric(10, 2));
CREATE TABLE payments (id bigint PRIMARY KEY, order_id bigint NOT NULL, amount numeric(12, 2), method text,
                       paid_at timestamptz NOT NULL) WITH (autovacuum_enabled = false);
"""
LOAD = (
    """INSERT INTO customers SELECT g, 'user' || g || '@example.org', 'customer ' || g,
       (ARRAY['de', 'fr', 'us', 'uk', 'jp'])[1 + g %% 5], timestamptz '2024-01-01' + g * interval '1 minute'
       FROM generate_series(1, %(customers)s::bigint) g""",
    """INSERT INTO products SELECT g, 'SKU-' || lpad(g::text, 8, '0'), 'product ' || g, 1 + g %% 500
       FROM generate_series(1, %(products)s::bigint) g""",
    """INSERT INTO orders SELECT g, 1 + (g * 7919) %% %(customers)s,
       (ARRAY['new', 'paid', 'shipped', 'delivered'])[1 + g %% 4], md5(g::text), (g %% 1000) / 3.0,
       timestamptz '2024-01-01' + g * interval '30 seconds'
       FROM generate_series(1, %(orders)s::bigint) g""",
    """INSERT INTO order_items SELECT g, 1 + (g - 1) %% %(orders)s, 1 + (g * 31) %% %(products)s, 1 + g %% 5,
       1 + g %% 300 FROM generate_series(1, %(rows)s::bigint) g""",
)
PAYMENTS = """
INSERT INTO payments SELECT g, 1 + (g - 1) %% %(orders)s, (g %% 900) / 2.0, (ARRAY['card', 'bank', 'cash'])[1 + g %% 3],
       timestamptz '2024-01-01' + g * interval '10 seconds'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) g
"""
CONSTRAINTS = """
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers;
ALTER TABLE order_items ADD CONSTRAINT order_items_order_fk FOREIGN KEY (order_id) REFERENCES orders;
ALTER TABLE order_items ADD CONSTRAINT order_items_product_fk FOREIGN KEY (product_id) REFERENCES products;
ALTER TABLE payments ADD CONSTRAINT payments_order_fk FOREIGN KEY (order_id) REFERENCES orders;
CREATE INDEX customers_email_idx ON customers (email);
CREATE INDEX customers_email_c_idx ON customers (email COLLATE "C");
CREATE INDEX products_sku_idx ON products (sku);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_status_tracking_idx ON orders (status, tracking_code);
CREATE INDEX order_items_product_idx ON order_items (product_id);
CREATE INDEX payments_order_idx ON payments (order_id);
CREATE INDEX payments_paid_at_idx ON payments (paid_at);
ANALYZE customers;
ANALYZE products;
ANALYZE orders;
ANALYZE order_items;
"""

REAL_WORLD = """
CREATE TABLE events (id bigint NOT NULL, account_id int NOT NULL, kind text NOT NULL, created_at timestamptz NOT NULL)
    PARTITION BY RANGE (created_at);
CREATE TABLE tickets (id bigint PRIMARY KEY, status text NOT NULL, assignee_id int NOT NULL, subject text);
CREATE TABLE heartbeats (device_id int PRIMARY KEY, seen_at timestamptz NOT NULL, state text NOT NULL)
    WITH (fillfactor = 70);
"""
EVENTS_START, EVENTS_MONTHS = "2024-01-01", 6
REAL_WORLD_LOAD = (
    """INSERT INTO events SELECT g, g %% %(accounts)s, (ARRAY['view', 'click', 'buy'])[1 + g %% 3],
       timestamptz '2024-01-01' + (g::float8 / %(events)s) * interval '180 days'
       FROM generate_series(1, %(events)s::bigint) g""",
    """INSERT INTO tickets SELECT g, CASE WHEN g %% 200 = 0 THEN 'open' WHEN g %% 3 = 0 THEN 'pending'
       ELSE 'closed' END, abs(hashint8(g)) %% %(assignees)s, 'ticket ' || g
       FROM generate_series(1, %(tickets)s::bigint) g""",
    """INSERT INTO heartbeats SELECT g, timestamptz '2024-01-01', 'ok' FROM generate_series(1, %(devices)s) g""",
)

FLUSH = "SELECT /* kit */ pg_stat_force_next_flush()"

# (what was planted, the fix that finds it: kind, table, index or leading column)
PLANTED = (
    ("missing foreign-key index on order_items.order_id", CREATE, "public.order_items", "order_id"),
    ("index on the wrong column for orders by tracking_code", CREATE, "public.orders", "tracking_code"),
    ("products_sku_idx duplicates the UNIQUE (sku) constraint", DROP, "public.products", "public.products_sku_idx"),
    ("stale statistics on payments", ANALYZE, "public.payments", None),
)
LOOK_ALIKE = "public.customers_email_c_idx"  # (email COLLATE "C"): not a duplicate of (email)
PLANTED_REAL_WORLD = (
    ("one account's week of the partitioned events", CREATE, "public.events", "account_id"),
    ("one assignee's open tickets: a partial index", CREATE, "public.tickets", "assignee_id) WHERE"),
)
# right, but not planted: whether autovacuum has analyzed heartbeats since its writes is its timing
ACCEPTED = (("heartbeats' statistics stale from its writes", ANALYZE, "public.heartbeats", None),)
TRAP = "public.heartbeats"  # write-heavy: no index pays for itself there


def sizes(rows: int) -> dict[str, int]:
    return {
        "rows": rows,
        "orders": max(rows // 4, 10),
        "customers": max(rows // 12, 10),
        "products": max(rows // 60, 10),
        "payments": max(rows // 3, 100),
        "events": rows,
        "accounts": max(rows // 600, 10),
        "tickets": max(rows // 4, 1000),
        "assignees": max(rows // 4000, 10),
        "devices": max(rows // 100, 100),
    }


def build(url: str, *, rows: int, owner: str | None = None, real_world: bool = False) -> dict[str, int]:
    """Create the shop schema with its planted problems in the (empty) database at ``url``; with
    ``owner``, the tables belong to that role (the kit may connect as another); with ``real_world``,
    the partitioned, skewed and write-heavy tables too (see the module docstring)."""
    n = sizes(rows)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        if owner:
            conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(owner)))
        conn.execute(SCHEMA)
        with conn.transaction():
            for stmt in LOAD:
                conn.execute(stmt, n)
        early = max(n["payments"] // 100, 50)
        conn.execute(PAYMENTS, {**n, "first": 1, "last": early})
        # A session sends its row counts to the shared statistics at most once a second: without this,
        # the inserts above could arrive after the ANALYZEs below and make fresh statistics look stale.
        conn.execute(FLUSH)
        conn.execute("ANALYZE payments")  # at 1 % of its rows; autovacuum is off for it
        conn.execute(PAYMENTS, {**n, "first": early + 1, "last": n["payments"]})
        conn.execute(CONSTRAINTS)
        if real_world:
            _real_world(conn, n)
        conn.execute(FLUSH)
    return n


def _real_world(conn: psycopg.Connection, n: dict[str, int]) -> None:
    conn.execute(REAL_WORLD)
    for month in range(EVENTS_MONTHS):
        conn.execute(
            psycopg.sql.SQL("CREATE TABLE {} PARTITION OF events FOR VALUES FROM ({}) TO ({})").format(
                psycopg.sql.Identifier(f"events_m{month + 1}"),
                psycopg.sql.Literal(f"2024-{month + 1:02d}-01"),
                psycopg.sql.Literal(f"2024-{month + 2:02d}-01"),
            )
        )
    with conn.transaction():
        for stmt in REAL_WORLD_LOAD:
            conn.execute(stmt, n)
    conn.execute(FLUSH)  # the row counts before the ANALYZEs (see build)
    conn.execute("ANALYZE events")
    conn.execute("ANALYZE tickets")
    conn.execute("ANALYZE heartbeats")


def drive(url: str, *, rows: int, scans: int = 40, lookups: int = 200, seed: int = 42, real_world: bool = False) -> int:
    """The application's workload through psycopg (bound parameters); returns the calls made."""
    n, rnd, calls = sizes(rows), random.Random(seed), 0
    with psycopg.connect(libpq_url(url), autocommit=True, application_name="shop-app") as conn:
        recent, last = one_row(
            conn.execute("SELECT /* kit */ (max(paid_at) - interval '1 day')::text, max(id) FROM payments")
        )
        next_payment = last + 1
        for _ in range(scans):
            order = rnd.randint(1, n["orders"])
            conn.execute("SELECT product_id, qty, price FROM order_items WHERE order_id = %s", [order])
            conn.execute(
                "SELECT id, status, total FROM orders WHERE tracking_code = %s",
                [hashlib.md5(str(order).encode()).hexdigest()],
            )
            conn.execute("SELECT sum(amount) FROM payments WHERE paid_at >= %s", [recent])
            calls += 3
        for i in range(lookups):
            customer, product, order = (
                rnd.randint(1, n["customers"]),
                rnd.randint(1, n["products"]),
                rnd.randint(1, n["orders"]),
            )
            conn.execute("SELECT id, name, price FROM products WHERE sku = %s", [f"SKU-{product:08d}"])
            conn.execute("SELECT id, name FROM customers WHERE email = %s", [f"user{customer}@example.org"])
            conn.execute(
                "SELECT id, total FROM orders WHERE customer_id = %s ORDER BY created_at DESC LIMIT 10", [customer]
            )
            conn.execute("UPDATE orders SET status = %s WHERE id = %s", ["paid", order])
            calls += 4
            if i % 2 == 0:
                conn.execute(
                    'SELECT id, email FROM customers WHERE email COLLATE "C" >= %s ORDER BY email COLLATE "C" LIMIT 10',
                    [f"user{customer}"],
                )
                conn.execute(
                    "INSERT INTO payments (id, order_id, amount, method, paid_at) VALUES (%s, %s, %s, %s, now())",
                    [next_payment, order, 10, "card"],
                )
                next_payment += 1
                calls += 2
        if real_world:
            calls += _drive_real_world(conn, n, rnd, scans=scans, lookups=lookups)
    return calls


def _drive_real_world(
    conn: psycopg.Connection, n: dict[str, int], rnd: random.Random, *, scans: int, lookups: int
) -> int:
    """One account's week of events; one assignee's open tickets; heartbeats written over and over and
    read now and then."""
    calls = 0
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for _ in range(scans):
        week = start + timedelta(weeks=rnd.randint(0, 20))
        conn.execute(
            "SELECT count(*), max(created_at) FROM events WHERE account_id = %s AND created_at >= %s "
            "AND created_at < %s",
            [rnd.randint(0, n["accounts"] - 1), week, week + timedelta(weeks=1)],
        )
        calls += 1
    for _ in range(lookups):  # a few open tickets per assignee, hundreds of closed ones
        conn.execute(
            "SELECT id, subject FROM tickets WHERE status = %s AND assignee_id = %s",
            ["open", rnd.randint(0, n["assignees"] - 1)],
        )
        calls += 1
    for i in range(lookups * 25):
        conn.execute(
            "UPDATE heartbeats SET seen_at = now(), state = %s WHERE device_id = %s",
            ["ok" if i % 7 else "late", 1 + i % n["devices"]],
        )
        calls += 1
    for _ in range(max(scans // 4, 10)):
        conn.execute("SELECT device_id FROM heartbeats WHERE seen_at > now() - %s::interval", ["1 second"])
        calls += 1
    return calls


def _finds(fix, kind: str, table: str, what: str | None) -> bool:
    """Whether ``fix`` is the fix of one planted problem: its kind and table, and the index it
    drops or the leading column of the index it creates."""
    if fix.kind != kind or fix.target_table != table:
        return False
    if kind == DROP:
        return fix.index == what
    return what is None or f"({what}" in fix.sql.replace('"', "")


def _planted_found(fixes, planted=PLANTED) -> list[dict]:
    out = []
    for problem, kind, table, what in planted:
        hit = next((f for f in fixes if _finds(f, kind, table, what)), None)
        out.append(
            {
                "problem": problem,
                "found": hit is not None,
                "fix": hit.sql if hit else None,
                "verdict": hit.verdict if hit else None,
                "speedup": hit.speedup if hit else None,
            }
        )
    return out


def _is_planted(fix, planted=PLANTED) -> bool:
    return any(_finds(fix, kind, table, what) for _p, kind, table, what in planted)


def _reproduced(result) -> dict:
    """How many of the loop's workload statements were measured, and of those how many reproduced the workload."""
    frame = result.statements_frame()
    work = frame[~frame["key"].astype(str).str.startswith("probe:")]
    measured = work[work["mode"] == "measured"]
    reproduced = measured["reproduced"].eq(True)
    return {
        "statements": len(work),
        "measured": len(measured),
        "reproduced": int(reproduced.sum()),
        "not_reproduced": list(measured.loc[measured["reproduced"].eq(False), "evidence"]),
    }


def _share(url: str, keys: set[str], before=None) -> tuple[float, object]:
    """Share (%) of the database's execution time the statements ``keys`` took since ``before``."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            now = statements_frame(conn)
            conn.rollback()
    finally:
        engine.dispose()
    frame = (
        now
        if before is None
        else now.merge(before[["queryid", "total_ms"]], on="queryid", how="left", suffixes=("", "_b")).assign(
            total_ms=lambda f: f["total_ms"] - f["total_ms_b"].fillna(0)
        )
    )
    total = float(frame["total_ms"].sum())
    mine = float(frame[frame["queryid"].astype(str).isin(keys)]["total_ms"].sum())
    return (100 * mine / total if total > 0 else 0.0), now


def run(
    *, database_url: str, redis_url: str, scale: str, seed: int, rows: int | None = None, real_world: bool = True
) -> dict:
    """Build, drive, run the loop with apply, drive again; the figures the issue asks for."""
    del redis_url
    rows = rows or ROWS[scale]
    built_at = time.monotonic()
    n = build(database_url, rows=rows, real_world=real_world)
    build_s = time.monotonic() - built_at
    calls = drive(database_url, rows=rows, seed=seed, real_world=real_world)
    engine = make_engine(database_url)
    try:
        started = time.monotonic()
        workload = read_workload(engine, top=15, min_calls=10)
        result = run_loop(engine, workload, apply=True, out=None)
        loop_seconds = time.monotonic() - started
    finally:
        engine.dispose()
    fixes = result.fixes
    helped = {k for f in fixes if f.kind == CREATE for k in f.statements if not k.startswith("probe:")}
    share_before, snap = _share(database_url, helped)
    drive(database_url, rows=rows, seed=seed + 1, real_world=real_world)
    share_after, _ = _share(database_url, helped, before=snap)
    kept = [f for f in fixes if f.kind == CREATE and f.verdict == KEPT and f.speedup]
    speedups = [f.speedup for f in kept if f.speedup]  # each kept fix's, in order
    every = PLANTED + (PLANTED_REAL_WORLD if real_world else ())
    planted = _planted_found(fixes, every)
    wrong = [f.to_record() for f in fixes if not _is_planted(f, every + (ACCEPTED if real_world else ()))]
    look_alike_dropped = any(f.kind == DROP and f.index == LOOK_ALIKE for f in fixes)
    return {
        "rows": n,
        "workload_calls": calls,
        "build_seconds": round(build_s, 2),
        "planted": planted,
        "found": sum(p["found"] for p in planted) / len(planted),
        "false_positives": len(wrong),
        "false_positive_fixes": wrong,
        "look_alike_dropped": look_alike_dropped,
        "fixes": [f.to_record() for f in fixes],
        "write_overhead": [
            {
                "index": f.index,
                "rows_written": f.rows_written,
                "write_ms_estimate": f.write_ms,
                "saved_ms_estimate": f.saved_ms,
            }
            for f in kept
        ],
        "trap_indexed": any(f.target_table == TRAP and f.kind == CREATE for f in fixes),
        "reproduced": _reproduced(result),
        "median_speedup": statistics.median(speedups) if speedups else None,
        "min_kept_speedup": min(speedups, default=None),
        "db_time_share_before": round(share_before, 2),
        "db_time_share_after": round(share_after, 2),
        "db_time_share_statements": sorted(helped),
        "loop_seconds": round(loop_seconds, 2),
        "goals": {
            "every_planted_found": all(p["found"] for p in planted),
            "no_false_positive": not wrong,
            "kept_indexes_10x": bool(speedups) and all(s >= 10 for s in speedups),
            "loop_within_60s": loop_seconds <= 60,
            "no_index_on_the_write_heavy_table": not any(f.target_table == TRAP and f.kind == CREATE for f in fixes),
        },
    }
