"""TPC-H for ``kit bench advisor``: the schema with primary keys only, the data generated offline by
DuckDB's tpch extension and copied into PostgreSQL, and the 22 queries written as the specification's
templates with substitution parameters drawn like qgen's (talks to PostgreSQL; DuckDB in process).

The queries are sent with their parameters as literals (as an application that builds its SQL text
would), so pg_stat_statements normalizes them itself: ``date '1995-03-15'`` becomes ``date $6``,
``extract(year FROM ...)`` becomes ``extract($1 FROM ...)`` — the shapes :mod:`kit.sqltext.retype`
makes preparable again.
"""

from __future__ import annotations

import datetime as dt
import glob
import random
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from kit.config import libpq_url
from kit.db.engine import one_row
from kit.errors import ConfigError

TABLES = ("region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem")
SCHEMA = """
CREATE TABLE region (r_regionkey integer PRIMARY KEY, r_name char(25) NOT NULL, r_comment varchar(152));
CREATE TABLE nation (n_nationkey integer PRIMARY KEY, n_name char(25) NOT NULL, n_regionkey integer NOT NULL,
                     n_comment varchar(152));
CREATE TABLE part (p_partkey integer PRIMARY KEY, p_name varchar(55) NOT NULL, p_mfgr char(25) NOT NULL,
                   p_brand char(10) NOT NULL, p_type varchar(25) NOT NULL, p_size integer NOT NULL,
                   p_container char(10) NOT NULL, p_retailprice numeric(15, 2) NOT NULL, p_comment varchar(23));
CREATE TABLE supplier (s_suppkey integer PRIMARY KEY, s_name char(25) NOT NULL, s_address varchar(40) NOT NULL,
                       s_nationkey integer NOT NULL, s_phone char(15) NOT NULL, s_acctbal numeric(15, 2) NOT NULL,
                       s_comment varchar(101));
CREATE TABLE partsupp (ps_partkey integer NOT NULL, ps_suppkey integer NOT NULL, ps_availqty integer NOT NULL,
                       ps_supplycost numeric(15, 2) NOT NULL, ps_comment varchar(199),
                       PRIMARY KEY (ps_partkey, ps_suppkey));
CREATE TABLE customer (c_custkey integer PRIMARY KEY, c_name varchar(25) NOT NULL, c_address varchar(40) NOT NULL,
                       c_nationkey integer NOT NULL, c_phone char(15) NOT NULL, c_acctbal numeric(15, 2) NOT NULL,
                       c_mktsegment char(10) NOT NULL, c_comment varchar(117));
CREATE TABLE orders (o_orderkey integer PRIMARY KEY, o_custkey integer NOT NULL, o_orderstatus char(1) NOT NULL,
                     o_totalprice numeric(15, 2) NOT NULL, o_orderdate date NOT NULL,
                     o_orderpriority char(15) NOT NULL, o_clerk char(15) NOT NULL, o_shippriority integer NOT NULL,
                     o_comment varchar(79));
CREATE TABLE lineitem (l_orderkey integer NOT NULL, l_partkey integer NOT NULL, l_suppkey integer NOT NULL,
                       l_linenumber integer NOT NULL, l_quantity numeric(15, 2) NOT NULL,
                       l_extendedprice numeric(15, 2) NOT NULL, l_discount numeric(15, 2) NOT NULL,
                       l_tax numeric(15, 2) NOT NULL, l_returnflag char(1) NOT NULL, l_linestatus char(1) NOT NULL,
                       l_shipdate date NOT NULL, l_commitdate date NOT NULL, l_receiptdate date NOT NULL,
                       l_shipinstruct char(25) NOT NULL, l_shipmode char(10) NOT NULL, l_comment varchar(44),
                       PRIMARY KEY (l_orderkey, l_linenumber));
"""


def _extension() -> str:
    """The tpch extension shipped by the ``duckdb-extension-tpch`` wheel (no download)."""
    try:
        import duckdb_extension_tpch
    except ImportError:
        raise ConfigError(
            "TPC-H needs duckdb and duckdb-extension-tpch: pip install 'dbperf-kit[dev]' (make install does)"
        ) from None
    found = glob.glob(str(Path(duckdb_extension_tpch.__file__).parent / "extensions" / "*" / "tpch.duckdb_extension"))
    if not found:
        raise ConfigError(
            "duckdb-extension-tpch has no tpch.duckdb_extension for this platform; "
            "reinstall it with the same version as duckdb"
        )
    return found[0]


