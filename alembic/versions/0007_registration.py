"""ingest schema: registration with federation catalogues (a cursor and the items pushed, per target)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA = "ingest"


def upgrade() -> None:
    # Where the next push of a collection to a target starts (``updated`` from here, less the settle
    # window); moved only when a push went through to the end, so an interrupted one starts again.
    op.create_table(
        "registration_cursors",
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False, comment="database time a complete push began"),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("target", "collection"),
        schema=SCHEMA,
    )
    # What each target holds of ours: a push sends only what differs, and an item gone from our
    # catalogue (retention, a replaced processing) is deleted upstream from this list.
    op.create_table(
        "registered_items",
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("digest", sa.Text(), nullable=False, comment="SHA-256 of the document the target accepted"),
        sa.Column("pushed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("target", "collection", "item_id"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("registered_items", schema=SCHEMA)
    op.drop_table("registration_cursors", schema=SCHEMA)
