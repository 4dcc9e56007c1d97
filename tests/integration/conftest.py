"""A whole site for pipeline tests: a provider server with generated products, a migrated database
with the collection published in pgstac, and a bucket of its own on the S3 server."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import psycopg
import pytest
from pydantic import SecretStr

from ingest.adapters.eodag import EodagProvider
from ingest.adapters.s3 import ObjectStore
from ingest.catalog.publish import sync_collections
from ingest.collections import CollectionSpec, load_spec
from ingest.devtools.catalog import ProviderEntry
from ingest.devtools.cdse.oidc import DEFAULT_USERS
from ingest.devtools.cdse.server import CdseServer
from ingest.devtools.provider import ProviderServer
from ingest.devtools.publish import Kind, plan_products, publish_generated
from ingest.harvest import harvest
from ingest.pipeline import Outcome, Services, process
from ingest.quota import Quota
from ingest.quota.paced import Paced
from ingest.settings import Settings
from ingest.stages.kinds import KINDS
from ingest.state.machine import State
from tests.conftest import ROOT, Stack

START = datetime(2026, 3, 1, tzinfo=UTC)
SPEC_OF = {k.eodag: k.collection for k in KINDS}  # EODAG collection id -> our collection file


class _ProcessOptions(TypedDict, total=False):
    allowed: tuple[State, ...]


@dataclass
class World:
    root: Path
    server: ProviderServer
    settings: Settings
    spec: CollectionSpec
    conn: psycopg.Connection
    entries: list[ProviderEntry]
    kind: str = "S2_MSI_L2A"
    quota: Quota | None = None  # opened by the first services(), closed with the world

    @property
    def provider(self) -> EodagProvider:
        return EodagProvider(self.settings)

    @property
    def store(self) -> ObjectStore:
        return ObjectStore.from_settings(self.settings)

    @property
    def dsn(self) -> str:
        return self.settings.require_database_url()

    def services(self, settings: Settings | None = None) -> Services:
        """As a worker's: the provider adapter behind the fleet's limits of this world's database."""
        s = settings or self.settings
        if self.quota is None:
            self.quota = Quota.from_settings(s)
        paced = Paced(EodagProvider(s), self.quota.provider(s.provider))
        return Services(downloader=paced, store=ObjectStore.from_settings(s), pgstac_dsn=s.require_database_url())

    def process(
        self, product_id: str, *, settings: Settings | None = None, allowed: Sequence[State] | None = None,
        force: bool = False,
    ) -> Outcome:  # fmt: skip
        s = settings or self.settings
        kw: _ProcessOptions = {"allowed": tuple(allowed)} if allowed is not None else {}
        return process(self.conn, s, product_id, spec=self.spec, services=self.services(s), force=force, **kw)

    def cli_env(self, stack: Stack, spec_yaml: str | None = None, **extra: str) -> dict[str, str]:
        """The environment of an ``ingest`` OS process working on this world: its database, bucket,
        provider and work dir, and a collections folder holding only this world's collection
        (``spec_yaml``: the file's text, default the kind's real file renamed to the world's id)."""
        spec_dir = self.settings.work_dir.parent / "collections"
        spec_dir.mkdir(parents=True, exist_ok=True)
        text = spec_yaml or (ROOT / "collections" / f"{SPEC_OF[self.kind]}.yaml").read_text()
        spec_dir.joinpath(f"{self.spec.id}.yaml").write_text(
            text.replace(f"id: {SPEC_OF[self.kind]}\n", f"id: {self.spec.id}\n", 1)
        )
        return {
            **stack.env,
            "INGEST_DATABASE_URL": self.dsn,
            "INGEST_S3_BUCKET": self.settings.s3_bucket,
            **self.provider_env(),
            "INGEST_WORK_DIR": str(self.settings.work_dir),
            "INGEST_COLLECTIONS_DIR": str(spec_dir),
            "INGEST_DOWNLOAD_BACKOFF_S": "0",
            "INGEST_STACK_DIR": str(self.settings.work_dir.parent / "no-stack"),
            **extra,
        }

    def provider_env(self) -> dict[str, str]:
        s = self.settings
        if not s.provider_mirror_url:
            return {"INGEST_PROVIDER": s.provider, "INGEST_PROVIDER_URL": self.server.url}
        assert s.provider_username is not None and s.provider_password is not None
        return {
            "INGEST_PROVIDER": s.provider, "INGEST_PROVIDER_URL": "",
            "INGEST_PROVIDER_MIRROR_URL": s.provider_mirror_url,
            "INGEST_PROVIDER_USERNAME": s.provider_username.get_secret_value(),
            "INGEST_PROVIDER_PASSWORD": s.provider_password.get_secret_value(),
        }  # fmt: skip

    def work_of(self, product_id: str) -> Path:
        return self.settings.work_dir / self.spec.id / product_id