def generate(folder: Path, *, sf: float) -> dict[str, Path]:
    """The eight tables at scale factor ``sf`` as CSV files (``|``-separated, no header) in ``folder``."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"LOAD '{_extension()}'")  # a path from the installed wheel, not user input
        con.execute("CALL dbgen(sf = ?)", [sf])
        out = {}
        for table in TABLES:
            out[table] = folder / f"{table}.csv"
            con.execute(f"COPY {table} TO '{out[table]}' (FORMAT csv, DELIMITER '|', HEADER false)")
    finally:
        con.close()
    return out


def load(url: str, *, sf: float) -> dict[str, int]:
    """Create the schema in the (empty) database at ``url``, copy the generated data in, ANALYZE;
    the rows per table."""
    with tempfile.TemporaryDirectory(prefix="kit-tpch-") as tmp:
        files = generate(Path(tmp), sf=sf)
        with psycopg.connect(libpq_url(url), autocommit=True, application_name="dbperf-kit-tpch-load") as conn:
            conn.execute(SCHEMA)
            with conn.transaction():
                for table in TABLES:
                    copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv, DELIMITER '|')").format(sql.Identifier(table))
                    with conn.cursor().copy(copy) as cp, files[table].open("rb") as f:
                        while chunk := f.read(1 << 20):
                            cp.write(chunk)
            conn.execute("ANALYZE")
            return {
                t: one_row(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))))[0]
                for t in TABLES
            }


# -- the queries (TPC-H 2.18, section 2.4), PostgreSQL syntax; {name} is a substitution parameter
QUERIES: dict[int, str] = {
    1: """select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty, sum(l_extendedprice) as sum_base_price,
  sum(l_extendedprice * (1 - l_discount)) as sum_disc_price, sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
  avg(l_quantity) as avg_qty, avg(l_extendedprice) as avg_price, avg(l_discount) as avg_disc, count(*) as count_order
from lineitem
where l_shipdate <= date '1998-12-01' - interval {delta} day
group by l_returnflag, l_linestatus
order by l_returnflag, l_linestatus""",
    2: """select s_acctbal, s_name, n_name, p_partkey, p_mfgr, s_address, s_phone, s_comment
from part, supplier, partsupp, nation, region
where p_partkey = ps_partkey and s_suppkey = ps_suppkey and p_size = {size} and p_type like {type}
  and s_nationkey = n_nationkey and n_regionkey = r_regionkey and r_name = {region}
  and ps_supplycost = (select min(ps_supplycost) from partsupp, supplier, nation, region
                       where p_partkey = ps_partkey and s_suppkey = ps_suppkey and s_nationkey = n_nationkey
                         and n_regionkey = r_regionkey and r_name = {region})
order by s_acctbal desc, n_name, s_name, p_partkey
limit 100""",
    3: """select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, o_orderdate, o_shippriority
from customer, orders, lineitem
where c_mktsegment = {segment} and c_custkey = o_custkey and l_orderkey = o_orderkey
  and o_orderdate < date {date} and l_shipdate > date {date}
group by l_orderkey, o_orderdate, o_shippriority
order by revenue desc, o_orderdate
limit 10""",
    4: """select o_orderpriority, count(*) as order_count
from orders
where o_orderdate >= date {date} and o_orderdate < date {date} + interval '3' month
  and exists (select * from lineitem where l_orderkey = o_orderkey and l_commitdate < l_receiptdate)
group by o_orderpriority
order by o_orderpriority""",
    5: """select n_name, sum(l_extendedprice * (1 - l_discount)) as revenue
from customer, orders, lineitem, supplier, nation, region
where c_custkey = o_custkey and l_orderkey = o_orderkey and l_suppkey = s_suppkey and c_nationkey = s_nationkey
  and s_nationkey = n_nationkey and n_regionkey = r_regionkey and r_name = {region}
  and o_orderdate >= date {date} and o_orderdate < date {date} + interval '1' year
