"""Measurements that reproduce the workload: parameter values chosen so that a statement returns
the rows per call pg_stat_statements saw (the rare ``'open'``, not the common ``'closed'``; a range
whose lower bound lies below its upper bound), each timing labelled reproduced or not, and the
what-if advisor planning on those values (a partitioned table is not pruned away)."""

from __future__ import annotations

import psycopg
import pytest

from kit.config import libpq_url
from kit.db.engine import make_engine
from kit.indexes import advise
from kit.workload import MEASURED, measure, read_workload, targets_for
from kit.workload.params import ColumnStats, equality_options, like_options, range_options
from kit.workload.timing import reproduction

TICKETS = "SELECT id, body FROM tickets WHERE status = $1"
EVENTS = "SELECT count(*) FROM events WHERE account_id = $1 AND created_at >= $2 AND created_at < $3"
KEYS = ColumnStats(histogram=tuple(f"{i:03d}" for i in range(101)))


def test_range_windows_never_invert_and_come_in_several_widths():
    both = range_options(KEYS, lower=True, upper=True)
    assert both[:4] == [("099", "100"), ("050", "051"), ("095", "100"), ("048", "052")]
    assert all(lo < hi for lo, hi in both)
    assert range_options(KEYS, lower=True, upper=False) == [("099", None), ("095", None), ("080", None), ("050", None),
                                                           ("010", None)]
    assert range_options(KEYS, lower=False, upper=True) == [(None, "001"), (None, "005"), (None, "020"), (None, "050"),
                                                           (None, "090")]
    assert range_options(ColumnStats(), lower=True, upper=True) == []


def test_like_patterns_are_made_of_a_values_words():
    assert like_options("forest green metallic") == ["forest%", "%metallic", "%green%"]
    assert like_options("BRASS") == ["BR%", "%ASS"] and like_options(None) == []


def test_equality_options_spread_the_frequencies():
    skewed = ColumnStats(mcv=("closed", "pending", "open"), mcf=(0.66, 0.33, 0.005), histogram=("a", "m", "z"))
    assert equality_options(skewed) == ["closed", "open", "m"]  # typical, the rarest, a histogram value
    assert equality_options(KEYS) == ["050"]


def test_reproduction_compares_rows_and_time_per_call():
    assert reproduction(4, 0.9, 4.0, 1.0) == (True, "reproduced: 4 rows in 0.900 ms; the workload: 4.0 rows in "
                                                    "1.000 ms per call")
    empty = reproduction(0, 0.007, 1204.0, 50.8)
    assert empty == (False, "not reproduced (rows and time): 0 rows in 0.007 ms; the workload: 1,204.0 rows in "
                            "50.800 ms per call")
    assert reproduction(1, 2.0, 1.0, 40.0)[1].startswith("not reproduced (time)")  # lock waits, say
    assert reproduction(0, 0.01, 1.0, 0.02)[0] is True  # 0 and 1 rows, 0.01 and 0.02 ms: near
    assert reproduction(5, 1.0, None, None) == (None, "a statement the kit wrote: no workload figures to compare with")
    # 14x faster than the workload but over the same blocks: the same work, slowed when the workload ran
    busy = reproduction(4, 0.852, 4.0, 11.89, blocks=12, blocks_per_call=11.5)
    assert busy == (True, "reproduced: 4 rows in 0.852 ms; the workload: 4.0 rows in 11.890 ms per call; 12 shared "
                          "blocks, the workload 11.5 per call: the same work")
    assert reproduction(4, 0.852, 4.0, 11.89, blocks=12, blocks_per_call=400.0)[0] is False  # other work
    assert reproduction(4, 0.852, 4.0, 11.89, blocks=12, blocks_per_call=11.5, spills_alike=False)[0] is False
    assert reproduction(4, 60.0, 4.0, 2.0, blocks=12, blocks_per_call=11.5)[0] is False  # slower: no excuse


@pytest.fixture
def skewed_url(fresh_db_url):
    """Tickets with 0.5 % 'open', events partitioned by month; the workload asks for the rare value
    and for a week of one account."""
    with psycopg.connect(libpq_url(fresh_db_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE tickets (id bigint PRIMARY KEY, status text NOT NULL, assignee_id int NOT NULL, "
                     "body text)")
        conn.execute("INSERT INTO tickets SELECT g, CASE WHEN g % 200 = 0 THEN 'open' WHEN g % 3 = 0 THEN 'pending' "
                     "ELSE 'closed' END, g % 400, 'x' FROM generate_series(1, 120000) g")
        conn.execute("CREATE TABLE events (id bigint, account_id int NOT NULL, created_at timestamptz NOT NULL) "
                     "PARTITION BY RANGE (created_at)")
        for month in range(1, 7):
            conn.execute(f"CREATE TABLE events_{month} PARTITION OF events FOR VALUES FROM ('2024-{month:02d}-01') "
                         f"TO ('2024-{month + 1:02d}-01')")
        conn.execute("INSERT INTO events SELECT g, g % 500, timestamptz '2024-01-01' + g * interval '40 seconds' "
                     "FROM generate_series(1, 300000) g")
        conn.execute("ANALYZE")
        conn.execute("SELECT pg_stat_statements_reset()")
        for i in range(20):
            conn.execute("SELECT id, body FROM tickets WHERE status = %s", ["open"])
            conn.execute("SELECT count(*) FROM events WHERE account_id = %s AND created_at >= %s AND created_at < %s",
                         [i, "2024-05-01", "2024-05-08"])
    return fresh_db_url


def test_values_are_chosen_to_look_like_the_workload(skewed_url):
    engine = make_engine(skewed_url)
    try:
        work = read_workload(engine)
        statements = [s for s in work.statements if s.text in (TICKETS, EVENTS)]
        targets = targets_for(skewed_url, statements)
        timed = measure(skewed_url, targets, warmup=1, repeats=3)
    finally:
        engine.dispose()
    tickets = next(timed[s.key] for s in statements if s.text == TICKETS)
    events = next(timed[s.key] for s in statements if s.text == EVENTS)
    assert tickets.mode == MEASURED and tickets.params[0] == "open"  # the rare value the workload asks for
    assert "another frequency" in tickets.sources[0]
    assert (tickets.reproduced, tickets.rows) == (True, 600.0), tickets.evidence
    low, high = events.params[1], events.params[2]
    assert low < high and events.reproduced is True, (events.sources, events.evidence)
    assert "a window of its values" in events.sources[1]


def test_the_advisor_plans_on_the_measured_values_not_on_nulls(skewed_url):
    engine = make_engine(skewed_url)
    try:
        work = read_workload(engine)
        events = next(s for s in work.statements if s.text == EVENTS)
        timed = measure(skewed_url, targets_for(skewed_url, [events]), warmup=0, repeats=1)
        on_values = advise(engine, queries=[EVENTS], values=[timed[events.key].params])
        on_nulls = advise(engine, queries=[EVENTS])
    finally:
        engine.dispose()
    best = max(on_values.suggestions, key=lambda r: r["drop_pct"])
    assert best["columns"].startswith("account_id") and best["drop_pct"] > 90
    assert on_nulls.suggestions == []  # every partition pruned at startup: no plan names an index


def test_a_guessed_number_is_tried_at_other_magnitudes():
    from kit.workload.params import MAGNITUDES, guessed_number

    assert guessed_number("1", "an integer no column describes: 1 guessed")
    assert not guessed_number("1", "orders.total (pg_stats, =)")  # drawn from the data: not a guess
    assert not guessed_number("1 day", "an interval: 1 day guessed") and "0.0001" in MAGNITUDES
