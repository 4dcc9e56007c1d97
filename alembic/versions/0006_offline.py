"""ingest schema: products offline at the provider (its long-term archive) have a state of their own

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "ingest"
BEFORE = ("discovered", "claimed", "downloaded", "converted", "uploaded", "catalogued", "failed", "invalid", "retired")
AFTER = (*BEFORE, "offline")


def _states(states: tuple[str, ...]) -> str:
    return "state IN (" + ", ".join(f"'{s}'" for s in states) + ")"


def upgrade() -> None:
    # what the provider said at discovery (OData's Online): an offline product is looked up again
    # before a download is tried, instead of failing its attempts against the archive
    op.add_column(
        "products",
        sa.Column(
            "online", sa.Boolean(), server_default=sa.text("true"), nullable=False, comment="online at the provider"
        ),
        schema=SCHEMA,
    )
    op.drop_constraint("products_state_check", "products", schema=SCHEMA)
    op.create_check_constraint("products_state_check", "products", _states(AFTER), schema=SCHEMA)


def downgrade() -> None:
    # an offline product is simply due again for the older code (which knows no such state)
    op.execute(f"UPDATE {SCHEMA}.products SET state = 'discovered' WHERE state = 'offline'")
    op.drop_constraint("products_state_check", "products", schema=SCHEMA)
    op.create_check_constraint("products_state_check", "products", _states(BEFORE), schema=SCHEMA)
    op.drop_column("products", "online", schema=SCHEMA)
