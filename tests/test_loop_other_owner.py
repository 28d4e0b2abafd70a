"""The loop on a database the kit did not create, whose tables belong to another role: a read-only
auditor gets the plan and changes nothing (apply is refused before anything runs); the tables'
owner, through ``kit run -p apply true``, gets the fixes applied, verified and charted."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import nbformat
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url
from test_core_install import core_only_env

from kit import report
from kit.benchmarks import anydb
from kit.config import libpq_url
from kit.db.engine import make_engine
from kit.errors import UnsafeOperation
from kit.fixes import KEPT, PLANNED, run_loop
from kit.runs import runner
from kit.workload import read_workload

ROWS = 20_000
INDEXES = "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"


ARTIFACTS = Path(__file__).resolve().parents[1] / ".kit" / "artifacts" / "report"


@pytest.fixture
def owned_shop(fresh_db_url):
    """The shop, owned by a role of its own, its workload run by that role; and a read-only auditor."""
    suffix = uuid.uuid4().hex[:8]
    owner, auditor = f"shop_owner_{suffix}", f"shop_auditor_{suffix}"
    with psycopg.connect(libpq_url(fresh_db_url), autocommit=True) as conn:
        for role in (owner, auditor):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(owner)))
        conn.execute(sql.SQL("GRANT pg_read_all_stats, pg_read_all_data TO {}").format(sql.Identifier(auditor)))
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(sql.Identifier(auditor)))
    anydb.build(fresh_db_url, rows=ROWS, owner=owner)
    as_owner = make_url(fresh_db_url).set(username=owner).render_as_string(hide_password=False)
    anydb.drive(as_owner, rows=ROWS, scans=60, lookups=30)  # conftest.shop_url's workload: why 60 scans
    yield {"owner": as_owner, "auditor": make_url(fresh_db_url).set(username=auditor).render_as_string(
        hide_password=False), "admin": fresh_db_url}
    with psycopg.connect(libpq_url(fresh_db_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}, {} CASCADE").format(sql.Identifier(owner), sql.Identifier(auditor)))
        for role in (owner, auditor):
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _indexes(url: str) -> list[str]:
    with psycopg.connect(libpq_url(url)) as conn:
        return [r[0] for r in conn.execute(INDEXES)]


def test_a_read_only_role_gets_the_plan_and_changes_nothing(owned_shop):
    before = _indexes(owned_shop["admin"])
    engine = make_engine(owned_shop["auditor"])
    try:
        work = read_workload(engine)
        assert len(work.targets) >= 5  # the owner's statements, readable with pg_read_all_stats
        plan = run_loop(engine, work, apply=False, repeats=2, out=None)
        assert len(plan.fixes) == 4 and {f.verdict for f in plan.fixes} == {PLANNED}
        with pytest.raises(UnsafeOperation, match=r"read-only transactions .*does not own 4 table\(s\).* "
                                                  r"nothing was changed"):
            run_loop(engine, work, apply=True, repeats=2, out=None)
    finally:
        engine.dispose()
    assert _indexes(owned_shop["admin"]) == before


def test_the_owner_runs_the_whole_loop_with_apply(owned_shop, tmp_path, monkeypatch, chromium):
    result = check_the_owner_runs_the_whole_loop(owned_shop, tmp_path, monkeypatch, fixes=4)
    shot = ARTIFACTS / "database-the-kit-did-not-create.png"
    check = report.check(result.report_path, chromium, screenshot=shot)
    assert check.problems() == []
    assert check.top_rows_first_screen >= 3 and len(check.charts.drawn) >= 2  # share, timings
    assert shot.stat().st_size > 10_000


def check_the_owner_runs_the_whole_loop(owned_shop, tmp_path, monkeypatch, *, fixes: int):
    """``kit run -p apply true`` as the tables' owner: the three notebooks ok, the ``fixes`` fixes
    applied and kept, the report charted, one bundle — in kernels without the demo and fleet extras
    (Locust, prometheus_client, Dagster cannot be imported there: the core's loop needs none)."""
    monkeypatch.setenv("PYTHONPATH", core_only_env()["PYTHONPATH"])
    monkeypatch.setenv("KIT_DATABASE_URL", owned_shop["owner"])
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = runner.run(runs_dir=tmp_path / "runs", progress=False, parameters={"apply": "true", "repeats": "3"})
    assert [nb.status for nb in result.notebooks] == ["ok", "ok", "ok"]
    done = json.loads((result.folder / "fixes.json").read_text())
    assert [f["verdict"] for f in done] == [KEPT] * fixes, [(f["kind"], f["reason"]) for f in done]
    assert (result.figures["fixes.planned"], result.figures["fixes.kept"]) == (fixes, fixes)
    assert "-- Applied by the kit" in (result.folder / "fixes.sql").read_text()
    live = _indexes(owned_shop["admin"])
    assert "kit_order_items_order_id_idx" in live and "products_sku_idx" not in live
    executed = nbformat.read(result.folder / "03_report.ipynb", as_version=4)
    shown = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert shown.count("application/vnd.plotly.v1+json") >= 4  # inventory, statements, share, bytes
    bundle = json.loads(result.bundle_path.read_text())
    assert bundle["derived"]["findings_total"] == result.figures["audit.findings"]  # one snapshot per run
    assert bundle["indexes"] is None  # no migration given: none compared
    facts = report.read_run(result.folder)
    assert [(f.verdict, f.speedup is not None and f.speedup >= 2) for f in facts.fixes if f.kind == "create_index"] == [
        (KEPT, True)
    ] * sum(f["kind"] == "create_index" for f in done)
    before, after = facts.share_fixed
    assert after is not None and after < before  # the fixed statements take less of the time after
    fixed = [s for s in facts.statements if "applied and kept" in s.fix]
    assert fixed and all("#" in s.label and s.label.split()[0] in {"SELECT", "UPDATE", "INSERT", "DELETE"} for s in fixed)
    assert any("order_items" in s.label for s in fixed)
    assert facts.verdict in {"healthy", "needs attention"} and facts.verdict_why
    return result


def test_apply_right_after_a_dry_run_and_the_reviewed_plan(owned_shop, tmp_path, monkeypatch):
    """Right after a dry run nothing new ran: apply still plans on the history (never an empty plan
    because the window is empty); and `kit apply RUN` applies exactly the plan that was reviewed,
    each fix checked again — here all applied since, so each is left out and named."""
    monkeypatch.setenv("KIT_DATABASE_URL", owned_shop["owner"])
    monkeypatch.delenv("DATABASE_URL", raising=False)
    runs = tmp_path / "runs"
    fixes = ("02_apply_fixes.ipynb",)  # the plan, its apply and fixes.sql are 02's (the whole run: the test above)
    dry = runner.run(runs_dir=runs, notebooks=fixes, progress=False, parameters={"repeats": "2"})
    planned = json.loads((dry.folder / "fixes.json").read_text())
    loop = json.loads((dry.folder / "loop.json").read_text())
    assert len(planned) == 4, ([f["sql"] for f in planned], loop["notes"])
    assert "-- Dry run: nothing below was applied" in (dry.folder / "fixes.sql").read_text()
    applied = runner.run(runs_dir=runs, notebooks=fixes, progress=False, parameters={"apply": "true", "repeats": "3"})
    done = json.loads((applied.folder / "fixes.json").read_text())
    assert sorted(f["sql"] for f in done) == sorted(f["sql"] for f in planned)
    assert [f["verdict"] for f in done] == [KEPT] * 4, [(f["kind"], f["sql"], f["reason"]) for f in done]
    again = runner.run(runs_dir=runs, notebooks=fixes, progress=False,
                       parameters={"apply": "true", "plan": dry.folder.name})
    loop = json.loads((again.folder / "loop.json").read_text())
    assert loop["fixes"] == [] and loop["applied"] is False
    assert sum(n.startswith("left out ") for n in loop["notes"]) == 4, loop["notes"]
    assert "-- Apply was asked for; the plan holds nothing to apply" in (again.folder / "fixes.sql").read_text()