group by n_name
order by revenue desc""",
    6: """select sum(l_extendedprice * l_discount) as revenue
from lineitem
where l_shipdate >= date {date} and l_shipdate < date {date} + interval '1' year
  and l_discount between {discount} - 0.01 and {discount} + 0.01 and l_quantity < {quantity}""",
    7: """select supp_nation, cust_nation, l_year, sum(volume) as revenue
from (select n1.n_name as supp_nation, n2.n_name as cust_nation, extract(year from l_shipdate) as l_year,
             l_extendedprice * (1 - l_discount) as volume
      from supplier, lineitem, orders, customer, nation n1, nation n2
      where s_suppkey = l_suppkey and o_orderkey = l_orderkey and c_custkey = o_custkey
        and s_nationkey = n1.n_nationkey and c_nationkey = n2.n_nationkey
        and ((n1.n_name = {nation1} and n2.n_name = {nation2}) or (n1.n_name = {nation2} and n2.n_name = {nation1}))
        and l_shipdate between date '1995-01-01' and date '1996-12-31') as shipping
group by supp_nation, cust_nation, l_year
order by supp_nation, cust_nation, l_year""",
    8: """select o_year, sum(case when nation = {nation} then volume else 0 end) / sum(volume) as mkt_share
from (select extract(year from o_orderdate) as o_year, l_extendedprice * (1 - l_discount) as volume,
             n2.n_name as nation
      from part, supplier, lineitem, orders, customer, nation n1, nation n2, region
      where p_partkey = l_partkey and s_suppkey = l_suppkey and l_orderkey = o_orderkey and o_custkey = c_custkey
        and c_nationkey = n1.n_nationkey and n1.n_regionkey = r_regionkey and r_name = {region}
        and s_nationkey = n2.n_nationkey and o_orderdate between date '1995-01-01' and date '1996-12-31'
        and p_type = {type}) as all_nations
group by o_year
order by o_year""",
    9: """select nation, o_year, sum(amount) as sum_profit
from (select n_name as nation, extract(year from o_orderdate) as o_year,
             l_extendedprice * (1 - l_discount) - ps_supplycost * l_quantity as amount
      from part, supplier, lineitem, partsupp, orders, nation
      where s_suppkey = l_suppkey and ps_suppkey = l_suppkey and ps_partkey = l_partkey and p_partkey = l_partkey
        and o_orderkey = l_orderkey and s_nationkey = n_nationkey and p_name like {color}) as profit
group by nation, o_year
order by nation, o_year desc""",
    10: """select c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) as revenue, c_acctbal, n_name, c_address,
  c_phone, c_comment
from customer, orders, lineitem, nation
where c_custkey = o_custkey and l_orderkey = o_orderkey and o_orderdate >= date {date}
  and o_orderdate < date {date} + interval '3' month and l_returnflag = 'R' and c_nationkey = n_nationkey
group by c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment
order by revenue desc
limit 20""",
    11: """select ps_partkey, sum(ps_supplycost * ps_availqty) as value
from partsupp, supplier, nation
where ps_suppkey = s_suppkey and s_nationkey = n_nationkey and n_name = {nation}
group by ps_partkey
having sum(ps_supplycost * ps_availqty) > (select sum(ps_supplycost * ps_availqty) * {fraction}
                                           from partsupp, supplier, nation
                                           where ps_suppkey = s_suppkey and s_nationkey = n_nationkey
                                             and n_name = {nation})
order by value desc""",
    12: """select l_shipmode,
  sum(case when o_orderpriority = '1-URGENT' or o_orderpriority = '2-HIGH' then 1 else 0 end) as high_line_count,
  sum(case when o_orderpriority <> '1-URGENT' and o_orderpriority <> '2-HIGH' then 1 else 0 end) as low_line_count
from orders, lineitem
where o_orderkey = l_orderkey and l_shipmode in ({shipmode1}, {shipmode2}) and l_commitdate < l_receiptdate
  and l_shipdate < l_commitdate and l_receiptdate >= date {date} and l_receiptdate < date {date} + interval '1' year
group by l_shipmode
order by l_shipmode""",
    13: """select c_count, count(*) as custdist
from (select c_custkey, count(o_orderkey)
      from customer left outer join orders on c_custkey = o_custkey and o_comment not like {words}
      group by c_custkey) as c_orders (c_custkey, c_count)
