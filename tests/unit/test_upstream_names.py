"""Product names read as an acquisition and a processing of it, on real Sentinel names (tests/fixtures,
../shared/fixtures: the eodag provider responses, stactools' test data)."""

from __future__ import annotations

import pytest

from ingest.upstream.names import ProductName, parse


def name(product_id: str) -> ProductName:
    parsed = parse(product_id)
    assert parsed is not None, product_id
    return parsed


# --------------------------------------------------------------------------- Sentinel-2

# real: the cop_dataspace response and stactools-sentinel2's test data hold both baselines of these
S2_T30TYP_N0208 = "S2A_MSIL1C_20200114T110411_N0208_R094_T30TYP_20200114T113817"
S2_T30TYP_N0500 = "S2A_MSIL1C_20200114T110411_N0500_R094_T30TYP_20230428T135923"
S2_T55PBS_N0209 = "S2A_MSIL1C_20200815T005251_N0209_R002_T55PBS_20200815T023440"
S2_T55PBS_N0500 = "S2A_MSIL1C_20200815T005251_N0500_R002_T55PBS_20230405T155830"
S2_T54PXA_N0500 = "S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505"


def test_s2_name_parts() -> None:
    n = name(S2_T54PXA_N0500)
    assert n.mission == "S2A"
    assert n.key == ("S2", "S2A", "L1C", "20200808T010311", "045", "54PXA")
    assert n.version == (500, "20230413T212505")
    assert n.processing == "N0500 20230413T212505"


@pytest.mark.parametrize(("old", "new"), [(S2_T30TYP_N0208, S2_T30TYP_N0500), (S2_T55PBS_N0209, S2_T55PBS_N0500)])
def test_a_new_s2_baseline_of_the_same_datatake_and_tile_is_the_same_acquisition_and_newer(old: str, new: str) -> None:
    assert name(old).key == name(new).key
    assert name(new).newer_than(name(old)) is True
    assert name(old).newer_than(name(new)) is False


def test_the_issue_example_n0500_supersedes_n0400() -> None:
    old = name(S2_T54PXA_N0500.replace("_N0500_", "_N0400_").replace("20230413T212505", "20200808T030544"))
    assert name(S2_T54PXA_N0500).newer_than(old) is True


def test_the_same_baseline_reprocessed_later_is_newer_by_its_discriminator() -> None:
    again = name(S2_T54PXA_N0500.replace("20230413T212505", "20240101T000000"))
    assert again.newer_than(name(S2_T54PXA_N0500)) is True


@pytest.mark.parametrize(
    "other",
    [
        "S2A_MSIL1C_20200808T010311_N0500_R045_T55PBR_20230413T212505",  # another tile of the same datatake (real)
        "S2A_MSIL1C_20200815T005251_N0209_R002_T55PCR_20200815T023440",  # another datatake (real)
        "S2A_MSIL2A_20200808T010311_N0500_R045_T54PXA_20230413T212505",  # another level
        "S2B_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505",  # another satellite
        "S2A_MSIL1C_20200808T010311_N0500_R046_T54PXA_20230413T212505",  # another relative orbit
    ],
)
def test_other_s2_acquisitions(other: str) -> None:
    assert name(other).key != name(S2_T54PXA_N0500).key
    assert name(other).newer_than(name(S2_T54PXA_N0500)) is None


def test_suffixes_of_folders_and_archives_do_not_change_the_acquisition() -> None:
    plain = name("S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126")
    for suffix in (".SAFE", ".zip"):
        assert name(plain.id + suffix).key == plain.key
        assert name(plain.id + suffix).version == plain.version


@pytest.mark.parametrize(
    "other",
    [
        "S2A_OPER_PRD_MSIL1C_PDMC_20160802T111815_R051_V20160802T105031_20160802T105031",  # pre-2016 long name
        "S2B_OPER_MSI_L2A_TL_VGS2_20210122T155500_A020270_T22HBD_N02",  # a granule, not a product (real)
        "S2A_MSIL1C_20250402T175741_N0511_R141_T14ULD_20250403T022035_quicklook",  # an asset (real)
        "LC08_L1TP_190027_20200101_20200113_01_T1",
        "",
    ],
)
def test_names_without_an_acquisition(other: str) -> None:
    assert parse(other) is None


# --------------------------------------------------------------------------- Sentinel-1

S1_6FF8 = "S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13_6FF8"
# real: consecutive slices of one datatake (creodias' OData response, stactools-sentinel1's tests)
S1_SLICES = [
    "S1A_IW_GRDH_1SSV_20141004T005844_20141004T005913_002673_002FAB_4FCD",
    "S1A_IW_GRDH_1SSV_20141004T005913_20141004T005938_002673_002FAB_1265",
    "S1A_IW_GRDH_1SSV_20141004T005938_20141004T010003_002673_002FAB_53D4",
]


def test_s1_name_parts() -> None:
    n = name(S1_6FF8)
    assert n.mission == "S1A"
    assert n.key == ("S1", "S1A", "IW", "GRDH", "1S", "DV", "20210809T173953", "039156", "049F13", "SAFE")
    assert n.version is None and n.processing == "6FF8"


