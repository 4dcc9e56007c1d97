"""What a Copernicus Data Space does to a site, through EODAG's own cop_dataspace plugins against the
CDSE-like server: each fault ends as a clear, recorded cause, never a corrupt catalogue, never a
retry storm, never a password in a log."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta

import pytest
from pydantic import SecretStr

from ingest.app import process_provider, process_quota
from ingest.devtools.cdse.faults import CdseFaults
from ingest.devtools.publish import plan_products, publish_generated
from ingest.errors import ProviderUnavailable, SearchIncomplete
from ingest.harvest import discover, harvest
from ingest.health import Unhealthy, check_provider
from ingest.state import repo
from ingest.state.machine import State
from tests.integration.conftest import START, World, WorldFactory


@pytest.fixture
def world(make_world: WorldFactory) -> World:
    return make_world("S2_MSI_L2A", count=2, size=60, flavour="cdse")


def _faults(world: World, **knobs: object) -> None:
    world.server.set_faults(CdseFaults(**knobs))  # type: ignore[arg-type]


def _cdse_all(world: World) -> dict[str, object]:
    stats: dict[str, object] = world.server.stats_dict()  # type: ignore[attr-defined]
    return stats


def _cdse(world: World) -> dict[str, object]:
    cdse: dict[str, object] = world.server.stats_dict()["cdse"]  # type: ignore[attr-defined]
    return cdse


def test_wrong_credentials_pause_the_provider_once_and_name_it_without_the_password(
    make_world: WorldFactory, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-Pa55word"
    world = make_world(
        "S2_MSI_L2A", count=2, size=60, flavour="cdse", provider_password=SecretStr(wrong), provider_slot_wait_s=1.0
    )  # a worker waits for a pause this long, then gives the product back
    harvest(world.conn, world.provider, world.spec)  # CDSE's search needs no sign-in
    first, second = (e.id for e in world.entries)
    with caplog.at_level(logging.DEBUG):
        out = world.process(first)
        again = world.process(second)
    for o in (out, again):
        assert o.released and o.state is State.DISCOVERED, o
    assert "refused the credentials" in (out.error or "") and "cop_dataspace" in (out.error or "")
    for pid in (first, second):
        row = repo.get_product(world.conn, pid)
        assert row is not None and row["state"] == "discovered" and row["attempts"] == 0  # not the products' fault
    # the second product did not try to sign in again within the pause (10 s, then 20, 40, ...): no storm
    tokens = _cdse(world)["tokens"]
    assert isinstance(tokens, dict) and sum(tokens["failures"].values()) == 1, tokens
    with pytest.raises(Unhealthy, match="refused the credentials"):
        check_provider(world.settings, 5.0)
    assert wrong not in caplog.text


def test_a_token_endpoint_that_is_down_pauses_the_provider_and_costs_no_attempt(world: World) -> None:
    harvest(world.conn, world.provider, world.spec)
    _faults(world, token_down=True)
    out = world.process(world.entries[0].id)
    assert out.released and "sign-in did not answer" in (out.error or ""), out
    row = repo.get_product(world.conn, world.entries[0].id)
    assert row is not None and (row["state"], row["attempts"]) == ("discovered", 0)


@pytest.mark.parametrize("retry_after", [7, None])
def test_a_429_storm_pauses_the_fleet_for_retry_after_or_its_backoff(world: World, retry_after: int | None) -> None:
    harvest(world.conn, world.provider, world.spec)
    _faults(world, status_429_rate=1.0, retry_after_s=retry_after)
    out = world.process(world.entries[0].id)
    assert out.released and out.next_attempt_at is not None, out
    assert world.quota is not None
    status = world.quota.provider("cop_dataspace").status()
    assert status.paused and status.pause_status == 429
    expected = retry_after if retry_after is not None else world.settings.provider_pause_base_s
    assert 0 < status.remaining_s <= expected * 1.5 + 1, status
    # the next product does not ask the provider while it is paused
    before = _cdse(world)["downloads"]
    out2 = world.process(world.entries[1].id)
    assert out2.released and "paused" in (out2.error or "")
    assert _cdse(world)["downloads"] == before


def test_odata_500_in_the_middle_of_paging_skips_nothing_on_the_next_harvest(world: World) -> None:
    for plan in plan_products(4, kinds=("S2_MSI_L2A",), start=START + timedelta(days=1)):
        world.entries.append(publish_generated(world.root, plan, size=60))
    _faults(world, search_500_pages=[2], search_500_times=1)
    with pytest.raises(ProviderUnavailable, match="cop_dataspace"):
        discover(world.conn, world.provider, world.spec, page_size=2)
    assert repo.get_watermark(world.conn, world.spec.id) is None  # nothing claimed as seen past the failure
    found = discover(world.conn, world.provider, world.spec, page_size=2)
    with world.conn.cursor() as cur:
        ids = {r[0] for r in cur.execute("SELECT id FROM ingest.products WHERE collection = %s", [world.spec.id])}
    assert ids == {e.id for e in world.entries} and found.seen == 6


def test_pages_follow_publication_time_though_sensing_order_differs(world: World) -> None:
    # a product sensed before the others but published after them (a late or reprocessed one): every page
    # must be in the watermark's order, else $skip paging over two orders skips one and repeats another
    (late,) = plan_products(1, kinds=("S2_MSI_L2A",), start=START - timedelta(days=2), publication_delay_h=24 * 5)
    world.entries.append(publish_generated(world.root, late, size=60))
    found = discover(world.conn, world.provider, world.spec, page_size=1)
    assert sorted(found.new_ids) == sorted(e.id for e in world.entries) and found.seen == 3
    orders = set(re.findall(r"\$orderby=([^&]+)", str(_cdse_all(world)["recent"])))
    assert orders == {"PublicationDate%20asc"}, orders


def test_a_checksum_that_disagrees_with_the_bytes_is_invalid_and_a_vanished_product_is_gone(world: World) -> None:
    harvest(world.conn, world.provider, world.spec)
    corrupt, vanished = (e.id for e in world.entries)
    _faults(world, products={corrupt: "corrupt", vanished: "vanish"})
    out = world.process(corrupt)
    assert out.state is State.INVALID and re.search(r"blake3 .* differs from the provider's", out.error or ""), out
    gone = world.process(vanished)
    assert gone.state is State.FAILED and "no longer has this product" in (gone.error or ""), gone
    row = repo.get_product(world.conn, vanished)
    assert row is not None and row["next_attempt_at"] is None  # gone upstream: only an operator retries


def test_an_offline_product_waits_in_a_state_of_its_own_then_is_catalogued_once_back(world: World) -> None:
    offline, online = (e.id for e in world.entries)
    _faults(world, offline=[offline])
    harvest(world.conn, world.provider, world.spec)
    row = repo.get_product(world.conn, offline)
    assert row is not None and row["online"] is False  # as the search said (Online: false)
    quick = world.settings.model_copy(update={"offline_recheck_s": 1.0})
    out = world.process(offline, settings=quick)
    assert out.state is State.OFFLINE and out.next_attempt_at is not None, out
    row = repo.get_product(world.conn, offline)
    assert row is not None and (row["state"], row["attempts"], row["last_error"]) == ("offline", 0, None)
    assert world.process(online).state is State.CATALOGUED  # the others go on
    paths = _cdse_all(world)["paths"]
    assert isinstance(paths, dict) and sum("$value" in p for p in paths) == 1  # the online one's only
    # not due before its time, due after it; back online at the provider, it is catalogued
    assert offline not in repo.due_products(world.conn, world.spec.id, limit=10)
    world.conn.commit()  # now() is the transaction's start
    _faults(world)
    time.sleep(1.2)
    assert offline in repo.due_products(world.conn, world.spec.id, limit=10)
    world.conn.commit()
    back = world.process(offline, settings=quick)
    assert back.state is State.CATALOGUED, back.error
    assert [e["to_state"] for e in repo.events_of(world.conn, offline)] == [
        "discovered", "claimed", "offline", "claimed", "downloaded", "converted", "uploaded", "catalogued",
    ]  # fmt: skip


def test_a_product_sensed_at_the_instant_a_window_begins_is_in_that_window(world: World) -> None:
    # OData says "ContentDate/End gt start": strictly after. A backfill chunk [START, +1 h) holds the
    # product sensed at START (an instant: Start = End), and the previous chunk need not
    first = world.entries[0]
    assert first.datetime == START
    found = discover(world.conn, world.provider, world.spec, start=START, end=START + timedelta(hours=1))
    assert first.id in found.new_ids and found.seen == 2


def test_a_search_the_provider_stops_paging_is_an_error_not_a_done_window(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CDSE pages no further than $skip 10,000 and then answers as if nothing were left: here at 2
    from ingest.devtools.cdse import odata

    for plan in plan_products(4, kinds=("S2_MSI_L2A",), start=START + timedelta(days=1)):
        world.entries.append(publish_generated(world.root, plan, size=60))
    monkeypatch.setattr(odata, "MAX_SKIP", 2)
    with pytest.raises(SearchIncomplete, match=r"stopped at 4 of 6 products"):
        discover(world.conn, world.provider, world.spec, page_size=2)
    monkeypatch.setattr(odata, "MAX_SKIP", 10_000)
    assert discover(world.conn, world.provider, world.spec, page_size=2).seen == 6


def test_a_search_answered_429_pauses_the_provider_for_the_fleet(world: World) -> None:
    provider = process_provider(world.settings, {})  # as the daemon composes it: with the fleet's limits
    _faults(world, status_429_rate=1.0, retry_after_s=30)
    with pytest.raises(ProviderUnavailable, match=r"cop_dataspace.*Too many requests"):
        harvest(world.conn, provider, world.spec)
    status = process_quota(world.settings).provider("cop_dataspace").status()
    assert status.paused and status.pause_status == 429 and 25 < status.remaining_s <= 30, status