group by c_count
order by custdist desc, c_count desc""",
    14: """select 100.00 * sum(case when p_type like 'PROMO%' then l_extendedprice * (1 - l_discount) else 0 end)
  / sum(l_extendedprice * (1 - l_discount)) as promo_revenue
from lineitem, part
where l_partkey = p_partkey and l_shipdate >= date {date} and l_shipdate < date {date} + interval '1' month""",
    15: """with revenue0 (supplier_no, total_revenue) as (
  select l_suppkey, sum(l_extendedprice * (1 - l_discount))
  from lineitem
  where l_shipdate >= date {date} and l_shipdate < date {date} + interval '3' month
  group by l_suppkey)
select s_suppkey, s_name, s_address, s_phone, total_revenue
from supplier, revenue0
where s_suppkey = supplier_no and total_revenue = (select max(total_revenue) from revenue0)
order by s_suppkey""",
    16: """select p_brand, p_type, p_size, count(distinct ps_suppkey) as supplier_cnt
from partsupp, part
where p_partkey = ps_partkey and p_brand <> {brand} and p_type not like {type}
  and p_size in ({size1}, {size2}, {size3}, {size4}, {size5}, {size6}, {size7}, {size8})
  and ps_suppkey not in (select s_suppkey from supplier where s_comment like '%Customer%Complaints%')
group by p_brand, p_type, p_size
order by supplier_cnt desc, p_brand, p_type, p_size""",
    17: """select sum(l_extendedprice) / 7.0 as avg_yearly
from lineitem, part
where p_partkey = l_partkey and p_brand = {brand} and p_container = {container}
  and l_quantity < (select 0.2 * avg(l_quantity) from lineitem where l_partkey = p_partkey)""",
    18: """select c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, sum(l_quantity)
from customer, orders, lineitem
where o_orderkey in (select l_orderkey from lineitem group by l_orderkey having sum(l_quantity) > {quantity})
  and c_custkey = o_custkey and o_orderkey = l_orderkey
group by c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice
order by o_totalprice desc, o_orderdate
limit 100""",
    19: """select sum(l_extendedprice * (1 - l_discount)) as revenue
from lineitem, part
where (p_partkey = l_partkey and p_brand = {brand1} and p_container in ('SM CASE', 'SM BOX', 'SM PACK', 'SM PKG')
       and l_quantity >= {quantity1} and l_quantity <= {quantity1} + 10 and p_size between 1 and 5
       and l_shipmode in ('AIR', 'AIR REG') and l_shipinstruct = 'DELIVER IN PERSON')
   or (p_partkey = l_partkey and p_brand = {brand2} and p_container in ('MED BAG', 'MED BOX', 'MED PKG', 'MED PACK')
       and l_quantity >= {quantity2} and l_quantity <= {quantity2} + 10 and p_size between 1 and 10
       and l_shipmode in ('AIR', 'AIR REG') and l_shipinstruct = 'DELIVER IN PERSON')
   or (p_partkey = l_partkey and p_brand = {brand3} and p_container in ('LG CASE', 'LG BOX', 'LG PACK', 'LG PKG')
       and l_quantity >= {quantity3} and l_quantity <= {quantity3} + 10 and p_size between 1 and 15
       and l_shipmode in ('AIR', 'AIR REG') and l_shipinstruct = 'DELIVER IN PERSON')""",
    20: """select s_name, s_address
from supplier, nation
where s_suppkey in (select ps_suppkey from partsupp
                    where ps_partkey in (select p_partkey from part where p_name like {color})
                      and ps_availqty > (select 0.5 * sum(l_quantity) from lineitem
                                         where l_partkey = ps_partkey and l_suppkey = ps_suppkey
                                           and l_shipdate >= date {date}
                                           and l_shipdate < date {date} + interval '1' year))
  and s_nationkey = n_nationkey and n_name = {nation}
order by s_name""",
    21: """select s_name, count(*) as numwait
