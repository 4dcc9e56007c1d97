"""The ingest schema: alembic head equals the models (no drift), and down/up round-trips."""

from __future__ import annotations

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import ingest.quota.tables  # noqa: F401 - its table joins the models the drift check compares
from ingest.state import migrations
from ingest.state.db import sqlalchemy_url
from ingest.state.tables import SCHEMA, metadata


def _diff(dsn: str) -> list[object]:
    engine = create_engine(sqlalchemy_url(dsn=dsn))
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": True,
                    "include_name": lambda name, type_, parent: name == SCHEMA if type_ == "schema" else True,
                    "compare_type": True,
                    "compare_server_default": True,
                    "version_table_schema": SCHEMA,
                },
            )
            return list(compare_metadata(ctx, metadata))
    finally:
        engine.dispose()


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (SCHEMA,)).fetchall()
    return {r[0] for r in rows}


def test_migrated_schema_equals_models(empty_db: str) -> None:
    migrations.upgrade(empty_db)
    assert _tables(empty_db) == {
        "products",
        "events",
        "watermarks",
        "backfill_chunks",
        "retirements",
        "audits",
        "audit_deletions",
        "provider_limits",
        "registration_cursors",
        "registered_items",
        "alembic_version",
    }
    assert _diff(empty_db) == []


def test_downgrade_then_upgrade_round_trips(empty_db: str) -> None:
    migrations.upgrade(empty_db)
    migrations.downgrade(empty_db, "base")
    assert _tables(empty_db) == {"alembic_version"}
    migrations.upgrade(empty_db)
    assert _diff(empty_db) == []


def test_drift_is_detected(empty_db: str) -> None:
    """The drift check itself can fail: a column added behind alembic's back shows up."""
    migrations.upgrade(empty_db)
    with psycopg.connect(empty_db) as conn:
        conn.execute(f"ALTER TABLE {SCHEMA}.products ADD COLUMN sneaky text")
    diff = _diff(empty_db)
    assert any("sneaky" in repr(d) for d in diff)


def test_events_are_append_only_and_states_are_checked(empty_db: str) -> None:
    migrations.upgrade(empty_db)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {SCHEMA}.products (id, collection, provider) VALUES ('p1', 'c', 'local')")
        conn.execute(f"INSERT INTO {SCHEMA}.events (product_id, to_state) VALUES ('p1', 'discovered')")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute(f"UPDATE {SCHEMA}.events SET message = 'x'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute(f"DELETE FROM {SCHEMA}.events")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(f"UPDATE {SCHEMA}.products SET state = 'bogus'")
        state = conn.execute(f"SELECT state, attempts FROM {SCHEMA}.products").fetchone()
    assert state == ("discovered", 0)
