"""Normalized texts pg_stat_statements leaves unpreparable, made preparable with their $n kept (pure),
and the TPC-H ones prepared on a real server."""

from __future__ import annotations

import psycopg
import pytest

from kit.benchmarks import _tpch
from kit.config import libpq_url
from kit.sqltext.refs import references
from kit.sqltext.retype import FIELD_GUESS, ParamContext, contexts, retype
from kit.workload.params import by_type

# As pg_stat_statements (PostgreSQL 15) normalizes the TPC-H queries kit bench advisor sends.
Q1 = ("select l_returnflag, sum(l_extendedprice * ($1 - l_discount) * ($2 + l_tax)) as sum_charge from lineitem "
      "where l_shipdate <= date $3 - interval $4 day group by l_returnflag order by l_returnflag")
Q4 = ("select o_orderpriority, count(*) as order_count from orders where o_orderdate >= date $1 and o_orderdate < "
      "date $2 + interval $3 month and exists (select * from lineitem where l_orderkey = o_orderkey and "
      "l_commitdate < l_receiptdate) group by o_orderpriority order by o_orderpriority")
Q6 = ("select sum(l_extendedprice * l_discount) as revenue from lineitem where l_shipdate >= date $1 and "
      "l_shipdate < date $2 + interval $3 year and l_discount between $4 - $5 and $6 + $7 and l_quantity < $8")
Q7 = ("select supp_nation, l_year, sum(volume) as revenue from (select n1.n_name as supp_nation, "
      "extract($1 from l_shipdate) as l_year, l_extendedprice * ($2 - l_discount) as volume from supplier, lineitem, "
      "nation n1 where s_suppkey = l_suppkey and s_nationkey = n1.n_nationkey and n1.n_name = $3 and l_shipdate "
      "between date $4 and date $5) as shipping group by supp_nation, l_year order by supp_nation, l_year")
Q12 = ("select l_shipmode, sum(case when o_orderpriority = $1 or o_orderpriority = $2 then $3 else $4 end) as high "
       "from orders, lineitem where o_orderkey = l_orderkey and l_shipmode in ($5, $6) and l_receiptdate >= date $7 "
       "and l_receiptdate < date $8 + interval $9 year group by l_shipmode order by l_shipmode")
Q19 = ("select sum(l_extendedprice * ($1 - l_discount)) as revenue from lineitem, part where (p_partkey = l_partkey "
       "and p_brand = $2 and l_quantity >= $3 and l_quantity <= $4 + $5 and p_size between $6 and $7) or "
       "(p_partkey = l_partkey and p_brand = $8 and l_quantity >= $9 and l_quantity <= $10 + $11)")
Q15 = ("with revenue0 (supplier_no, total_revenue) as (select l_suppkey, sum(l_extendedprice * ($1 - l_discount)) "
       "from lineitem where l_shipdate >= date $2 and l_shipdate < date $3 + interval $4 month group by l_suppkey) "
       "select s_suppkey, total_revenue from supplier, revenue0 where s_suppkey = supplier_no and total_revenue = "
       "(select max(total_revenue) from revenue0) order by s_suppkey")
TPCH = {"q1": Q1, "q4": Q4, "q6": Q6, "q7": Q7, "q12": Q12, "q15": Q15, "q19": Q19}


def test_typed_literals_become_casts_and_keep_their_numbers():
    done = retype(Q4)
    assert "CAST($1 AS date)" in done.text and "CAST($2 AS date) + CAST($3 AS interval month)" in done.text
    assert done.changes == ("a typed literal: CAST($1 AS date)", "a typed literal: CAST($2 AS date)",
                            "a typed literal: CAST($3 AS interval month)")
    assert references(done.text).nparams == references(Q4).nparams == 3
    stamp = retype("SELECT 1 FROM t WHERE at > timestamp with time zone $1")
    assert stamp.text == "SELECT 1 FROM t WHERE at > CAST($1 AS timestamp with time zone)"


