"""ingest schema: provider limits held by the whole fleet (request clock, pause) and the slot function

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "ingest"

# Takes the first free download slot among ``indices`` (session-level advisory locks keyed
# (key1, index)) and returns its index, NULL when all are taken: one round trip however many are
# tried, and exactly one lock taken (a set-returning query with pg_try_advisory_lock in WHERE or a
# LIMIT may evaluate it for more rows than it returns, which the PostgreSQL manual warns about).
TAKE_SLOT = f"""
CREATE FUNCTION {SCHEMA}.take_provider_slot(key1 integer, indices integer[]) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    i integer;
BEGIN
    FOREACH i IN ARRAY indices LOOP
        IF pg_try_advisory_lock(key1, i) THEN
            RETURN i;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    # One row per provider, shared by every worker: the rate limit's next free request time and the
    # pause after a 429/503 (ingest.quota). Download slots are advisory locks, not rows: the server
    # frees them by itself when the holder's session ends (kill -9, a machine lost).
    op.create_table(
        "provider_limits",
        sa.Column("provider", sa.Text(), nullable=False, comment="EODAG provider name"),
        sa.Column(
            "next_request_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="rate limit: the fleet's next free request time (each request reserves 1/R s after it)",
        ),
        sa.Column(
            "paused_until",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="no request to the provider before this time",
        ),
        sa.Column(
            "pause_status", sa.Integer(), nullable=True, comment="HTTP status that caused the latest pause (429, 503)"
        ),
        sa.Column("pause_cause", sa.Text(), nullable=True, comment="what the provider said, in one line"),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "paused_by", sa.Text(), nullable=True, comment="host:pid of the process that recorded the latest pause"
        ),
        sa.Column(
            "consecutive_pauses",
            sa.Integer(),
            server_default=sa.text("0"),
            nullable=False,
            comment="pauses since the last success; the backoff grows with it",
        ),
        sa.CheckConstraint("consecutive_pauses >= 0", name="provider_limits_consecutive_check"),
        sa.PrimaryKeyConstraint("provider"),
        schema=SCHEMA,
    )
    op.execute(TAKE_SLOT)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SCHEMA}.take_provider_slot(integer, integer[])")
    op.drop_table("provider_limits", schema=SCHEMA)