WorldFactory = Callable[..., World]


@pytest.fixture
def make_world(migrated_db: str, stack: Stack, tmp_path: Path) -> Iterator[WorldFactory]:
    """``make_world(kind="S2_MSI_L2A", count=3, size=60)``: one world per test (its own collection id,
    bucket and provider), so watermarks, products and objects never mix between tests."""
    opened: list[tuple[ProviderServer, psycopg.Connection]] = []
    worlds: list[World] = []

    def make(
        kind: Kind = "S2_MSI_L2A", count: int = 3, size: int = 60, flavour: str = "stac", **overrides: Any
    ) -> World:
        """``flavour``: the provider speaks STAC (the local provider) or CDSE (``cop_dataspace`` through
        EODAG's own plugins, every address moved to the CDSE-like server)."""
        root = tmp_path / f"provider-{len(opened)}"
        dsn = overrides.pop("database", migrated_db)  # another migrated database: a second site
        plans = plan_products(count, kinds=(kind,), start=START)
        entries = [publish_generated(root, plan, size=size) for plan in plans]
        spec = load_spec(ROOT / "collections" / f"{SPEC_OF[kind]}.yaml").model_copy(
            update={"id": f"t-{uuid.uuid4().hex[:10]}"}
        )
        server = (CdseServer(root, port=0) if flavour == "cdse" else ProviderServer(root, port=0)).start()
        where: dict[str, Any] = {"provider": "local", "provider_url": server.url}
        if flavour == "cdse":
            ((user, password),) = DEFAULT_USERS.items()
            where = {
                "provider": "cop_dataspace", "provider_url": "", "provider_mirror_url": server.url,
                "provider_username": SecretStr(user), "provider_password": SecretStr(password),
            }  # fmt: skip
        conn = psycopg.connect(dsn)
        opened.append((server, conn))
        settings = Settings(
            database_url=SecretStr(dsn),
            work_dir=overrides.pop("work_dir", tmp_path / "work"),
            download_backoff_s=0.01,
            provider_search_retries=0,
            retry_base_delay_s=60,
            s3_endpoint_url=stack.env["INGEST_S3_ENDPOINT_URL"],
            s3_access_key_id=SecretStr(stack.env["INGEST_S3_ACCESS_KEY_ID"]),
            s3_secret_access_key=SecretStr(stack.env["INGEST_S3_SECRET_ACCESS_KEY"]),
            s3_region=stack.env["INGEST_S3_REGION"],
            s3_bucket="b-" + secrets.token_hex(6),
            convert_workers=2,
            _env_file=None,  # never a developer's .stack/ or .env
            **{**where, **overrides},
        )  # type: ignore[call-arg]
        ObjectStore.from_settings(settings).ensure_bucket()
        sync_collections(settings, [spec])
        world = World(root, server, settings, spec, conn, entries, kind)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        if world.quota is not None:
            world.quota.close()
    for server, conn in opened:
        conn.close()
        server.stop()


def catalogued_world(make_world: WorldFactory, ages_days: Sequence[int], per_age: int = 2) -> World:
    """An S2 L2A world whose provider holds ``per_age`` products sensed each of ``ages_days`` ago, all of
    them harvested and catalogued through the pipeline, committed (for OS processes), autocommit after."""
    w = make_world("S2_MSI_L2A", count=0)
    now = datetime.now(UTC).replace(microsecond=0)
    for days in ages_days:
        for p in plan_products(per_age, kinds=("S2_MSI_L2A",), start=now - timedelta(days=days), seed=days):
            publish_generated(w.root, p, size=60)
    harvest(w.conn, w.provider, w.spec)
    ids = [r[0] for r in w.conn.execute("SELECT id FROM ingest.products WHERE collection = %s", [w.spec.id])]
    assert len(ids) == per_age * len(ages_days)
    for product_id in ids:
        assert w.process(product_id).state is State.CATALOGUED
    w.conn.commit()  # the world's connection is not autocommit; the CLI processes must see the products
    w.conn.autocommit = True
    return w
