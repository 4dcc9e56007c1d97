"""ingest schema: products, events (append-only), watermarks

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "ingest"
STATES = (
    "discovered",
    "claimed",
    "downloaded",
    "converted",
    "uploaded",
    "catalogued",
    "failed",
    "invalid",
    "retired",
)


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Text(), nullable=False, comment="upstream product id (the provider's title)"),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'discovered'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "upstream_checksum", sa.Text(), nullable=True, comment="provider checksum of the archive (multihash hex)"
        ),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("download_url", sa.Text(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True, comment="provider publication time"),
        sa.Column("sensing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("footprint", postgresql.JSONB(), nullable=True, comment="GeoJSON geometry announced by the provider"),
        sa.Column("s3_prefix", sa.Text(), nullable=True),
        sa.Column("item_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("state IN (" + ", ".join(f"'{s}'" for s in STATES) + ")", name="products_state_check"),
        sa.CheckConstraint("attempts >= 0", name="products_attempts_check"),
        sa.PrimaryKeyConstraint("id"),
        schema=SCHEMA,
    )
    op.create_index("products_collection_state_idx", "products", ["collection", "state"], schema=SCHEMA)
    op.create_index("products_state_next_attempt_idx", "products", ["state", "next_attempt_at"], schema=SCHEMA)
    op.create_index("products_collection_published_idx", "products", ["collection", "published_at"], schema=SCHEMA)

    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=True, comment="host:pid of the process that made the change"),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("details", postgresql.JSONB(), nullable=True),
        sa.ForeignKeyConstraint(["product_id"], [f"{SCHEMA}.products.id"], name="events_product_fk"),
        sa.PrimaryKeyConstraint("id"),
        schema=SCHEMA,
    )
    op.create_index("events_product_at_idx", "events", ["product_id", "at"], schema=SCHEMA)
    op.create_index("events_at_idx", "events", ["at"], schema=SCHEMA)
    # Append-only: the history is evidence (e.g. "no product handled by two workers at once").
    op.execute(
        f"""
        CREATE FUNCTION {SCHEMA}.events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ingest.events is append-only (% refused)', TG_OP;
        END $$;
        CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON {SCHEMA}.events
            FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.events_append_only();
        """
    )

    op.create_table(
        "watermarks",
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column(
            "published_until",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="newest provider publication time harvested; the next harvest starts here minus the overlap",
        ),
        sa.Column("last_harvest_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_harvest_found", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("collection"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("watermarks", schema=SCHEMA)
    op.execute(f"DROP TRIGGER events_append_only ON {SCHEMA}.events")
    op.execute(f"DROP FUNCTION {SCHEMA}.events_append_only()")
    op.drop_index("events_at_idx", table_name="events", schema=SCHEMA)
    op.drop_index("events_product_at_idx", table_name="events", schema=SCHEMA)
    op.drop_table("events", schema=SCHEMA)
    op.drop_index("products_collection_published_idx", table_name="products", schema=SCHEMA)
    op.drop_index("products_state_next_attempt_idx", table_name="products", schema=SCHEMA)
    op.drop_index("products_collection_state_idx", table_name="products", schema=SCHEMA)
    op.drop_table("products", schema=SCHEMA)