from supplier, lineitem l1, orders, nation
where s_suppkey = l1.l_suppkey and o_orderkey = l1.l_orderkey and o_orderstatus = 'F'
  and l1.l_receiptdate > l1.l_commitdate
  and exists (select * from lineitem l2 where l2.l_orderkey = l1.l_orderkey and l2.l_suppkey <> l1.l_suppkey)
  and not exists (select * from lineitem l3 where l3.l_orderkey = l1.l_orderkey and l3.l_suppkey <> l1.l_suppkey
                  and l3.l_receiptdate > l3.l_commitdate)
  and s_nationkey = n_nationkey and n_name = {nation}
group by s_name
order by numwait desc, s_name
limit 100""",
    22: """select cntrycode, count(*) as numcust, sum(c_acctbal) as totacctbal
from (select substring(c_phone from 1 for 2) as cntrycode, c_acctbal
      from customer
      where substring(c_phone from 1 for 2) in ({i1}, {i2}, {i3}, {i4}, {i5}, {i6}, {i7})
        and c_acctbal > (select avg(c_acctbal) from customer where c_acctbal > 0.00
                         and substring(c_phone from 1 for 2) in ({i1}, {i2}, {i3}, {i4}, {i5}, {i6}, {i7}))
        and not exists (select * from orders where o_custkey = c_custkey)) as custsale
