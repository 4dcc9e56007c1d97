"""The comparison of the provider's list with our rows: every kind of difference, and what is not one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.upstream.compare import (
    ChecksumChanged,
    Differences,
    Listed,
    Ours,
    Replaced,
    Superseded,
    compare,
    merge,
    same_checksum,
)

START = datetime(2020, 8, 8, tzinfo=UTC)
END = START + timedelta(days=1)
AT = START + timedelta(hours=1)
SUM_A = "1220" + "aa" * 32  # sha2-256 multihashes
SUM_B = "1220" + "bb" * 32

# real names: two datatakes of one day, and a newer baseline of the first one's tile
OLD = "S2A_MSIL1C_20200808T010311_N0400_R045_T54PXA_20200808T030544"
NEW = "S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505"
NEWEST = "S2A_MSIL1C_20200808T010311_N0510_R045_T54PXA_20240101T000000"
OTHER = "S2A_MSIL1C_20200808T010311_N0500_R045_T55PBR_20230413T212505"
S1 = "S1A_IW_GRDH_1SDV_20200808T173953_20200808T174018_039156_049F13_6FF8"
S1_AGAIN = "S1A_IW_GRDH_1SDV_20200808T173953_20200808T174018_039156_049F13_A1B2"


def up(
    product_id: str, checksum: str | None = SUM_A, sensing: datetime | None = AT, published: datetime = AT
) -> Listed:
    return Listed(product_id, checksum, sensing, published)


def ours(product_id: str, state: str = "catalogued", checksum: str | None = SUM_A, *, in_window: bool = True) -> Ours:
    return Ours(product_id, state, checksum, AT, in_window=in_window and state == "catalogued")


def run(listed: list[Listed], rows: list[Ours]) -> Differences:
    return compare(listed, rows, start=START, end=END)


def test_the_same_on_both_sides_is_no_difference() -> None:
    d = run([up(NEW), up(OTHER)], [ours(NEW), ours(OTHER)])
    assert d.found == 0 and d.counts() == {"missing": 0, "gone": 0, "superseded": 0, "checksum": 0}
    assert (d.listed, d.held, d.matched, d.not_comparable) == (2, 2, 2, 0)


def test_missing_is_listed_and_never_recorded() -> None:
    d = run([up(NEW), up(OTHER)], [ours(NEW)])
    assert d.missing == [OTHER] and d.found == 1


@pytest.mark.parametrize(
    ("state", "counted"),
    [("discovered", "pending"), ("failed", "pending"), ("claimed", "pending"), ("uploaded", "pending"),
     ("invalid", "invalid"), ("retired", "retired")],
)  # fmt: skip
def test_recorded_in_any_state_is_not_missing(state: str, counted: str) -> None:
    d = run([up(OTHER)], [ours(OTHER, state)])
    assert d.found == 0
    assert getattr(d, counted) == 1


def test_gone_is_catalogued_in_the_window_and_no_longer_listed() -> None:
    d = run([up(NEW)], [ours(NEW), ours(OTHER)])
    assert d.gone == [OTHER] and d.held == 2


def test_only_catalogued_products_in_the_window_can_be_gone() -> None:
    rows = [ours(OTHER, in_window=False), ours(NEW, "discovered"), ours(S1, "invalid"), ours(OLD, "retired")]
    assert run([], rows).found == 0


def test_a_product_listed_in_the_search_margin_is_not_gone_and_not_judged() -> None:
    just_before = up(OTHER, sensing=START - timedelta(seconds=5))  # ours says START + 1 h: not gone
    unrecorded = up(
        "S2B_MSIL1C_20200807T235959_N0500_R045_T54PXA_20230413T212505", sensing=START - timedelta(minutes=1)
    )
    d = run([just_before, unrecorded], [ours(OTHER)])
    assert d.found == 0 and d.listed == 0  # neither judged missing: outside [start, end)


def test_the_window_is_half_open_and_an_unknown_sensing_time_counts_as_inside() -> None:
    d = run([up(NEW, sensing=END), up(OTHER, sensing=START), up(S1, sensing=None)], [])
    assert d.missing == sorted([OTHER, S1])


def test_a_newer_baseline_listed_in_place_of_ours_is_superseded_not_gone_and_not_missing() -> None:
    d = run([up(NEW)], [ours(OLD)])
    assert d.superseded == [Superseded(OLD, NEW, None, old_listed=False)]
    assert d.gone == [] and d.missing == []


def test_a_newer_baseline_listed_beside_ours() -> None:
    d = run([up(OLD), up(NEW)], [ours(OLD)])
    assert d.superseded == [Superseded(OLD, NEW, None, old_listed=True)] and d.found == 1


def test_a_newer_baseline_recorded_and_on_its_way_is_still_superseded_with_its_state() -> None:
    d = run([up(NEW)], [ours(OLD), ours(NEW, "discovered")])
    assert d.superseded == [Superseded(OLD, NEW, "discovered", old_listed=False)]
    assert d.pending == 1 and d.gone == []


def test_once_the_newer_one_is_catalogued_the_pair_is_a_replacement_not_a_difference() -> None:
    d = run([up(NEW)], [ours(OLD), ours(NEW)])
    assert d.found == 0
    assert d.replaced == [Replaced(OLD, NEW, old_listed=False)]


def test_only_the_newest_of_several_listed_processings_is_wanted() -> None:
    d = run([up(OLD), up(NEW), up(NEWEST)], [])
    assert d.missing == [NEWEST] and d.older == 2


def test_an_older_processing_of_what_we_hold_is_not_wanted() -> None:
    d = run([up(OLD), up(NEW)], [ours(NEW)])
    assert d.found == 0 and d.older == 1


def test_the_newest_listed_supersedes_the_newest_held() -> None:
    d = run([up(NEWEST)], [ours(OLD), ours(NEW)])
    assert d.superseded == [Superseded(NEW, NEWEST, None, old_listed=False)]
    assert d.replaced == [Replaced(OLD, NEW, old_listed=False)] and d.gone == []


def test_an_s1_remake_supersedes_by_publication_time() -> None:
    later, earlier = AT + timedelta(days=30), AT - timedelta(days=1)
    d = run([up(S1_AGAIN, published=later)], [ours(S1)])
    assert d.superseded == [Superseded(S1, S1_AGAIN, None, old_listed=False)]
    d = run([up(S1_AGAIN, published=earlier)], [ours(S1)])  # published before ours: ours is the newer one
    assert d.superseded == [] and d.gone == [S1] and d.older == 1


def test_a_changed_checksum_is_reported_with_the_state_of_ours() -> None:
    d = run([up(NEW, SUM_B), up(OTHER, SUM_B)], [ours(NEW), ours(OTHER, "failed")])
    assert d.checksum == [
        ChecksumChanged(NEW, "catalogued", SUM_A, SUM_B),
        ChecksumChanged(OTHER, "failed", SUM_A, SUM_B),
    ]
    assert d.gone == [] and d.missing == []


def test_checksums_that_cannot_be_compared_are_counted_not_reported() -> None:
    d = run([up(NEW, "md5:" + "cc" * 16), up(OTHER, None)], [ours(NEW), ours(OTHER)])
    assert d.found == 0 and d.not_comparable == 2


def test_a_retired_product_listed_again_is_not_compared() -> None:
    d = run([up(NEW, SUM_B)], [ours(NEW, "retired")])
    assert d.found == 0 and d.retired == 1


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (SUM_A, SUM_A.upper(), True),
        (SUM_A, "sha256:" + "AA" * 32, True),  # the multihash and the algo:hex spelling of one digest
        (SUM_A, SUM_B, False),
        ("md5:" + "cc" * 16, "MD5:" + "CC" * 16, True),
        ("blake3:" + "dd" * 32, "md5:" + "cc" * 16, None),  # a provider that changed algorithm
        (SUM_A, None, None),
        ("", SUM_A, None),
        ("opaque-1", "OPAQUE-1", True),  # neither form: compared as text
        ("opaque-1", "opaque-2", False),
    ],
)
def test_same_checksum(a: str, b: str | None, same: bool | None) -> None:
    assert same_checksum(a, b) is same


def test_the_same_id_listed_twice_counts_once() -> None:
    assert run([up(NEW), up(NEW)], [ours(NEW)]).listed == 1


def test_names_without_an_acquisition_are_compared_by_id_only() -> None:
    d = run([up("LC08_L1TP_190027_20200808_20200813_02_T1")], [ours("LC08_L1TP_190027_20200808_20200813_01_T1")])
    assert d.missing == ["LC08_L1TP_190027_20200808_20200813_02_T1"]
    assert d.gone == ["LC08_L1TP_190027_20200808_20200813_01_T1"]


def test_merge_adds_the_windows_up() -> None:
    a = run([up(NEW)], [ours(OTHER)])
    b = run([up(S1, SUM_B)], [ours(S1)])
    m = merge([a, b])
    assert m.counts() == {"missing": 1, "gone": 1, "superseded": 0, "checksum": 1}
    assert (m.listed, m.held, m.matched) == (2, 2, 1)


def test_a_thousand_products_compare_in_milliseconds() -> None:
    import time

    listed = [up(f"S2A_MSIL1C_20200808T{i:06d}_N0500_R045_T54PXA_20230413T212505") for i in range(1000)]
    rows = [ours(p.id) for p in listed[:900]] + [ours(f"X{i}") for i in range(100)]
    started = time.perf_counter()
    d = run(listed, rows)
    assert time.perf_counter() - started < 0.5
    assert (len(d.missing), len(d.gone)) == (100, 100)
