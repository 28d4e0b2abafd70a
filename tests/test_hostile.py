"""Names from the database are data, never code; data values never leave the process; privilege
problems are one line before anything runs — on a hostile database the kit did not create (its
own roles, names with newlines + SQL, markup, quotes, dots, spaces, control characters, unicode),
through ``kit run`` as a user runs it (:mod:`kit.demo.bench._hostile`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest
from pglast import ast, parse_sql

from kit import escape
from kit.demo.bench import _hostile
from kit.config import libpq_url
from kit.db.engine import make_engine
from kit.errors import DatabaseRefused
from kit.fixes import CREATE, KEPT, PLANNED, run_loop
from kit.fixes.plan import index_name
from kit.fixes.sqlfile import render
from kit.safety import preflight
from kit.workload import read_workload

ROWS = 20_000  # per table: an index still wins clearly


# -- pure ---------------------------------------------------------------------------------------


def test_a_line_cannot_be_ended_hidden_or_reordered_by_a_name():
    assert escape.line("evil\nDROP TABLE victim; --") == "evil\\x0aDROP TABLE victim; --"
    assert escape.line("\x1b[31mred\r\x07\u202e\u2028") == "\\x1b[31mred\\x0d\\x07\\u202e\\u2028"
    assert escape.line("Grüße € \"Order\" <b>") == "Grüße € \"Order\" <b>"  # printable text is left alone
    assert escape.line(escape.line("a\nb")) == escape.line("a\nb")  # escaping twice changes nothing


def test_markdown_shows_markup_and_emphasis_as_text():
    assert escape.markdown("<img src=x onerror=alert(2)>") == "&lt;img src=x onerror=alert\\(2\\)&gt;"
    assert escape.markdown("a_b*c*\n[x](javascript:y)") == "a\\_b\\*c\\*\\\\x0a\\[x\\]\\(javascript:y\\)"
    assert escape.markdown("it's") == "it&#x27;s"  # the entity's '#' is not escaped into text
    assert escape.html('<script>"x"</script>') == "&lt;script&gt;&quot;x&quot;&lt;/script&gt;"


def test_a_kit_index_name_holds_only_plain_characters():
    assert index_name(_hostile.EVIL, ('we"ird',), set()) == "kit_evil_drop_table_victim_we_ird_idx"
    assert index_name("Order", ("CustomerId",), set()) == "kit_order_customerid_idx"
    assert index_name("order_items", ("order_id",), {"kit_order_items_order_id_idx"}) == "kit_order_items_order_id_idx_2"
    assert re.fullmatch(r"kit_[a-z0-9_]+", index_name(_hostile.XSS + _hostile.ESCAPES, ("Grüße€",), set()))


def test_fixes_sql_holds_exactly_the_fixes_whatever_the_names():
    """Every name and text of a fix in its comments: pglast finds one statement per fix and nothing else."""
    from kit.fixes.model import Fix

    hostile = [_hostile.EVIL, _hostile.XSS, _hostile.ESCAPES, _hostile.FK, "a\rb\u2028c */ d"]
    fixes = [Fix(CREATE, f'CREATE INDEX CONCURRENTLY IF NOT EXISTS kit_x_idx ON public."{n.replace(chr(34), 2 * chr(34))}" (k)',
                 f"public.{n}", (f"probe:fk:{n}", "123"), f"why {n}", f"expect {n}", f"source {n}", verdict="failed",
                 reason=f"because {n}") for n in hostile]
    text = render(fixes, target=f"postgresql://u@h/{_hostile.EVIL}", mode="dry run",
                  statements={"123": f'SELECT * FROM "{_hostile.EVIL}" -- {_hostile.EVIL}'})
    statements = parse_sql(text)
    assert len(statements) == len(fixes)
    assert all(isinstance(s.stmt, ast.IndexStmt) for s in statements)
    assert all(line.isprintable() for line in text.split("\n"))  # statements too: U&"..." for such names
    assert 'U&"evil\\000aDROP TABLE victim; --"' in text


# -- one hostile database, two kit runs (dry, then apply) as its owner -------------------------


@pytest.fixture(scope="module")
def hostile(pg_server):
    db = _hostile.build(pg_server, rows=ROWS)
    yield db
    db.drop()


@pytest.fixture(scope="module")
def runs(hostile, kit_home, tmp_path_factory):
    # the dry run's plan and fixes.sql are 02's; the run with apply has every notebook (kit bench faults: both)
    return _hostile.hostile_runs(hostile, kit_home, tmp_path_factory.mktemp("hostile-runs"),
                                 dry_notebooks=("02_apply_fixes.ipynb",))


def test_both_runs_finish_and_fix_every_hostile_table(runs):
    assert [p.returncode for p in runs["procs"]] == [0, 0], [p.stderr[-500:] for p in runs["procs"]]
    dry, applied = (json.loads((f / "loop.json").read_text(encoding="utf-8"))["fixes"] for f in runs["folders"])
    indexed = {f["table"] for f in dry if f["kind"] == CREATE}
    assert {"Order", "line items", _hostile.EVIL, _hostile.XSS, _hostile.IMG, _hostile.BREAKOUT, "api_keys"} <= indexed
    assert {f["verdict"] for f in dry} == {PLANNED}
    assert {f["verdict"] for f in applied} == {KEPT}, [(f["target_table"], f["reason"]) for f in applied]


def test_the_dry_runs_fixes_sql_run_by_psql_changes_nothing_but_indexes(runs):
    psql = runs["psql"]
    assert (psql["psql_exit"], psql["non_index_changes"], psql["psql_clean"]) == (0, 0, True), psql


def test_no_report_runs_a_script_and_every_report_shows_the_names(runs):
    pages = [p for f in runs["folders"] for p in sorted(f.glob("*.html"))]
    assert [p.name for p in pages] == ["02_apply_fixes.html", "report.html",  # the dry run's notebook, its report
                                       "01_audit.html", "02_apply_fixes.html", "03_report.html", "report.html"]
    dialogs, shown = _hostile.scripts_executed(pages)
    assert (dialogs, shown) == (0, 6)


def test_the_check_sees_a_script_that_runs(tmp_path):
    """The control: the same check on a page with the name unescaped counts its alert."""
    page = tmp_path / "raw.html"
    page.write_text(f"<html><body><p>{_hostile.IMG}</p></body></html>", encoding="utf-8")
    assert _hostile.scripts_executed([page]) == (1, 0)


def test_no_planted_terminal_escape_and_no_data_value_reach_a_file_or_the_output(runs):
    values = _hostile.data_values_in_files(runs)
    assert values["sampled_statements"] > 0  # the canary column's values were drawn and measured
    assert (values["hits"], values["hit_files"]) == (0, [])
    files = [p for f in runs["folders"] for p in f.rglob("*") if p.is_file()]
    output = "".join(p.stdout + p.stderr for p in runs["procs"])
    assert _hostile.PLANTED_ESCAPE not in output
    assert not [p.name for p in files if _hostile.PLANTED_ESCAPE.encode() in p.read_bytes()]


def test_the_scan_finds_a_canary_that_is_there(tmp_path):
    (tmp_path / "leak.json").write_text(f'{{"params": ["tok_live_{_hostile.CANARY}_1"]}}')
    assert _hostile.scan(tmp_path, [_hostile.CANARY.encode()]) == (1, [("leak.json", _hostile.CANARY.encode())])


def test_psql_clean_sees_an_injected_statement(hostile, tmp_path):
    """The control: a fixes.sql whose comment was ended by a name drops the victim; psql_clean says so."""
    injected = tmp_path / "fixes.sql"
    injected.write_text("-- 1. create_index on public.evil\nDROP TABLE victim; --\nSELECT 1;\n", encoding="utf-8")
    psql = _hostile.psql_clean(hostile, injected)
    assert psql["psql_exit"] == 0 and psql["psql_clean"] is False and psql["non_index_changes"] >= 1


# -- privileges ---------------------------------------------------------------------------------


def test_privilege_problems_are_one_line_and_exit_2_before_anything_runs(hostile, kit_home, tmp_path):
    out = _hostile.least_privilege(hostile, kit_home, tmp_path, reader_run=False)
    assert (out["exit_2"], out["one_line"], out["nothing_written"], out["tracebacks"]) == (4, 4, 4, 0), out["outcomes"]
    first = {o["case"]: o["first"] for o in out["outcomes"]}
    assert "has no USAGE on 1 schema(s) with tables (\"Sales Ops\")" in first["monitor without USAGE"]
    assert "does not own 9 table(s)" in first["apply by a reader"]
    assert "read-only transactions" in first["apply by a read-only role"]
    assert "no CONNECT privilege" in first["a role that may not connect"]
    assert "\x1b" not in "".join(first.values())  # the table names in the reader's line are escaped


def test_require_readable_names_the_schema_and_the_grant(hostile):
    engine = make_engine(hostile.url(_hostile.MONITOR))
    try:
        pre = preflight.check(engine)
    finally:
        engine.dispose()
    assert pre.schemas_without_usage == ('"Sales Ops"',)
    with pytest.raises(DatabaseRefused, match=r'no USAGE on 1 schema\(s\) with tables \("Sales Ops"\).*GRANT USAGE'):
        pre.require_readable()


def test_the_loop_applies_on_quoted_schemas_and_tables(pg_server, tmp_path):
    """The Python API too: "Order" in "Sales Ops", "line items" in eu.west — planned, built, kept."""
    fresh = _hostile.build(pg_server, rows=ROWS)
    owner = fresh.url(_hostile.OWNER)
    _hostile.drive(owner)  # its 40 calls per table: 15 left "Order" near MIN_SHARE beside the build on a busy machine
    engine = make_engine(owner)
    try:
        plan = run_loop(engine, read_workload(engine), apply=False, repeats=2, out=None)
        targets = {(f.schema, f.table) for f in plan.fixes if f.kind == CREATE}
        assert {("Sales Ops", "Order"), ("eu.west", "line items")} <= targets
        assert {f.verdict for f in plan.fixes} == {PLANNED}
        with psycopg.connect(libpq_url(owner)) as conn:
            before = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'Sales Ops'")}
        result = run_loop(engine, read_workload(engine), apply=True, repeats=3, out=None)
        with psycopg.connect(libpq_url(owner)) as conn:
            after = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'Sales Ops'")}
    finally:
        engine.dispose()
        fresh.drop()
    order = next(f for f in result.fixes if (f.schema, f.table) == ("Sales Ops", "Order") and f.kind == CREATE)
    assert (order.verdict, order.index_name) == (KEPT, "kit_order_customerid_idx"), order.reason
    assert after - before == {"kit_order_customerid_idx"}
    assert Path(result.save(tmp_path)["sql"]).read_text(encoding="utf-8").count("CREATE INDEX CONCURRENTLY") >= 2
