"""Our EODAG configurations: the sparse override of a built-in provider, and the checksum it chooses."""

from __future__ import annotations

import re

import pytest

from ingest.adapters.eodag import packaged_config
from ingest.adapters.eodag_config import CHECKSUMS, builtin_overrides, mirror_overrides, preferred_checksum

ORIGIN = "http://127.0.0.1:15801"


@pytest.mark.parametrize("name", ["cop_dataspace", "creodias"])
def test_a_mirror_moves_every_address_of_the_shipped_configuration_and_keeps_paths(name: str) -> None:
    shipped = packaged_config(name)
    assert shipped["search"]["type"] == "ODataV4Search"  # the family this override is written for
    out = mirror_overrides(shipped, ORIGIN)
    endpoint = shipped["search"]["api_endpoint"]
    assert out["search"]["api_endpoint"] == ORIGIN + endpoint[endpoint.index("/odata/") :]
    link = out["search"]["metadata_mapping"]["eodag:download_link"]
    assert link.startswith(ORIGIN + "/odata/v1/Products(") and link.endswith(")/$value") and "{uid}" in link
    oidc = shipped["auth"]["oidc_config_url"]
    assert out["auth"]["oidc_config_url"] == ORIGIN + oidc[oidc.index("/auth/realms/") :]
    assert re.match(out["auth"]["matching_url"], link.replace("{uid}", "abc"))  # the token goes with downloads
    assert not re.match(out["auth"]["matching_url"], "https://catalogue.dataspace.copernicus.eu/odata")
    # nothing else of EODAG's configuration is touched
    assert set(out) == {"search", "auth"} and set(out["search"]) == {"api_endpoint", "metadata_mapping"}


def test_without_a_mirror_only_the_checksum_list_and_the_page_order_are_set() -> None:
    out = builtin_overrides("cop_dataspace", packaged_config("cop_dataspace"))
    assert out == {
        "search": {"metadata_mapping": {CHECKSUMS: "$.Checksum"}, "sort": {"sort_by_default": [["published", "ASC"]]}}
    }
    both = builtin_overrides("cop_dataspace", packaged_config("cop_dataspace"), ORIGIN)
    assert both["search"]["metadata_mapping"][CHECKSUMS] == "$.Checksum"
    assert both["search"]["api_endpoint"].startswith(ORIGIN)


@pytest.mark.parametrize("bad", ["", "127.0.0.1:15801", "http://host/path", "ftp://host", "http://"])
def test_a_mirror_that_is_not_an_origin_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        mirror_overrides(packaged_config("cop_dataspace"), bad)


def test_blake3_is_preferred_then_md5_and_junk_is_nothing() -> None:
    md5 = {"Value": "923ac4992d90b57d41e7ace4d9d90757", "Algorithm": "MD5", "ChecksumDate": "2023-08-23T09:26:29Z"}
    b3 = {"Value": "2f787caed527ffeb3245594a465abd127da5ee7eaeb974f9a9ab4342f2fba7cf", "Algorithm": "BLAKE3"}
    assert preferred_checksum([md5, b3]) == "blake3:" + b3["Value"]
    assert preferred_checksum([md5]) == "md5:" + md5["Value"]
    for junk in (None, "x", [], [{"Algorithm": "MD5"}], [{"Value": "ab", "Algorithm": "CRC32"}], [1, "a"]):
        assert preferred_checksum(junk) is None
