"""ingest schema: retirements (crash-safe retention, deleted-items listing), products by item id

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "ingest"
# The STAC API's role reads the deleted-items listing (and nothing else of the ingest schema).
READ_ROLE = "pgstac_read"
LISTED = "collection, item_id, item_deleted_at"


def upgrade() -> None:
    # One row per retired product, written in the transaction that retires it: the record that lets a
    # re-run finish a crashed enforcement (item first, then objects) and that harvesters read.
    op.create_table(
        "retirements",
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column(
            "s3_prefix",
            sa.Text(),
            nullable=True,
            comment="where the product's objects were stored when it was retired",
        ),
        sa.Column("run_id", sa.Text(), nullable=False, comment="the retention run that retired the product"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=True, comment="sum of the item's asset file:size"),
        sa.Column("retired_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column(
            "item_deleted_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="when the item left pgstac (the harvesters' listing)",
        ),
        sa.Column("objects_deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("objects_deleted", sa.Integer(), nullable=True),
        sa.Column(
            "last_error", sa.Text(), nullable=True, comment="why the last attempt to finish this retirement stopped"
        ),
        sa.ForeignKeyConstraint(["product_id"], [f"{SCHEMA}.products.id"], name="retirements_product_fk"),
        sa.PrimaryKeyConstraint("product_id"),
        schema=SCHEMA,
    )
    op.create_index(
        "retirements_deleted_idx",
        "retirements",
        ["item_deleted_at", "collection", "item_id"],
        schema=SCHEMA,
    )
    op.create_index(
        "retirements_pending_idx",
        "retirements",
        ["collection"],
        schema=SCHEMA,
        postgresql_where=sa.text("item_deleted_at IS NULL OR objects_deleted_at IS NULL"),
    )
    # retention joins the catalogue's items to their products by item id
    op.create_index("products_collection_item_idx", "products", ["collection", "item_id"], schema=SCHEMA)
    op.execute(
        f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READ_ROLE}') THEN"
        f" GRANT USAGE ON SCHEMA {SCHEMA} TO {READ_ROLE};"
        f" GRANT SELECT ({LISTED}) ON {SCHEMA}.retirements TO {READ_ROLE}; END IF; END $$"
    )


def downgrade() -> None:
    op.drop_index("products_collection_item_idx", table_name="products", schema=SCHEMA)
    op.drop_table("retirements", schema=SCHEMA)
    op.execute(
        f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READ_ROLE}') THEN"
        f" REVOKE USAGE ON SCHEMA {SCHEMA} FROM {READ_ROLE}; END IF; END $$"
    )
