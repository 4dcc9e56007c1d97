"""The reprocessing policy's decision (``ingest.upstream.reprocessing.decide``): pure, on real names."""

from __future__ import annotations

from ingest.upstream.reprocessing import Decision, Held, decide

OLD = "S2A_MSIL1C_20200808T010311_N0400_R045_T54PXA_20220101T000000"
NEW = "S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505"
NEWEST = "S2A_MSIL1C_20200808T010311_N0510_R045_T54PXA_20240101T000000"
OTHER_TILE = "S2A_MSIL1C_20200808T010311_N0400_R045_T54PXB_20220101T000000"
ITEM = "S2A_T54PXA_20200808T010311_L1C"
S3_NR = "S3A_OL_1_EFR____20211021T073827_20211021T074112_20211021T091357_0164_077_334_4320_LN1_O_NR_002"
S3_NT = "S3A_OL_1_EFR____20211021T073830_20211021T074115_20211022T101010_0165_077_334_4320_LN1_O_NT_002"
S1_A = "S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13_6FF8"
S1_B = "S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13_1A2B"


def cat(pid: str, item: str | None = ITEM, state: str = "catalogued") -> Held:
    return Held(pid, state, item)


def test_the_newer_one_catalogued_retires_the_older_sharing_its_item() -> None:
    d = decide("replace", NEW, ITEM, [cat(OLD)])
    assert (d.retire_shared, d.retire, d.superseded_by) == ((OLD,), (), None)
    assert "N0400 20220101T000000 -> N0500 20230413T212505" in d.reasons[OLD]


def test_an_older_one_with_an_item_of_its_own_goes_through_retention() -> None:
    d = decide("replace", S3_NT, S3_NT, [cat(S3_NR, item=S3_NR)])
    assert (d.retire_shared, d.retire, d.superseded_by) == ((), (S3_NR,), None)


def test_an_older_one_arriving_after_the_newer_is_superseded_never_replaces() -> None:
    d = decide("replace", OLD, None, [cat(NEW), cat(NEWEST)])
    assert (d.retire_shared, d.retire, d.superseded_by) == ((), (), NEWEST)
    # also when catalogued at the same time (the race): nothing of the newer one is retired
    d = decide("replace", OLD, ITEM, [cat(NEW)])
    assert (d.retire_shared, d.retire, d.superseded_by) == ((), (), NEW)


def test_between_two_it_retires_the_older_and_defers_to_the_newer() -> None:
    d = decide("replace", NEW, ITEM, [cat(OLD), cat(NEWEST)])
    assert (d.retire_shared, d.retire, d.superseded_by) == ((OLD,), (), NEWEST)


def test_only_catalogued_products_of_the_same_acquisition_count() -> None:
    held = [cat(OLD, state="discovered"), cat(OLD.replace("N0400", "N0300"), state="retired"), cat(OTHER_TILE)]
    assert decide("replace", NEW, ITEM, held).empty
    assert decide("replace", NEW, None, [cat(NEW)]).empty  # itself
    assert decide("replace", NEW, ITEM, []).empty


def test_keep_and_names_without_an_order_do_nothing() -> None:
    assert decide("keep", NEW, ITEM, [cat(OLD)]) == Decision()
    assert decide("keep", OLD, None, [cat(NEW)]) == Decision()
    assert decide("replace", S1_B, "s1", [cat(S1_A, item="s1")]).empty  # a CRC, not a sequence
    assert decide("replace", "not-a-sentinel-name", ITEM, [cat(OLD)]).empty
    assert decide("replace", NEW, ITEM, [cat("not-a-sentinel-name")]).empty
