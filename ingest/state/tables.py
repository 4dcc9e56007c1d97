"""Tables of the ``ingest`` schema. Alembic migrations must produce exactly these (drift test)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ingest.state.machine import State

SCHEMA = "ingest"
metadata = MetaData(schema=SCHEMA)

_STATES = ", ".join(f"'{s.value}'" for s in State)

products = Table(
    "products",
    metadata,
    Column("id", Text, primary_key=True, comment="upstream product id (the provider's title)"),
    Column("collection", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("state", Text, nullable=False, server_default=text("'discovered'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("upstream_checksum", Text, comment="provider checksum of the archive (multihash hex)"),
    Column("size_bytes", BigInteger),
    Column("download_url", Text),
    Column("published_at", DateTime(timezone=True), comment="provider publication time"),
    Column("sensing_at", DateTime(timezone=True)),
    Column("footprint", JSONB, comment="GeoJSON geometry announced by the provider"),
    Column("online", Boolean, nullable=False, server_default=text("true"), comment="online at the provider"),
    Column("s3_prefix", Text),
    Column("item_id", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(f"state IN ({_STATES})", name="products_state_check"),
    CheckConstraint("attempts >= 0", name="products_attempts_check"),
)
Index("products_collection_state_idx", products.c.collection, products.c.state)
Index("products_state_next_attempt_idx", products.c.state, products.c.next_attempt_at)
Index("products_collection_published_idx", products.c.collection, products.c.published_at)
Index("products_collection_item_idx", products.c.collection, products.c.item_id)

events = Table(
    "events",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("product_id", Text, ForeignKey("ingest.products.id", name="events_product_fk"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("from_state", Text),
    Column("to_state", Text, nullable=False),
    Column("worker", Text, comment="host:pid of the process that made the change"),
    Column("message", Text),
    Column("details", JSONB),
)
Index("events_product_at_idx", events.c.product_id, events.c.at)
Index("events_at_idx", events.c.at)

watermarks = Table(
    "watermarks",
    metadata,
    Column("collection", Text, primary_key=True),
    Column("provider", Text, nullable=False),
    Column(
        "published_until",
        DateTime(timezone=True),
        nullable=False,
        comment="newest provider publication time harvested; the next harvest starts here minus the overlap",
    ),
    Column("last_harvest_at", DateTime(timezone=True)),
    Column("last_harvest_found", Integer),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

backfill_chunks = Table(
    "backfill_chunks",
    metadata,
    Column(
        "backfill_id",
        Text,
        primary_key=True,
        comment="collection, sensing range and area hashed: the same command line resumes the same backfill",
    ),
    Column("chunk_start", DateTime(timezone=True), primary_key=True, comment="sensing time, inclusive"),
    Column("chunk_end", DateTime(timezone=True), nullable=False, comment="sensing time, exclusive"),
    Column("collection", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("products_found", Integer, comment="products the provider returned for the chunk"),
    Column("enqueued", Integer, comment="jobs added for the chunk (products already queued are not counted)"),
    Column("finished_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('pending', 'done')", name="backfill_chunks_status_check"),
    CheckConstraint("chunk_end > chunk_start", name="backfill_chunks_range_check"),
)

retirements = Table(
    "retirements",
    metadata,
    Column("product_id", Text, ForeignKey("ingest.products.id", name="retirements_product_fk"), primary_key=True),
    Column("collection", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("s3_prefix", Text, comment="where the product's objects were stored when it was retired"),
    Column("run_id", Text, nullable=False, comment="the retention run that retired the product"),
    Column("reason", Text, nullable=False),
    Column("bytes", BigInteger, comment="sum of the item's asset file:size"),
    Column("retired_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("item_deleted_at", DateTime(timezone=True), comment="when the item left pgstac (the harvesters' listing)"),
    Column("objects_deleted_at", DateTime(timezone=True)),
    Column("objects_deleted", Integer),
    Column("last_error", Text, comment="why the last attempt to finish this retirement stopped"),
)
Index("retirements_deleted_idx", retirements.c.item_deleted_at, retirements.c.collection, retirements.c.item_id)
Index(
    "retirements_pending_idx",
    retirements.c.collection,
    postgresql_where=text("item_deleted_at IS NULL OR objects_deleted_at IS NULL"),
)

audits = Table(
    "audits",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("collection", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("deep", Boolean, nullable=False, comment="SHA-256 of every object compared too"),
    Column("scheduled", Boolean, nullable=False, comment="run by the scheduler, not by an operator"),
    Column("items", Integer, nullable=False),
    Column("assets", Integer, nullable=False),
    Column("objects", Integer, nullable=False),
    Column("unchecked_assets", Integer, nullable=False, comment="hrefs outside this store's prefix"),
    Column("broken_items", Integer, nullable=False),
    Column("orphan_objects", Integer, nullable=False),
    Column("orphan_bytes", BigInteger, nullable=False),
    Column("requeued", Integer, comment="--repair: products re-queued"),
    Column("orphans_deleted", Integer, comment="--repair: orphan objects deleted"),
)
Index("audits_collection_finished_idx", audits.c.collection, audits.c.finished_at)

audit_deletions = Table(
    "audit_deletions",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("audit_id", BigInteger, ForeignKey("ingest.audits.id", name="audit_deletions_audit_fk"), nullable=False),
    Column("collection", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("last_modified", DateTime(timezone=True), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("deleted_at", DateTime(timezone=True)),
)
Index("audit_deletions_audit_idx", audit_deletions.c.audit_id)

# Registration with federation catalogues (ingest.federation): per target, what was pushed and from when.
registration_cursors = Table(
    "registration_cursors",
    metadata,
    Column("target", Text, primary_key=True),
    Column("collection", Text, primary_key=True),
    Column("since", DateTime(timezone=True), nullable=False, comment="database time a complete push began"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

registered_items = Table(
    "registered_items",
    metadata,
    Column("target", Text, primary_key=True),
    Column("collection", Text, primary_key=True),
    Column("item_id", Text, primary_key=True),
    Column("digest", Text, nullable=False, comment="SHA-256 of the document the target accepted"),
    Column("pushed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
