"""ingest schema: audits (catalogue vs store, per collection) and the orphan objects they deleted

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "ingest"


def upgrade() -> None:
    # One row per audit run: `ingest status` and the metrics read the newest per collection, so both
    # show the same numbers, from whichever process ran the audit.
    op.create_table(
        "audits",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("deep", sa.Boolean(), nullable=False, comment="SHA-256 of every object compared too"),
        sa.Column("scheduled", sa.Boolean(), nullable=False, comment="run by the scheduler, not by an operator"),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("assets", sa.Integer(), nullable=False),
        sa.Column("objects", sa.Integer(), nullable=False),
        sa.Column("unchecked_assets", sa.Integer(), nullable=False, comment="hrefs outside this store's prefix"),
        sa.Column("broken_items", sa.Integer(), nullable=False),
        sa.Column("orphan_objects", sa.Integer(), nullable=False),
        sa.Column("orphan_bytes", sa.BigInteger(), nullable=False),
        sa.Column("requeued", sa.Integer(), nullable=True, comment="--repair: products re-queued"),
        sa.Column("orphans_deleted", sa.Integer(), nullable=True, comment="--repair: orphan objects deleted"),
        sa.PrimaryKeyConstraint("id"),
        schema=SCHEMA,
    )
    op.create_index("audits_collection_finished_idx", "audits", ["collection", "finished_at"], schema=SCHEMA)
    # Each orphan a repair deletes: written before the deletion, stamped after it, so a crash in
    # between leaves a row saying the deletion was asked and not confirmed.
    op.create_table(
        "audit_deletions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("audit_id", sa.BigInteger(), nullable=False),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["audit_id"], [f"{SCHEMA}.audits.id"], name="audit_deletions_audit_fk"),
        sa.PrimaryKeyConstraint("id"),
        schema=SCHEMA,
    )
    op.create_index("audit_deletions_audit_idx", "audit_deletions", ["audit_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("audit_deletions", schema=SCHEMA)
    op.drop_table("audits", schema=SCHEMA)
