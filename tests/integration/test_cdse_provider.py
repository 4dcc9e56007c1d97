"""The CDSE-like provider over real HTTP on loopback, and EODAG's built-in ``cop_dataspace`` against it.

EODAG is configured as the daemon would configure it for CDSE, with only the four addresses of its
``cop_dataspace`` configuration moved to our server (``ingest.devtools.cdse.eodag_config``); nothing
of EODAG is patched. A guard refuses any connection off loopback while these tests run.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import random
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import yaml
from blake3 import blake3
from cryptography.hazmat.primitives.asymmetric import rsa

from ingest.devtools.catalog import ProviderEntry, add_product, load_index, product_path
from ingest.devtools.cdse.catalogue import product_name, product_uuid
from ingest.devtools.cdse.eodag_config import cop_dataspace_environment, cop_dataspace_overrides
from ingest.devtools.cdse.oidc import CLIENT_ID, DEFAULT_USERS
from ingest.devtools.cdse.server import CdseServer
from tests.conftest import ROOT, free_port

T0 = datetime(2026, 2, 1, tzinfo=UTC)
USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
N_L1C = 9

# ---------------------------------------------------------------------------------------------
# no traffic off loopback: an audit hook (added once, active only in these tests)

_GUARD = {"on": False}


def _loopback_only(event: str, args: tuple[Any, ...]) -> None:
    if not _GUARD["on"]:
        return
    if event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
        if host not in (None, "", "localhost", "127.0.0.1", "::1"):
            raise ConnectionRefusedError(f"test guard: no network off loopback ({host})")
    elif event == "socket.connect" and isinstance(args[1], tuple):
        try:
            loopback = ipaddress.ip_address(args[1][0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConnectionRefusedError(f"test guard: no network off loopback ({args[1][0]})")


sys.addaudithook(_loopback_only)


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    _GUARD["on"] = True
    try:
        yield
    finally:
        _GUARD["on"] = False


# ---------------------------------------------------------------------------------------------
# a catalogue: 9 S2 L1C, 2 S2 L2A, 2 S1 GRD (small zips with the metadata members CDSE products have)


def _zip(work: Path, product_id: str, seed: int) -> Path:
    path = work / f"{product_id}.zip"
    top = f"{product_id}.SAFE"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        if product_id.startswith("S2"):
            level = "L1C" if "MSIL1C" in product_id else "L2A"
            xml = (
                "<n1:User_Product><SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>"
                f"<Cloud_Coverage_Assessment>{seed * 7 % 100}.25</Cloud_Coverage_Assessment></n1:User_Product>"
            )
            zf.writestr(f"{top}/MTD_MSI{level}.xml", xml)
        else:
            zf.writestr(f"{top}/manifest.safe", "<xfdu:XFDU><s1:pass>ASCENDING</s1:pass></xfdu:XFDU>")
        zf.writestr(f"{top}/measurement/data.bin", random.Random(seed).randbytes(40_000))
    return path


def _square(x: float, y: float) -> dict[str, Any]:
    ring = [[x, y], [x + 0.9, y], [x + 0.9, y + 0.9], [x, y + 0.9], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cdse-root")
    work = tmp_path_factory.mktemp("cdse-zips")
    for i in range(N_L1C):
        sensing = T0 + timedelta(minutes=10 * i)
        pid = f"S2A_MSIL1C_{sensing:%Y%m%dT%H%M%S}_N0510_R051_T31TDH_{sensing + timedelta(hours=1):%Y%m%dT%H%M%S}"
        # published in an order unlike the sensing order, one hour apart
        published = T0 + timedelta(hours=6 + (i * 4) % N_L1C)
        add_product(root, _zip(work, pid, i), collection="S2_MSI_L1C", geometry=_square(3 + i * 0.1, 45),
                    datetime=sensing, published=published, move=True)  # fmt: skip
    for i in range(2):
        sensing = T0 + timedelta(days=1, minutes=10 * i)
        pid = f"S2B_MSIL2A_{sensing:%Y%m%dT%H%M%S}_N0511_R108_T32TLR_{sensing + timedelta(hours=2):%Y%m%dT%H%M%S}"
        add_product(root, _zip(work, pid, 100 + i), collection="S2_MSI_L2A", geometry=_square(8, 46),
                    datetime=sensing, published=sensing + timedelta(days=1), move=True)  # fmt: skip
        start = T0 + timedelta(days=2, minutes=i)
        stop = start + timedelta(seconds=25)
        pid = f"S1A_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_0391{56 + i}_049F1{i}_966B"
        add_product(root, _zip(work, pid, 200 + i), collection="S1_SAR_GRD", geometry=_square(4, 44),
                    datetime=start, published=start + timedelta(hours=3), move=True)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def entries(root: Path) -> list[ProviderEntry]:
    return load_index(root)


@pytest.fixture
def server(root: Path) -> Iterator[CdseServer]:
    with CdseServer(root) as s:
        yield s


GatewayFactory = Callable[..., Any]


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GatewayFactory:
    """``gateway(base_url, password=..., how="file"|"env")``: an EODAG gateway with only cop_dataspace,
    its URLs moved to ``base_url``, kept off the network as the daemon keeps it."""
    count = iter(range(100))

    def make(base_url: str, *, password: str = PASSWORD, how: str = "file") -> Any:
        cfg = tmp_path / f"eodag-{next(count)}"
        cfg.mkdir()
        (cfg / "ext_collections.json").write_text("{}")
        for key in [k for k in os.environ if k.startswith("EODAG")]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("EODAG_CFG_DIR", str(cfg))
        monkeypatch.setenv("EODAG_PROVIDERS_WHITELIST", '["cop_dataspace"]')
        monkeypatch.setenv("EODAG_EXT_COLLECTIONS_CFG_URI", str(cfg / "ext_collections.json"))
        monkeypatch.setenv("EODAG_STRICT_COLLECTIONS", "true")
        if how == "file":  # a user configuration, as eodag.yml
            conf = cop_dataspace_overrides(base_url)
            conf["auth"]["credentials"] = {"username": USER, "password": password}
            (cfg / "eodag.yml").write_text(yaml.safe_dump({"cop_dataspace": conf}))
        else:
            (cfg / "eodag.yml").write_text("{}\n")
            for key, value in cop_dataspace_environment(base_url, username=USER, password=password).items():
                monkeypatch.setenv(key, value)
        from eodag import EODataAccessGateway

        return EODataAccessGateway()

    return make


def _zip_bytes(root: Path, product_id: str) -> bytes:
    return product_path(root, product_id).read_bytes()


def _skips(server: CdseServer) -> list[int]:
    queries = [r["query"] for r in server.stats.to_dict()["recent"] if r["path"] == "/odata/v1/Products"]
    return [int(parse_qs(q)["$skip"][0]) for q in queries]


def _token(base: str, user: str = USER, password: str = PASSWORD) -> dict[str, Any]:
    form = {"grant_type": "password", "client_id": CLIENT_ID, "username": user, "password": password}
    r = requests.post(f"{base}/auth/realms/CDSE/protocol/openid-connect/token", data=form, timeout=10)
    r.raise_for_status()
    answer: dict[str, Any] = r.json()
    return answer


def _value_url(base: str, entry_id: str) -> str:
    return f"{base}/odata/v1/Products({product_uuid(product_name(entry_id))})/$value"


# ---------------------------------------------------------------------------------------------
# EODAG's cop_dataspace, unchanged


def test_eodag_search_in_a_publication_window_pages_exactly_the_catalogue(
    server: CdseServer, gateway: GatewayFactory, entries: list[ProviderEntry], root: Path
) -> None:
    dag = gateway(server.url)
    after, before = T0 + timedelta(hours=6, minutes=30), T0 + timedelta(hours=13, minutes=30)
    expected = sorted(
        (e for e in entries if e.collection == "S2_MSI_L1C" and after < e.published < before), key=lambda e: e.datetime
    )
    assert len(expected) == 7  # hours 7..13: more than three pages of two
    window = {"published_after": after.isoformat(), "published_before": before.isoformat()}

    first = dag.search(collection="S2_MSI_L1C", provider="cop_dataspace", limit=2, count=True, **window)
    assert first.number_matched == len(expected)
    everything = dag.search_all(collection="S2_MSI_L1C", provider="cop_dataspace", limit=2, **window)
    assert [p.properties["id"] for p in everything] == [e.id for e in expected]  # ContentDate/Start asc
    assert _skips(server)[-4:] == [0, 2, 4, 6]  # search_all asked page after page, with $skip from our nextLink

    by_id = {e.id: e for e in expected}
    for product in everything:
        props = product.properties
        entry = by_id[props["id"]]
        zipped = _zip_bytes(root, entry.id)
        assert props["file:checksum"] == hashlib.md5(zipped).hexdigest()  # EODAG maps the MD5
        assert props["file:size"] == len(zipped)
        assert props["order:status"] == "succeeded" and props["platform"] == "S2A"
        assert props["product:type"] == "S2MSI1C" and props["grid:code"] == "MGRS-31TDH"
        assert datetime.fromisoformat(props["published"]) == entry.published
        assert datetime.fromisoformat(props["start_datetime"]) == entry.datetime
        assert product.remote_location == _value_url(server.url, entry.id)
        assert product.geometry.bounds == pytest.approx(tuple(entry.bbox))
    # the MD5 and BLAKE3 of each file were computed once, whatever the number of searches
    assert server.files.computed == len(entries)


def test_eodag_geometry_and_cloud_cover_filters(server: CdseServer, gateway: GatewayFactory) -> None:
    dag = gateway(server.url)
    found = dag.search_all(collection="S2_MSI_L1C", provider="cop_dataspace", geom=[3.05, 45.1, 3.15, 45.2])
    assert len(found) == 2  # the footprints of products 0 and 1 cover that box
    cloudy = dag.search_all(collection="S2_MSI_L1C", provider="cop_dataspace", **{"eo:cloud_cover": 20})
    assert {p.properties["eo:cloud_cover"] for p in cloudy} == {0.25, 7.25, 14.25}  # 7 * i % 100 for i = 0..2
    grd = dag.search_all(collection="S1_SAR_GRD", provider="cop_dataspace")
    assert len(grd) == 2 and {p.properties["sat:orbit_state"] for p in grd} == {"ascending"}
    assert {p.properties["sar:polarizations"] == ["VV", "VH"] for p in grd} == {True}


@pytest.mark.parametrize("how", ["file", "env"])
def test_eodag_downloads_the_exact_zip_with_one_token(
    server: CdseServer, gateway: GatewayFactory, root: Path, tmp_path: Path, how: str
) -> None:
    dag = gateway(server.url, how=how)
    products = dag.search(collection="S2_MSI_L1C", provider="cop_dataspace", limit=3)
    server.reset_stats()
    for product in products:
        path = Path(dag.download(product, output_dir=str(tmp_path / "out"), extract=False))
        assert path.read_bytes() == _zip_bytes(root, product.properties["id"])
    stats = server.stats_dict()["cdse"]
    assert stats["tokens"]["grants"] == {"password": 1}  # fetched once, reused for every download
    assert stats["tokens"]["sessions"]["opened"] == {USER: 1}
    assert stats["downloads"]["started"] == {USER: 3} and stats["downloads"]["max_concurrent"] == 1
    recent = [r for r in server.stats.to_dict()["recent"] if r["path"].endswith("/$value")]
    assert all("token=" in r["query"] for r in recent)  # token_provision: qs


def test_short_lived_tokens_are_refreshed_within_one_session(
    root: Path, gateway: GatewayFactory, tmp_path: Path
) -> None:
    # 5 s tokens: below EODAG's 60 s expiry margin, so it refreshes before each download
    with CdseServer(root, access_lifetime_s=5) as server:
        dag = gateway(server.url)
        products = dag.search(collection="S2_MSI_L1C", provider="cop_dataspace", limit=3)
        for product in products:
            dag.download(product, output_dir=str(tmp_path / "out"), extract=False)
        tokens = server.stats_dict()["cdse"]["tokens"]
    assert tokens["grants"]["password"] == 1 and tokens["grants"]["refresh_token"] == 2
    assert tokens["sessions"]["opened"] == {USER: 1} and tokens["sessions"]["refreshed"] == {USER: 2}


def test_a_fifth_concurrent_download_is_a_429(server: CdseServer, gateway: GatewayFactory, tmp_path: Path) -> None:
    from eodag.utils.exceptions import QuotaExceededError

    dag = gateway(server.url)
    products = list(dag.search(collection="S2_MSI_L1C", provider="cop_dataspace", limit=6))
    dag.download(products[5], output_dir=str(tmp_path / "warm"), extract=False)  # the token is cached from here on
    requests.patch(f"{server.url}/_faults", json={"throttle_bps": 40_000}, timeout=10).raise_for_status()  # ~1 s each
    server.reset_stats()
    start = threading.Barrier(5)

    def download(product: Any) -> str:
        start.wait()
        return str(dag.download(product, output_dir=str(tmp_path / "out"), extract=False))

    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(download, p) for p in products[:5]]
    errors = [f.exception() for f in futures if f.exception() is not None]
    assert len(errors) == 1 and isinstance(errors[0], QuotaExceededError)
    downloads = server.stats_dict()["cdse"]["downloads"]
    assert downloads["max_concurrent"] == 4 and downloads["max_concurrent_per_user"] == {USER: 4}
    assert downloads["rejected"] == {USER: 1} and downloads["started"] == {USER: 4}
    assert downloads["max_attempted"] == 5 and downloads["max_attempted_per_user"] == {USER: 5}  # what EODAG tried
    statuses = server.stats.to_dict()["statuses"]
    answered = sorted(s for path, by in statuses.items() if path.endswith("/$value") for s in by)
    assert answered == ["200", "200", "200", "200", "429"]


def test_a_wrong_password_is_an_authentication_error(
    server: CdseServer, gateway: GatewayFactory, tmp_path: Path
) -> None:
    from eodag.utils.exceptions import AuthenticationError

    dag = gateway(server.url, password="not-the-password")
    product = dag.search(collection="S2_MSI_L2A", provider="cop_dataspace")[0]  # searching needs no token
    # EODAG means to say "check your credentials" on a 401 but tests `if e.response` (False for an
    # error response): it says "Something went wrong", with the 401 in the traceback
    with pytest.raises(AuthenticationError, match="401 Client Error"):
        dag.download(product, output_dir=str(tmp_path), extract=False)
    assert server.stats_dict()["cdse"]["tokens"]["failures"] == {"password 401": 1}
    bad = requests.post(
        f"{server.url}/auth/realms/CDSE/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": CLIENT_ID, "username": USER, "password": "x"},
        timeout=10,
    )
    assert bad.status_code == 401
    assert bad.json() == {"error": "invalid_grant", "error_description": "Invalid user credentials"}


def test_a_token_endpoint_that_is_down(server: CdseServer, gateway: GatewayFactory, tmp_path: Path) -> None:
    from eodag.utils.exceptions import AuthenticationError

    dag = gateway(server.url)
    product = dag.search(collection="S2_MSI_L2A", provider="cop_dataspace")[0]
    requests.patch(f"{server.url}/_faults", json={"token_down": True}, timeout=10).raise_for_status()
    with pytest.raises(AuthenticationError):
        dag.download(product, output_dir=str(tmp_path), extract=False)
    requests.delete(f"{server.url}/_faults", timeout=10).raise_for_status()
    assert Path(dag.download(product, output_dir=str(tmp_path), extract=False)).is_file()


def test_an_offline_product(
    server: CdseServer, gateway: GatewayFactory, entries: list[ProviderEntry], tmp_path: Path
) -> None:
    from eodag.utils.exceptions import NotAvailableError

    grd = [e for e in entries if e.collection == "S1_SAR_GRD"]
    requests.patch(f"{server.url}/_faults", json={"offline": [grd[0].id]}, timeout=10).raise_for_status()
    dag = gateway(server.url)
    products = {p.properties["id"]: p for p in dag.search(collection="S1_SAR_GRD", provider="cop_dataspace")}
    assert products[grd[0].id].properties["order:status"] == "orderable"
    assert products[grd[1].id].properties["order:status"] == "succeeded"
    with pytest.raises(NotAvailableError):  # cop_dataspace has no order: EODAG gives up at once
        dag.download(products[grd[0].id], output_dir=str(tmp_path), extract=False)
    token = _token(server.url)["access_token"]
    r = requests.get(_value_url(server.url, grd[0].id), params={"token": token}, timeout=10)
    assert r.status_code == 422 and "offline" in r.json()["message"]


# ---------------------------------------------------------------------------------------------
# the download service over plain HTTP


def test_downloads_need_a_valid_token(server: CdseServer, entries: list[ProviderEntry], root: Path) -> None:
    url = _value_url(server.url, entries[0].id)
    answer = _token(server.url)
    good = answer["access_token"]
    assert requests.get(url, params={"token": good}, timeout=10).content == _zip_bytes(root, entries[0].id)
    bearer = requests.get(url, headers={"Authorization": f"Bearer {good}"}, timeout=10)
    assert bearer.status_code == 200

    import jwt

    claims = jwt.decode(good, options={"verify_signature": False})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    invalid = {"message": "Invalid token"}
    expired = {"code": "DAT-ZIP-109", "message": "Token is expired"}
    audience = {"code": "DAT-ZIP-609", "message": "Token audience not allowed"}
    refused = {
        "none": (None, {"code": "DAT-ZIP-604", "message": "Token not found"}),
        "expired": (server.oidc.sign({**claims, "exp": claims["iat"] - 1}), expired),
        "audience": (server.oidc.sign({**claims, "aud": ["account"]}), audience),
        "forged": (jwt.encode(claims, other, algorithm="RS256", headers={"kid": server.oidc.kid}), invalid),
        "refresh": (answer["refresh_token"], invalid),
        "garbage": ("abc", invalid),
    }  # fmt: skip
    for name, (token, body) in refused.items():
        r = requests.get(url, params={"token": token} if token else {}, timeout=10)
        assert (r.status_code, r.json()) == (401, body), name
    assert server.stats_dict()["cdse"]["downloads"]["started"] == {USER: 2}


def test_range_head_and_bad_ids(server: CdseServer, entries: list[ProviderEntry], root: Path) -> None:
    url = _value_url(server.url, entries[1].id)
    token = {"token": _token(server.url)["access_token"]}
    data = _zip_bytes(root, entries[1].id)
    part = requests.get(url, params=token, headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}" and part.headers["Content-Length"] == "100"
    head = requests.head(url, params=token, timeout=10)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data)) and not head.content
    assert head.headers["Accept-Ranges"] == "bytes"
    unknown = requests.get(
        f"{server.url}/odata/v1/Products({product_uuid('nothing')})/$value", params=token, timeout=10
    )
    assert unknown.status_code == 404
    malformed = requests.get(f"{server.url}/odata/v1/Products(not-a-uuid)/$value", params=token, timeout=10)
    assert malformed.status_code == 422 and malformed.json()["code"] == "DAT-ZIP-111"


def test_product_faults(server: CdseServer, entries: list[ProviderEntry], root: Path) -> None:
    token = {"token": _token(server.url)["access_token"]}
    a, b, c = entries[0].id, entries[1].id, entries[2].id
    faults = {"products": {product_uuid(product_name(a)): "vanish", product_name(b): "truncate", c: "corrupt"}}
    requests.put(f"{server.url}/_faults", json=faults, timeout=10).raise_for_status()
    assert requests.get(_value_url(server.url, a), params=token, timeout=10).status_code == 404
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # cut short: fewer bytes than announced
        requests.get(_value_url(server.url, b), params=token, timeout=10).raise_for_status()
    corrupt = requests.get(_value_url(server.url, c), params=token, timeout=10).content
    assert len(corrupt) == len(_zip_bytes(root, c)) and corrupt != _zip_bytes(root, c)


# ---------------------------------------------------------------------------------------------
# the catalogue over plain HTTP


def _search(server: CdseServer, **params: str) -> requests.Response:
    return requests.get(f"{server.url}/odata/v1/Products", params=params, timeout=10)


def test_search_faults(server: CdseServer) -> None:
    f = {"search_500_pages": [2], "search_500_times": 1}
    requests.put(f"{server.url}/_faults", json=f, timeout=10).raise_for_status()
    assert _search(server, **{"$top": "3", "$skip": "0"}).status_code == 200
    failed = _search(server, **{"$top": "3", "$skip": "3"})
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "InternalServerError"
    assert _search(server, **{"$top": "3", "$skip": "3"}).status_code == 200  # once only

    requests.put(f"{server.url}/_faults", json={"status_429_first_n": 1, "retry_after_s": 7}, timeout=10)
    throttled = _search(server)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert _search(server).status_code == 200
    requests.put(f"{server.url}/_faults", json={"status_429_first_n": 1}, timeout=10)
    throttled = _search(server)
    assert throttled.status_code == 429 and "Retry-After" not in throttled.headers

    requests.put(f"{server.url}/_faults", json={"error_rate": 1.0}, timeout=10)
    assert _search(server).status_code == 500
    requests.put(f"{server.url}/_faults", json={"fail_first_n": 1}, timeout=10)
    assert [_search(server).status_code for _ in range(2)] == [503, 200]
    bad = requests.put(f"{server.url}/_faults", json={"no_such_knob": 1}, timeout=10)
    assert bad.status_code == 400
    assert requests.get(f"{server.url}/_faults", timeout=10).json()["fail_first_n"] == 1


@pytest.mark.parametrize(
    "filter_text",
    [
        "Collection/Name eq",
        "OData.CSC.Intersects(area=geography'SRID=4326;POLYGON((1 2, 3 4')",
        "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and att/Value)",
        "PublicationDate gt yesterday",
        "\x00\x01",
        "'" * 1001,
    ],
)
def test_filters_it_cannot_parse_are_400s(server: CdseServer, filter_text: str) -> None:
    r = _search(server, **{"$filter": filter_text})
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest"


def test_count_paging_and_one_product(server: CdseServer, entries: list[ProviderEntry], root: Path) -> None:
    base = {"$filter": "Collection/Name eq 'SENTINEL-2'", "$orderby": "PublicationDate desc", "$top": "4"}
    seen: list[str] = []
    page = _search(server, **base, **{"$count": "True", "$expand": "Attributes"}).json()
    assert page["@odata.count"] == N_L1C + 2 and page["@odata.context"] == "$metadata#Products(Attributes())"
    while True:
        seen += [p["Name"] for p in page["value"]]
        assert all("Attributes" in p for p in page["value"])
        if "@odata.nextLink" not in page:
            break
        page = requests.get(page["@odata.nextLink"], timeout=10).json()  # the link carries every option on
    s2 = sorted((e for e in entries if e.collection.startswith("S2")), key=lambda e: e.published, reverse=True)
    assert seen == [product_name(e.id) for e in s2]

    one_id = product_uuid(product_name(entries[0].id))
    one = requests.get(f"{server.url}/odata/v1/Products({one_id})", params={"$expand": "Attributes"}, timeout=10)
    body = one.json()
    assert one.status_code == 200 and body["Id"] == one_id and body["@odata.context"].endswith("/$entity")
    assert {a["Name"]: a["Value"] for a in body["Attributes"]}["productType"] == "S2MSI1C"
    data = _zip_bytes(root, entries[0].id)
    checksums = {c["Algorithm"]: c["Value"] for c in body["Checksum"]}
    assert checksums == {"MD5": hashlib.md5(data).hexdigest(), "BLAKE3": blake3(data).hexdigest()}
    assert body["ContentLength"] == len(data)
    assert requests.get(f"{server.url}/odata/v1/Products({product_uuid('x')})", timeout=10).status_code == 404
    assert requests.get(f"{server.url}/odata/v1/Products(x)", timeout=10).status_code == 400
    skip = _search(server, **{"$skip": "10001"})
    assert skip.status_code == 422 and skip.json()["detail"][0]["loc"] == ["query", "$skip"]


def test_ingest_dev_provider_flavour_cdse(root: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "ingest",
        "dev",
        "provider",
        "--flavour",
        "cdse",
        "--root",
        str(root),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == f"http://127.0.0.1:{port}"
        doc = requests.get(f"{line}/auth/realms/CDSE/.well-known/openid-configuration", timeout=10).json()
        assert doc["token_endpoint"] == f"{line}/auth/realms/CDSE/protocol/openid-connect/token"
        assert json.loads(requests.get(f"{line}/odata/v1/Products", timeout=10).text)["value"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode == 0
