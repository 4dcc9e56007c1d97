"""Composition root: settings and collection specs -> provider, state, pipeline runs."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ingest import collections as col
from ingest.adapters.eodag import EodagProvider
from ingest.adapters.s3 import ObjectStore
from ingest.collections import CollectionSpec
from ingest.errors import IngestError
from ingest.harvest import Discovery, harvest
from ingest.pipeline import Outcome, Services, process
from ingest.quota.limits import Quota, retry_after_s
from ingest.quota.paced import Paced
from ingest.settings import Settings
from ingest.state import repo
from ingest.state.db import Database, connect
from ingest.state.machine import State

_quotas: dict[tuple[int, str], Quota] = {}
_shared_lock = threading.RLock()  # process_provider asks process_quota under it


def process_quota(settings: Settings) -> Quota:
    """The provider limits of this process, shared by its threads (one database session for all of
    them); a forked child makes its own."""
    key = (os.getpid(), settings.require_database_url())
    with _shared_lock:
        if key not in _quotas:
            _quotas[key] = Quota.from_settings(settings)
        return _quotas[key]


_shared_providers: dict[tuple[Any, ...], EodagProvider] = {}


def process_provider(settings: Settings, collections: dict[str, str]) -> EodagProvider:
    """The provider adapter of this process for these settings, shared by its threads (worker threads
    each have an App): one EODAG gateway, one login, one token per process."""
    secret = settings.provider_password.get_secret_value() if settings.provider_password else None
    key = (
        os.getpid(), settings.provider, settings.provider_url, settings.provider_mirror_url,
        settings.provider_username.get_secret_value() if settings.provider_username else None, secret,
        str(settings.work_dir.resolve()), tuple(sorted(collections.items())),
    )  # fmt: skip
    with _shared_lock:
        if key not in _shared_providers:
            provider = EodagProvider(settings, collections=collections)
            limits = process_quota(settings).provider(provider.name) if settings.database_url else None
            if limits is not None:  # searches keep to the fleet's request rate and pause too
                provider.before_request = limits.before_request
                provider.refused = lambda status, after, cause: limits.pause(status, retry_after_s(after), cause)
            _shared_providers[key] = provider
        return _shared_providers[key]


@dataclass
class App:
    settings: Settings
    _providers: dict[str, EodagProvider] = field(default_factory=dict)

    @cached_property
    def specs(self) -> dict[str, CollectionSpec]:
        return col.load_all(self.settings.collections_dir)

    def spec(self, collection_id: str) -> CollectionSpec:
        try:
            return self.specs[collection_id]
        except KeyError:
            known = ", ".join(sorted(self.specs)) or "none"
            raise IngestError(f"unknown collection {collection_id!r} (known: {known})") from None

    def provider(self, spec: CollectionSpec) -> EodagProvider:
        name = spec.source.provider or self.settings.provider
        if name not in self._providers:
            settings = self.settings.model_copy(update={"provider": name})
            mapping = {s.source.eodag_collection: s.source.eodag_collection for s in self.specs.values()}
            self._providers[name] = process_provider(settings, mapping)
        return self._providers[name]

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore.from_settings(self.settings)

    def services(self, spec: CollectionSpec, should_stop: Callable[[], bool] = lambda: False) -> Services:
        provider = self.provider(spec)
        limits = process_quota(self.settings).provider(provider.name)
        return Services(
            downloader=Paced(provider, limits, should_stop),
            store=self.store,
            pgstac_dsn=self.settings.require_database_url(),
        )

    def harvest(self, collection_id: str) -> Discovery:
        spec = self.spec(collection_id)
        with connect(self.settings) as conn:
            return harvest(conn, self.provider(spec), spec)

    def due(self, collection_id: str) -> list[str]:
        spec = self.spec(collection_id)
        with connect(self.settings) as conn:
            return repo.due_products(conn, spec.id, limit=spec.harvest.max_products)

    def process(
        self, product_id: str, *, force: bool = False, should_stop: Callable[[], bool] = lambda: False
    ) -> Outcome:
        # a Database, not one connection: a server restart mid-product reopens it (ingest.state.db)
        with Database.from_settings(self.settings) as db:
            row = db.run(lambda c, _: repo.get_product(c, product_id))
            if row is None:
                raise IngestError(f"unknown product {product_id!r}: harvest or backfill it first")
            spec = self.spec(row["collection"])
            allowed: tuple[State, ...] = (State.DISCOVERED, State.FAILED, State.OFFLINE)
            if force:
                allowed += (State.CATALOGUED,)
                if row["state"] == State.INVALID:
                    db.run(
                        lambda c, again: repo.transition(
                            c, product_id, State.INVALID, State.DISCOVERED, message="forced by an operator",
                            resumed=again,
                        )
                    )  # fmt: skip
            return process(
                db,
                self.settings,
                product_id,
                spec=spec,
                services=self.services(spec, should_stop),
                allowed=allowed,
                force=force,
                should_stop=should_stop,
            )