def test_texts_postgresql_accepts_come_back_unchanged():
    for text in ("SELECT * FROM t WHERE d >= $1::date AND e < CAST($2 AS date) -- kept\n",
                 "select $1 * sum(x) from t where k = $2 limit $3", "select substring(c from $1 for $2) from t"):
        assert retype(text).text == text and not retype(text).changed
    assert retype("SELEC 1") is None


def test_extract_becomes_its_function_and_its_field_is_a_guess_said_so():
    done = retype(Q7)
    assert "pg_catalog.extract(CAST($1 AS text), l_shipdate) AS l_year" in done.text
    assert any(f"'{FIELD_GUESS}' assumed" in c for c in done.changes)
    ctx = contexts(done.text)
    assert ctx[1] == ParamContext(1, "text", "field") and ctx[2].role == "operand"
    assert by_type("text", role="field") == ("year", "the field of extract: not in pg_stat_statements, 'year' guessed")


def test_arithmetic_of_parameters_takes_the_compared_columns_type_else_numeric():
    typed = retype(Q6, column_type=lambda qualifier, column: {"l_discount": "numeric"}.get(column))
    assert "l_discount BETWEEN CAST($4 AS numeric) - CAST($5 AS numeric) AND CAST($6 AS numeric) + " \
           "CAST($7 AS numeric)" in typed.text
    ints = retype(Q19, column_type=lambda qualifier, column: "integer" if column == "l_quantity" else None)
    assert "l_quantity <= CAST($4 AS integer) + CAST($5 AS integer)" in ints.text
    assert "CAST($10 AS integer) + CAST($11 AS integer)" in ints.text
    assert "($1 - l_discount)" in ints.text  # next to a column PostgreSQL types it itself
    bare = retype("SELECT $1 + $2 FROM t")
    assert bare.text == "SELECT CAST($1 AS numeric) + CAST($2 AS numeric) FROM t"


def test_unknown_results_of_sum_become_numbers():
    done = retype(Q12)
    assert "sum(CASE WHEN o_orderpriority = $1 OR o_orderpriority = $2 THEN CAST($3 AS numeric) " \
           "ELSE CAST($4 AS numeric) END)" in done.text
    assert retype("SELECT avg($1) FROM t").text == "SELECT avg(CAST($1 AS numeric)) FROM t"


def test_contexts_and_values_by_type():
    ctx = contexts(retype(Q1).text)
    assert ctx[3] == ParamContext(3, "date", "operand") and ctx[4] == ParamContext(4, "interval day", "offset")
    assert ctx[1] == ParamContext(1, None, "operand")
    assert by_type("interval", cast="interval month") == ("1", "an interval: 1 month guessed")
    assert by_type("interval") == ("1 day", "an interval: 1 day guessed")
    assert by_type("numeric", role="offset") == ("0", "a numeric that moves a bound: 0 guessed (the bound alone)")
    assert by_type("numeric", role="operand")[0] == "1" and by_type("date") is None


@pytest.fixture
def tpch_schema(fresh_db_url) -> str:
    with psycopg.connect(libpq_url(fresh_db_url), autocommit=True) as conn:
        conn.execute(_tpch.SCHEMA)
    return fresh_db_url


@pytest.mark.parametrize("name", sorted(TPCH))
def test_rebuilt_tpch_texts_prepare_on_a_real_server(tpch_schema, name):
    text = TPCH[name]
    with psycopg.connect(libpq_url(tpch_schema), autocommit=True) as conn:
        with pytest.raises(psycopg.Error):  # as pg_stat_statements has it: no SQL PostgreSQL accepts
            conn.execute(f"PREPARE original AS {text}")
        types = {"l_quantity": "numeric", "l_discount": "numeric"}
        conn.execute(f"PREPARE rebuilt AS {retype(text, column_type=lambda q, c: types.get(c)).text}")
        got = conn.execute("SELECT cardinality(parameter_types) FROM pg_prepared_statements "
                           "WHERE name = 'rebuilt'").fetchone()[0]
        assert got == references(text).nparams  # every $n is still there, with a type
