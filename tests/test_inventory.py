from __future__ import annotations

from kit.db import inventory
from kit.demo import datagen
from kit.demo.schema import TABLES


def test_inventory_of_the_tiny_demo(tiny_engine):
    inv = inventory.snapshot(tiny_engine)
    assert inv.server.version_num >= 150000
    assert inv.server.is_replica is False
    assert inv.server.role == "postgres"
    assert set(TABLES) <= set(inv.tables["table"])
    users = inv.tables.set_index("table").loc["users"]
    assert users["rows_estimate"] == datagen.SCALES["tiny"].rows["users"]  # ANALYZEd by the seeder
    assert users["indexes"] == 1  # the primary key only: the "before" state
    assert inv.usable("pg_stat_statements") is True
    assert inv.rows_total == int(inv.tables["rows_estimate"].sum())


def test_inventory_of_a_server_the_kit_did_not_set_up_degrades(foreign_url):
    from kit.db.engine import make_engine

    engine = make_engine(foreign_url)
    try:
        inv = inventory.snapshot(engine)
    finally:
        engine.dispose()
    pgss = inv.extensions.set_index("extension").loc["pg_stat_statements"]
    assert bool(pgss["usable"]) is False
    assert "shared_preload_libraries" in pgss["how_to_enable"]
