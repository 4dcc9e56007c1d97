"""A provider that refuses (429/503) pauses itself for the fleet, and the product goes back to the queue
without an attempt counted; once the pause ends the same product is catalogued."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from ingest.adapters.eodag import EodagProvider
from ingest.adapters.s3 import ObjectStore
from ingest.errors import ProviderThrottled
from ingest.harvest import harvest
from ingest.pipeline import Services, process
from ingest.quota import ProviderPaused, Quota
from ingest.quota.paced import Paced
from ingest.stages.artifacts import ArchiveStream, ProviderProduct
from ingest.state.machine import State
from tests.integration.conftest import World, WorldFactory


class Refusing:
    """The real adapter, but its first ``refusals`` transfers answer as an overloaded provider does."""

    def __init__(self, inner: EodagProvider, refusals: int, retry_after: str | None) -> None:
        self.inner, self.refusals, self.retry_after = inner, refusals, retry_after
        self.transfers = 0

    def _refuse(self, product: ProviderProduct) -> None:
        self.transfers += 1
        if self.transfers <= self.refusals:
            raise ProviderThrottled(
                "HTTP 429 on download", status=429, retry_after=self.retry_after, product_id=product.id
            )

    @contextmanager
    def stream(self, product: ProviderProduct) -> Iterator[ArchiveStream]:
        self._refuse(product)
        with self.inner.stream(product) as archive:
            yield archive

    def download(self, product: ProviderProduct, dest_dir: Path) -> Path:
        self._refuse(product)
        return self.inner.download(product, dest_dir)


def _row(world: World, product_id: str) -> tuple[str, int, object]:
    with psycopg.connect(world.dsn) as conn:
        row = conn.execute(
            "SELECT state, attempts, next_attempt_at FROM ingest.products WHERE id = %s", [product_id]
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


@pytest.mark.parametrize("retry_after", ["2", None])
def test_a_refusal_pauses_the_provider_and_gives_the_product_back_unattempted(
    make_world: WorldFactory, retry_after: str | None
) -> None:
    world = make_world(count=1)
    harvest(world.conn, world.provider, world.spec)
    product_id = world.entries[0].id
    name = "p-" + secrets.token_hex(4)  # a provider of this test alone: its pause is nobody else's
    settings = world.settings.model_copy(update={"provider_pause_base_s": 2.0})
    with Quota.from_settings(settings) as quota:
        limits = quota.provider(name)
        refusing = Refusing(EodagProvider(settings), refusals=1, retry_after=retry_after)
        services = Services(Paced(refusing, limits), ObjectStore.from_settings(settings), world.dsn)

        out = process(world.conn, settings, product_id, spec=world.spec, services=services)
        assert out.released and out.state is State.DISCOVERED and out.next_attempt_at is not None
        assert "paused" in (out.error or "")
        state, attempts, due = _row(world, product_id)
        assert (state, attempts) == ("discovered", 0)  # the refusal was not an attempt of the product
        assert due == out.next_attempt_at
        status = limits.status()
        assert status.paused and status.pause_status == 429 and 0 < status.remaining_s <= 3.5

        # while paused, every worker of the fleet waits: this one gives up at once (its wait is shorter)
        with pytest.raises(ProviderPaused), limits.download_slot(product_id, wait_s=0.1):
            pass

        deadline = time.monotonic() + 10
        while limits.status().paused:
            assert time.monotonic() < deadline, "the pause never ended"
            time.sleep(0.2)
        again = process(world.conn, settings, product_id, spec=world.spec, services=services)
        assert again.state is State.CATALOGUED, again.error
        assert refusing.transfers == 2
        assert _row(world, product_id)[:2] == ("catalogued", 1)
        assert limits.status().consecutive_pauses == 0  # a success ends the run of pauses
        assert limits.status().slots_held == 0