group by cntrycode
order by cntrycode""",
}

# qgen's word lists (TPC-H 4.2.2.13, 4.2.3)
REGIONS = {
    "AFRICA": ("ALGERIA", "ETHIOPIA", "KENYA", "MOROCCO", "MOZAMBIQUE"),
    "AMERICA": ("ARGENTINA", "BRAZIL", "CANADA", "PERU", "UNITED STATES"),
    "ASIA": ("INDIA", "INDONESIA", "JAPAN", "CHINA", "VIETNAM"),
    "EUROPE": ("FRANCE", "GERMANY", "ROMANIA", "RUSSIA", "UNITED KINGDOM"),
    "MIDDLE EAST": ("EGYPT", "IRAN", "IRAQ", "JORDAN", "SAUDI ARABIA"),
}
NATIONS = tuple(n for ns in REGIONS.values() for n in ns)
SEGMENTS = ("AUTOMOBILE", "BUILDING", "FURNITURE", "MACHINERY", "HOUSEHOLD")
TYPE1 = ("STANDARD", "SMALL", "MEDIUM", "LARGE", "ECONOMY", "PROMO")
TYPE2 = ("ANODIZED", "BURNISHED", "PLATED", "POLISHED", "BRUSHED")
TYPE3 = ("TIN", "NICKEL", "BRASS", "STEEL", "COPPER")
CONTAINER1 = ("SM", "LG", "MED", "JUMBO", "WRAP")
CONTAINER2 = ("CASE", "BOX", "BAG", "JAR", "PKG", "PACK", "CAN", "DRUM")
COLORS = (
    "almond",
    "antique",
    "aquamarine",
    "azure",
    "beige",
    "bisque",
    "black",
    "blanched",
    "blue",
    "blush",
    "brown",
    "burlywood",
    "burnished",
    "chartreuse",
    "chiffon",
    "chocolate",
    "coral",
    "cornflower",
    "cornsilk",
    "cream",
    "cyan",
    "dark",
    "deep",
    "dim",
    "dodger",
    "drab",
    "firebrick",
    "floral",
    "forest",
    "frosted",
    "gainsboro",
    "ghost",
    "goldenrod",
    "green",
    "grey",
    "honeydew",
    "hot",
    "indian",
    "ivory",
    "khaki",
    "lace",
    "lavender",
    "lawn",
    "lemon",
    "light",
    "lime",
    "linen",
    "magenta",
    "maroon",
    "medium",
    "metallic",
    "midnight",
    "mint",
    "misty",
    "moccasin",
    "navajo",
    "navy",
    "olive",
    "orange",
    "orchid",
    "pale",
    "papaya",
    "peach",
    "peru",
    "pink",
    "plum",
    "powder",
    "puff",
    "purple",
    "red",
    "rose",
    "rosy",
    "royal",
    "saddle",
    "salmon",
    "sandy",
    "seashell",
    "sienna",
    "sky",
    "slate",
    "smoke",
    "snow",
    "spring",
    "steel",
    "tan",
    "thistle",
    "tomato",
    "turquoise",
    "violet",
    "wheat",
    "white",
    "yellow",
)
SHIPMODES = ("REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB")


def _month(rnd: random.Random, first: tuple[int, int], last: tuple[int, int]) -> str:
    months = (last[0] - first[0]) * 12 + last[1] - first[1]
    k = rnd.randint(0, months)
    return dt.date(first[0] + (first[1] - 1 + k) // 12, (first[1] - 1 + k) % 12 + 1, 1).isoformat()


def _brand(rnd: random.Random) -> str:
    return f"Brand#{rnd.randint(1, 5)}{rnd.randint(1, 5)}"


def parameters(n: int, rnd: random.Random, *, sf: float) -> dict[str, object]:
    """One set of substitution parameters for query ``n``, drawn as qgen does (TPC-H 2.4.n.3)."""
    year = lambda: f"{rnd.randint(1993, 1997)}-01-01"  # noqa: E731
    region = rnd.choice(tuple(REGIONS))
    if n == 1:
        return {"delta": str(rnd.randint(60, 120))}
    if n == 2:
        return {"size": rnd.randint(1, 50), "type": "%" + rnd.choice(TYPE3), "region": region}
    if n == 3:
        return {"segment": rnd.choice(SEGMENTS), "date": f"1995-03-{rnd.randint(1, 31):02d}"}
    if n in (4, 15):
        return {"date": _month(rnd, (1993, 1), (1997, 10))}
    if n == 5:
        return {"region": region, "date": year()}
    if n == 6:
        return {"date": year(), "discount": rnd.randint(2, 9) / 100, "quantity": rnd.randint(24, 25)}
    if n == 7:
        a, b = rnd.sample(NATIONS, 2)
        return {"nation1": a, "nation2": b}
    if n == 8:
        return {
            "nation": rnd.choice(REGIONS[region]),
            "region": region,
            "type": f"{rnd.choice(TYPE1)} {rnd.choice(TYPE2)} {rnd.choice(TYPE3)}",
        }
    if n == 9:
        return {"color": f"%{rnd.choice(COLORS)}%"}
    if n == 10:
        return {"date": _month(rnd, (1993, 2), (1995, 1))}
    if n == 11:
        return {"nation": rnd.choice(NATIONS), "fraction": round(0.0001 / sf, 10)}
    if n == 12:
        a, b = rnd.sample(SHIPMODES, 2)
        return {"shipmode1": a, "shipmode2": b, "date": year()}
    if n == 13:
        return {
            "words": f"%{rnd.choice(('special', 'pending', 'unusual', 'express'))}%"
            f"{rnd.choice(('packages', 'requests', 'accounts', 'deposits'))}%"
        }
    if n == 14:
        return {"date": _month(rnd, (1993, 1), (1997, 12))}
    if n == 16:
        sizes = rnd.sample(range(1, 51), 8)
        return {
            "brand": _brand(rnd),
            "type": f"{rnd.choice(TYPE1)} {rnd.choice(TYPE2)}%",
            **{f"size{i + 1}": s for i, s in enumerate(sizes)},
        }
    if n == 17:
        return {"brand": _brand(rnd), "container": f"{rnd.choice(CONTAINER1)} {rnd.choice(CONTAINER2)}"}
    if n == 18:
        return {"quantity": rnd.randint(312, 315)}
    if n == 19:
        return {
            "brand1": _brand(rnd),
            "brand2": _brand(rnd),
            "brand3": _brand(rnd),
            "quantity1": rnd.randint(1, 10),
            "quantity2": rnd.randint(10, 20),
            "quantity3": rnd.randint(20, 30),
        }
    if n == 20:
        return {"color": rnd.choice(COLORS) + "%", "date": year(), "nation": rnd.choice(NATIONS)}
    if n == 21:
        return {"nation": rnd.choice(NATIONS)}
    if n == 22:
        return {f"i{i + 1}": str(c) for i, c in enumerate(rnd.sample(range(10, 35), 7))}
    raise ValueError(f"TPC-H has queries 1 to 22, not {n}")


def query(n: int, params: dict[str, object]) -> sql.Composed:
    """Query ``n`` with its parameters as literals (quoted by psycopg: never spliced as text)."""
    return sql.SQL(QUERIES[n]).format(**{k: sql.Literal(v) for k, v in params.items()})