def test_slices_of_one_datatake_are_different_acquisitions() -> None:
    keys = {name(s).key for s in S1_SLICES}
    assert len(keys) == len(S1_SLICES)
    assert {k[8] for k in keys} == {"002FAB"}  # one datatake


def test_an_s1_product_remade_is_the_same_acquisition_but_its_name_does_not_say_which_is_newer() -> None:
    again = name(S1_6FF8[:-4] + "A1B2")
    assert again.key == name(S1_6FF8).key
    assert again.newer_than(name(S1_6FF8)) is None  # a CRC, not a sequence: the publication time decides


def test_a_new_stop_time_is_still_the_same_slice() -> None:
    longer = name(S1_6FF8.replace("20210809T174018", "20210809T174020"))
    assert longer.key == name(S1_6FF8).key


@pytest.mark.parametrize(
    "other",
    [
        "S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B",  # real, another datatake
        "S1A_S1_GRDH_1SDV_20230809T020729_20230809T020754_049792_05FCE6_1175",  # real, StripMap
        "S1A_EW_GRDH_1SDH_20141010T120113_20141010T120222_002767_0031C8_D5D7",  # real, EW
        "S1A_WV_OCN__2SSV_20180215T235323_20180216T001213_020624_023501_0FD3",  # real, wave mode OCN
        S1_6FF8.replace("GRDH", "GRDM"),
        S1_6FF8.replace("1SDV", "1SSV"),
        S1_6FF8.replace("S1A_", "S1C_"),
        S1_6FF8 + "_COG",  # the COG format: another product line, not a reprocessing
    ],
)
def test_other_s1_acquisitions(other: str) -> None:
    assert name(other).key != name(S1_6FF8).key


def test_the_cog_format_keeps_its_identity() -> None:
    cog = name(S1_6FF8 + "_COG")
    assert cog.key[-1] == "COG" and cog.processing == "6FF8"
    assert name(S1_6FF8 + "_COG.SAFE").key == cog.key


# --------------------------------------------------------------------------- Sentinel-3

S3_EFR_NR = "S3A_OL_1_EFR____20211021T073827_20211021T074112_20211021T091357_0164_077_334_4320_LN1_O_NR_002"


def test_s3_name_parts() -> None:
    n = name(S3_EFR_NR + ".SEN3")
    assert n.mission == "S3A"
    assert n.key == ("S3", "S3A", "OL", "1", "EFR___", "077", "334", "frame", "4320")
    assert n.version == (0, 2, "20211021T091357")
    assert n.processing == "NR 002 20211021T091357"


def test_the_non_time_critical_frame_supersedes_the_near_real_time_one() -> None:
    # the NT frame of the same orbit and frame starts a few seconds apart, created a day later
    nt = name("S3A_OL_1_EFR____20211021T073830_20211021T074130_20211022T121212_0180_077_334_4320_LN1_O_NT_002")
    assert nt.key == name(S3_EFR_NR).key
    assert nt.newer_than(name(S3_EFR_NR)) is True
    st = name(S3_EFR_NR.replace("_NR_", "_ST_"))
    assert nt.newer_than(st) is True and st.newer_than(name(S3_EFR_NR)) is True


def test_a_new_baseline_collection_supersedes_the_old_one() -> None:
    assert name(S3_EFR_NR.replace("_002", "_003")).newer_than(name(S3_EFR_NR)) is True


@pytest.mark.parametrize(
    "other",
    [
        S3_EFR_NR.replace("_4320_", "_4500_"),  # the next frame
        S3_EFR_NR.replace("_334_", "_335_"),  # another relative orbit
        S3_EFR_NR.replace("_077_", "_078_"),  # another cycle
        S3_EFR_NR.replace("S3A_", "S3B_"),
        S3_EFR_NR.replace("EFR___", "ERR___"),
        "S3A_OL_2_WFR____20210604T001016_20210604T001316_20210604T021918_0179_072_273_1440_MAR_O_NR_003",  # real
    ],
)
def test_other_s3_acquisitions(other: str) -> None:
    assert name(other).key != name(S3_EFR_NR).key


def test_s3_stripes_without_a_frame_are_placed_by_their_start() -> None:
    # real: a full-orbit OLCI reduced-resolution stripe and a SLSTR sea temperature stripe
    err = name("S3B_OL_1_ERR____20210831T200148_20210831T204600_20210902T011514_2652_056_242______LN1_O_NT_002")
    assert err.key == ("S3", "S3B", "OL", "1", "ERR___", "056", "242", "start", "20210831T200148")
    wst = name("S3B_SL_2_WST____20210419T051754_20210419T065853_20210420T160434_6059_051_247______MAR_O_NT_003")
    assert wst.key[-2:] == ("start", "20210419T051754") and wst.version == (2, 3, "20210420T160434")


def test_real_slstr_frames_parse() -> None:
    rbt = name("S3A_SL_1_RBT____20210930T220914_20210930T221214_20211002T102150_0180_077_043_5400_LN2_O_NT_004")
    assert rbt.key == ("S3", "S3A", "SL", "1", "RBT___", "077", "043", "frame", "5400")
    assert rbt.version == (2, 4, "20211002T102150")
