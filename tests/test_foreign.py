"""``kit run`` against a database the kit did not create, as a role that neither owns it nor is a
superuser, on a server without pg_stat_statements preloaded and without the platform's tables
(conftest's ``foreign_url``). A dry run: it must degrade, not fail, and change nothing. (The loop with apply on a database the kit did not create is in
test_loop_other_owner.py, on a database of the kit's server owned by another role.)"""

from __future__ import annotations

import json

import nbformat
import psycopg
import pytest

from kit.errors import DatabaseUnavailable
from kit.runs import runner

INDEXES = "SELECT count(*) FROM pg_indexes"


@pytest.fixture
def foreign_env(monkeypatch, tmp_path, foreign_url):
    monkeypatch.setenv("KIT_DATABASE_URL", foreign_url)
    monkeypatch.setenv("KIT_HOME", str(tmp_path / "home"))  # no kit servers: no Redis either
    for name in ("DATABASE_URL", "KIT_REDIS_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


def test_the_notebooks_audit_a_database_the_kit_did_not_create(foreign_env, tmp_path, foreign_url):
    with psycopg.connect(foreign_url) as conn:
        indexes_before = conn.execute(INDEXES).fetchone()[0]
    result = runner.run(runs_dir=tmp_path / "runs", progress=False)
    assert [nb.status for nb in result.notebooks] == ["ok", "ok", "ok"]
    audit = nbformat.read(result.folder / "01_audit.ipynb", as_version=4)
    assert not any("platform" in c.metadata.get("tags", ()) for c in audit.cells)
    text = json.dumps([c.get("outputs", []) for c in audit.cells])
    assert "declared by none: 0 indexes" in text and "create the schema first" not in text  # no foreign migration
    assert "shared_preload_libraries" in text  # pg_stat_statements: unavailable, and how to enable it
    assert "were left out" in json.dumps([c.source for c in audit.cells])
    assert (result.folder / "fixes.sql").read_text().count("-- Dry run") == 1
    assert all(f["verdict"] == "planned" for f in json.loads((result.folder / "fixes.json").read_text()))
    with psycopg.connect(foreign_url) as conn:
        assert conn.execute(INDEXES).fetchone()[0] == indexes_before  # nothing was changed


def test_an_unreachable_database_is_refused_before_anything_is_written(monkeypatch, tmp_path):
    monkeypatch.setenv("KIT_DATABASE_URL", "postgresql://u:secret@127.0.0.1:9/nowhere")
    with pytest.raises(DatabaseUnavailable, match="cannot connect to .*u:\\*\\*\\*@127.0.0.1:9/nowhere"):
        runner.run(runs_dir=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()
