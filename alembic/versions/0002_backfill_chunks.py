"""ingest schema: backfill_chunks (resumable backfills)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "ingest"


def upgrade() -> None:
    # One row per chunk of a backfill's sensing range; a chunk is 'done' once its products are
    # recorded and enqueued, so an interrupted backfill resumes at the first chunk still pending.
    op.create_table(
        "backfill_chunks",
        sa.Column(
            "backfill_id",
            sa.Text(),
            nullable=False,
            comment="collection, sensing range and area hashed: the same command line resumes the same backfill",
        ),
        sa.Column("chunk_start", sa.DateTime(timezone=True), nullable=False, comment="sensing time, inclusive"),
        sa.Column("chunk_end", sa.DateTime(timezone=True), nullable=False, comment="sensing time, exclusive"),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column(
            "products_found", sa.Integer(), nullable=True, comment="products the provider returned for the chunk"
        ),
        sa.Column(
            "enqueued",
            sa.Integer(),
            nullable=True,
            comment="jobs added for the chunk (products already queued are not counted)",
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'done')", name="backfill_chunks_status_check"),
        sa.CheckConstraint("chunk_end > chunk_start", name="backfill_chunks_range_check"),
        sa.PrimaryKeyConstraint("backfill_id", "chunk_start"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("backfill_chunks", schema=SCHEMA)
