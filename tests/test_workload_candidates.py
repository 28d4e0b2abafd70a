"""N+1 and cache candidates from pg_stat_statements alone, on a database that is not the platform."""

from __future__ import annotations

import psycopg

from kit.config import libpq_url
from kit.workload.candidates import batched_form, cache_hit_rate
from kit.workload.tables import candidates


def test_batched_forms_and_hit_rates_pure():
    assert batched_form("SELECT count(*) FROM jobs WHERE project_id = $1 AND status = $2", "project_id") == \
        "SELECT project_id, count(*) FROM jobs WHERE project_id = ANY($1) AND status = $2 GROUP BY project_id"
    assert batched_form("SELECT id, name FROM users WHERE id = $1", "id") == \
        "SELECT id, name FROM users WHERE id = ANY($1)"
    assert batched_form("SELECT 1", "id") is None
    assert cache_hit_rate(200, 5, 0) == 0.975 and cache_hit_rate(200, 500, 0) == 0.0
    assert cache_hit_rate(200, 5, 45) == 0.75


def test_candidates_from_the_statistics_alone(shop_engine):
    url = libpq_url(shop_engine.url.render_as_string(hide_password=False))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE countries (code text PRIMARY KEY, name text)")
        conn.execute("INSERT INTO countries VALUES ('de', 'Germany'), ('fr', 'France'), ('us', 'USA')")
        conn.execute("ANALYZE countries")
        for i in range(150):
            conn.execute("SELECT count(*) FROM order_items WHERE order_id = %s", [1 + i])  # one per order: a loop
            conn.execute("SELECT name FROM countries WHERE code = %s", [("de", "fr", "us")[i % 3]])
    plus, cache, basis = candidates(shop_engine, min_calls=100)
    assert plus[["query", "key", "rows_per_call", "calls"]].values.tolist() == [
        ["SELECT count(*) FROM order_items WHERE order_id = $1", "order_items.order_id", 1.0, 150]]
    assert plus["batched"].iloc[0] == ("SELECT order_id, count(*) FROM order_items WHERE order_id = ANY($1) "
                                       "GROUP BY order_id")
    assert cache["query"].tolist() == ["SELECT name FROM countries WHERE code = $1"]  # products: too many keys
    assert (cache["keys"].iloc[0], cache["writes"].iloc[0], cache["est_hit_rate"].iloc[0]) == (3, 0, 0.98)
    assert "candidates, not proof" in basis
    plus, cache, _ = candidates(shop_engine, min_calls=151)
    assert plus.empty and cache.empty
