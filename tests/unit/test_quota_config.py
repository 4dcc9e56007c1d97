"""Provider limits without a database: settings into the config, the slot keys, the typed errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest.quota import LimitsConfig, ProviderLimited, ProviderPaused, SlotWaitTimeout, WaitCancelled, retry_after_s
from ingest.quota.slots import lock_classid, slot_key
from ingest.settings import Settings


def test_settings_make_the_config() -> None:
    s = Settings(
        provider_max_downloads=2,
        provider_max_requests_per_s=0,
        provider_slot_wait_s=30,
        provider_pause_base_s=5,
        provider_pause_max_s=60,
        _env_file=None,  # type: ignore[call-arg]
    )
    c = LimitsConfig.from_settings(s)
    assert (c.max_downloads, c.max_requests_per_s, c.slot_wait_s) == (2, 0, 30)
    assert (c.pause.base_s, c.pause.max_s) == (5, 60)


def test_defaults_follow_the_copernicus_data_space() -> None:
    c = LimitsConfig.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert c.max_downloads == 4  # CDSE: 4 concurrent downloads per user
    assert c.max_requests_per_s > 0


def test_a_base_above_the_cap_is_the_cap() -> None:
    s = Settings(provider_pause_base_s=600, provider_pause_max_s=60, _env_file=None)  # type: ignore[call-arg]
    assert LimitsConfig.from_settings(s).pause.base_s == 60


def test_inconsistent_config_is_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        LimitsConfig(max_downloads=0)


def test_slot_keys_are_stable_and_fit_an_int4() -> None:
    """Every worker, of every version, must derive the same lock for the same slot: a change here
    splits a fleet being upgraded into two that each allow the full limit."""
    assert slot_key("cop_dataspace") == -559941433
    assert lock_classid("cop_dataspace") == 3735025863  # as pg_locks shows it (an oid)
    assert slot_key("local") == 824597600
    for name in ("cop_dataspace", "creodias", "local", "x" * 300):
        assert -(2**31) <= slot_key(name) < 2**31
        assert lock_classid(name) == slot_key(name) % 2**32


def test_the_errors_say_what_the_caller_needs() -> None:
    until = datetime(2026, 12, 8, 10, 0, 30, tzinfo=UTC)
    paused = ProviderPaused(
        "cop_dataspace", until=until, cause="Too Many Requests", status=429, remaining_s=30, product_id="S2B_X"
    )
    assert isinstance(paused, ProviderLimited) and paused.retryable and paused.exit_code == 75
    assert (paused.until, paused.cause, paused.status, paused.retry_in_s) == (until, "Too Many Requests", 429, 30)
    assert str(paused) == (
        "S2B_X: provider cop_dataspace paused for 30 s more (until 2026-12-08T10:00:30+00:00) "
        "after HTTP 429: Too Many Requests"
    )
    busy = SlotWaitTimeout("cop_dataspace", waited_s=300, limit=4, retry_in_s=45)
    assert isinstance(busy, ProviderLimited) and busy.retry_in_s == 45
    assert "no download slot of provider cop_dataspace free after 300.0 s (4 in use" in str(busy)
    assert isinstance(WaitCancelled("cop_dataspace", waited_s=1), ProviderLimited)


def test_retry_after_header_helper() -> None:
    now = datetime(2015, 10, 21, 7, 27, tzinfo=UTC)
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 60
    assert retry_after_s("5") == 5
    assert retry_after_s(None) is None
