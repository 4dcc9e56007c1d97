"""The provider limits' table, on the ``ingest`` schema's metadata (the migration drift test compares both).

One row per provider: the fleet's shared request clock (``ingest.quota.rate``) and its pause
(``ingest.quota.pause``). Download slots need no table: they are advisory locks (``ingest.quota.slots``),
taken through ``ingest.take_provider_slot``, the function that migration 0005 creates beside this table.

Not imported by ``ingest.quota`` itself (nothing at run time needs SQLAlchemy): alembic's environment
and the drift test import it.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, DateTime, Integer, Table, Text, text

from ingest.state.tables import metadata

provider_limits = Table(
    "provider_limits",
    metadata,
    Column("provider", Text, primary_key=True, comment="EODAG provider name"),
    Column(
        "next_request_at",
        DateTime(timezone=True),
        comment="rate limit: the fleet's next free request time (each request reserves 1/R s after it)",
    ),
    Column("paused_until", DateTime(timezone=True), comment="no request to the provider before this time"),
    Column("pause_status", Integer, comment="HTTP status that caused the latest pause (429, 503)"),
    Column("pause_cause", Text, comment="what the provider said, in one line"),
    Column("paused_at", DateTime(timezone=True)),
    Column("paused_by", Text, comment="host:pid of the process that recorded the latest pause"),
    Column(
        "consecutive_pauses",
        Integer,
        nullable=False,
        server_default=text("0"),
        comment="pauses since the last success; the backoff grows with it",
    ),
    CheckConstraint("consecutive_pauses >= 0", name="provider_limits_consecutive_check"),
)
