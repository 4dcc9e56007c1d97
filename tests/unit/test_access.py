"""Access policies and token verification (``ingest.access``): the decision, pure; the verifier with
tokens PyJWT signs here and an issuer whose discovery and JWKS are plain dicts (the real OpenID
provider is in tests/integration/test_access.py). Each forged token of the issue's list is refused."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from ingest.access.gateway import object_key
from ingest.access.hrefs import AUTH_EXT, rewrite_item, serves_any
from ingest.access.policy import AccessPolicy, Decision, decide
from ingest.access.tokens import InvalidToken, IssuerUnavailable, Verifier
from ingest.adapters.s3 import ObjectStore
from ingest.collections import load_spec
from ingest.errors import CollectionSpecError
from ingest.settings import OidcIssuer
from tests.conftest import ROOT

ISS, AUD = "https://aai.example.org/auth/realms/egi", "eo-ingest"
DISCOVERY = ISS + "/.well-known/openid-configuration"
VO = "urn:mace:egi.eu:group:vo.example.eu:role=member#aai.egi.eu"
ALGS = ["RS256", "ES256"]


def test_the_decision_per_policy() -> None:
    public, anyone = AccessPolicy(), AccessPolicy(policy="authenticated")
    entitled = AccessPolicy(policy="entitlements", entitlements=(VO,))
    claim = "eduperson_entitlement"
    assert decide(public, None, claim) is Decision.ALLOW
    assert decide(anyone, None, claim) is Decision.UNAUTHENTICATED
    assert decide(anyone, {"sub": "u"}, claim) is Decision.ALLOW
    assert decide(entitled, {claim: [VO, "other"]}, claim) is Decision.ALLOW
    assert decide(entitled, {claim: VO}, claim) is Decision.ALLOW  # a single string counts too
    assert decide(entitled, {claim: ["urn:other"]}, claim) is Decision.FORBIDDEN
    assert decide(entitled, {"groups": [VO]}, claim) is Decision.FORBIDDEN  # another claim
    assert decide(entitled, None, claim) is Decision.UNAUTHENTICATED


def test_a_policy_is_validated_and_an_unreadable_one_never_falls_open() -> None:
    with pytest.raises(ValidationError, match="needs at least one"):
        AccessPolicy(policy="entitlements")
    with pytest.raises(ValidationError, match="is for policy 'entitlements'"):
        AccessPolicy(policy="authenticated", entitlements=(VO,))
    assert AccessPolicy.from_published(None).policy == "public"
    with pytest.raises(ValueError):
        AccessPolicy.from_published({"policy": "everyone"})
    with pytest.raises(ValueError):
        AccessPolicy.from_published("public")


class Issuer:
    """Discovery and JWKS as dicts, counted; ``down`` makes every fetch fail."""

    def __init__(self) -> None:
        self.keys: list[Any] = [rsa.generate_private_key(public_exponent=65537, key_size=2048)]
        self.kids = ["k1"]
        self.fetches = 0
        self.down = False

    def jwks(self) -> dict[str, Any]:
        out = []
        for key, kid in zip(self.keys, self.kids, strict=True):
            alg = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
            jwk = json.loads(alg.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": out}

    def fetch(self, url: str) -> dict[str, Any]:
        self.fetches += 1
        if self.down:
            raise ValueError("unreachable")
        if url == DISCOVERY:
            return {"issuer": ISS, "jwks_uri": ISS + "/certs"}
        return self.jwks()

    def token(self, n: int = 0, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISS, "aud": AUD, "sub": "u", "iat": now, "exp": now + 600, **claims}
        alg = "RS256" if isinstance(self.keys[n], rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(
            {k: v for k, v in body.items() if v is not None}, self.keys[n], algorithm=alg, headers={"kid": self.kids[n]}
        )


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def verifier(issuer: Issuer, clock: Clock | None = None) -> Verifier:
    return Verifier(
        [OidcIssuer(discovery_url=DISCOVERY, audience=AUD)], algorithms=ALGS, leeway_s=30, refresh_s=300,
        fetch=issuer.fetch, clock=clock or Clock(),
    )  # fmt: skip


def test_a_valid_token_gives_its_claims_and_the_keys_are_kept() -> None:
    issuer = Issuer()
    v = verifier(issuer)
    assert v.verify(issuer.token(eduperson_entitlement=[VO]))["eduperson_entitlement"] == [VO]
    v.verify(issuer.token())
    assert issuer.fetches == 2  # discovery + JWKS once


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (lambda i: i.token(exp=int(time.time()) - 120), "expired"),
        (lambda i: i.token(aud="another-site"), "another audience"),
        (lambda i: i.token(iss="https://evil.example.org"), "does not trust"),
        (lambda i: i.token(nbf=int(time.time()) + 3600), "not valid yet"),
        (lambda i: i.token(exp=None), "not valid"),  # exp is required
        (lambda i: signed_by_another_key(), "does not verify"),  # another key, our kid
        (lambda i: unsigned(), "'none' is not accepted"),
        (lambda i: hs256_with_the_public_key(i), "'HS256' is not accepted"),
        (lambda i: "not-a-jwt", "not a JWS"),
        (lambda i: "a.b.c", "cannot be decoded"),
    ],
)  # fmt: skip
def test_forged_and_wrong_tokens_are_refused_with_a_reason(forge: Any, reason: str) -> None:
    issuer = Issuer()
    with pytest.raises(InvalidToken, match=reason) as err:
        verifier(issuer).verify(forge(issuer))
    assert "eyJ" not in err.value.message  # never quotes the token


def signed_by_another_key() -> str:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode({"iss": ISS, "aud": AUD, "exp": 2**31}, other, algorithm="RS256", headers={"kid": "k1"})


def unsigned() -> str:
    return f"{b64({'alg': 'none', 'kid': 'k1'})}.{b64({'iss': ISS, 'aud': AUD, 'exp': 2**31})}."


def hs256_with_the_public_key(issuer: Issuer) -> str:
    pem = (
        issuer.keys[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header, payload = b64({"alg": "HS256", "typ": "JWT", "kid": "k1"}), b64({"iss": ISS, "aud": AUD, "exp": 2**31})
    import hashlib
    import hmac

    sig = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def test_a_rotated_key_is_fetched_once_and_an_ec_token_with_an_rsa_kid_is_refused() -> None:
    issuer, clock = Issuer(), Clock()
    v = verifier(issuer, clock)
    v.verify(issuer.token())
    issuer.keys.append(ec.generate_private_key(ec.SECP256R1()))
    issuer.kids.append("k2")
    clock.t += 11
    v.verify(issuer.token(1))  # unknown kid: the JWKS again, then it verifies
    assert issuer.fetches == 4
    forged = jwt.encode(
        {"iss": ISS, "aud": AUD, "exp": 2**31}, issuer.keys[1], algorithm="ES256", headers={"kid": "k1"}
    )
    with pytest.raises(InvalidToken):
        v.verify(forged)
    for _ in range(5):  # random kids within 10 s: no storm of fetches
        with pytest.raises(InvalidToken, match="does not publish"):
            v.verify(
                jwt.encode(
                    {"iss": ISS, "aud": AUD, "exp": 2**31}, issuer.keys[0], algorithm="RS256", headers={"kid": "zz"}
                )
            )
    assert issuer.fetches <= 6


def test_an_unreachable_issuer_keeps_its_keys_and_without_keys_is_unavailable() -> None:
    issuer, clock = Issuer(), Clock()
    v = verifier(issuer, clock)
    v.verify(issuer.token())
    issuer.down = True
    clock.t += 1000  # past the refresh time: the fetch fails, the kept keys still verify
    assert v.verify(issuer.token())["sub"] == "u"
    cold = Issuer()
    cold.down = True
    with pytest.raises(IssuerUnavailable):
        verifier(cold).verify(cold.token())


def test_object_keys_must_lie_under_the_items_own_prefix() -> None:
    store = ObjectStore(bucket="b", prefix="ingest")
    assert object_key("s3://b/ingest/c/i/red.tif", store, "c", "i") == "ingest/c/i/red.tif"
    for href in (
        "s3://b/ingest/other/i/red.tif",  # another collection's object
        "s3://b/ingest/c/i2/red.tif",
        "s3://other-bucket/ingest/c/i/red.tif",
        "s3://b/ingest/c/i/../../other/i/red.tif",
        "https://example.org/ingest/c/i/red.tif",
    ):
        assert object_key(href, store, "c", "i") is None, href
    assert object_key("s3://b/ingest/c/i/red.tif", store, "c", "..") is None


def test_served_items_point_at_the_gateway_and_say_how_to_authenticate() -> None:
    item: dict[str, Any] = {
        "id": "i 1", "collection": "c", "properties": {}, "stac_extensions": [],
        "assets": {"red": {"href": "s3://b/ingest/c/i 1/red.tif"}, "elsewhere": {"href": "https://x.org/a.tif"}},
    }  # fmt: skip
    out = rewrite_item(
        item, base_url="https://stac.example.org/", bucket="b", protected=True, discovery_urls=[DISCOVERY]
    )
    red = out["assets"]["red"]
    assert red["href"] == "https://stac.example.org/collections/c/items/i%201/assets/red"
    assert red["alternate"]["s3"]["href"] == "s3://b/ingest/c/i 1/red.tif" and red["auth:refs"] == ["oidc"]
    assert out["assets"]["elsewhere"] == {"href": "https://x.org/a.tif"}
    assert out["properties"]["auth:schemes"]["oidc"] == {
        "type": "openIdConnect", "openIdConnectUrl": DISCOVERY, "description": "a bearer token from this issuer",
    }  # fmt: skip
    assert AUTH_EXT in out["stac_extensions"] and item["assets"]["red"]["href"].startswith("s3://")
    public = rewrite_item(item, base_url="https://s/", bucket="b", protected=False, discovery_urls=[DISCOVERY])
    assert "auth:refs" not in public["assets"]["red"]


@pytest.mark.parametrize(
    ("access", "field"),
    [
        ({"policy": "everyone"}, "access.policy"),
        ({"policy": "entitlements"}, "needs at least one value"),
        ({"policy": "public", "entitlements": [VO]}, "is for policy 'entitlements'"),
        ({"policy": "authenticated", "groups": [VO]}, "access.groups"),  # a typo never passes as "open"
    ],
)
def test_a_wrong_access_block_names_the_file_and_field(tmp_path: Path, access: dict[str, Any], field: str) -> None:
    doc = yaml.safe_load((ROOT / "collections" / "sentinel-2-l2a.yaml").read_text())
    doc["access"] = access
    path = tmp_path / "sentinel-2-l2a.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(CollectionSpecError) as err:
        load_spec(path)
    assert str(path) in err.value.message and field in err.value.message


def test_the_published_policy_is_the_files() -> None:
    spec = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml")
    assert spec.stac_collection()["ingest:access"] == {"policy": "public"}  # the shipped default
    entitled = spec.model_copy(update={"access": AccessPolicy(policy="entitlements", entitlements=(VO,))})
    doc = entitled.stac_collection()
    assert AccessPolicy.from_published(doc["ingest:access"]) == entitled.access


def test_without_the_gateway_only_s3_thumbnails_are_rewritten() -> None:
    s3 = "s3://bkt/ingest/c/i/"
    item = {
        "id": "i", "collection": "c",
        "assets": {"thumbnail": {"href": s3 + "thumbnail.png"}, "blue": {"href": s3 + "blue.tif"}},
    }  # fmt: skip
    assert serves_any(item, "bkt", ("thumbnail",)) and not serves_any(item, "other", ("thumbnail",))
    out = rewrite_item(item, base_url="https://api/", bucket="bkt", protected=False, discovery_urls=[],
                       only=("thumbnail",))  # fmt: skip
    assert out["assets"]["thumbnail"]["href"] == "https://api/collections/c/items/i/assets/thumbnail"
    assert out["assets"]["thumbnail"]["alternate"]["s3"]["href"] == s3 + "thumbnail.png"
    assert out["assets"]["blue"] == {"href": s3 + "blue.tif"}
    public = {**item, "assets": {"thumbnail": {"href": "https://cdn/t.png", "alternate": {"s3": {"href": s3}}}}}
    assert not serves_any(public, "bkt", ("thumbnail",))  # an https thumbnail is shown as it is
    kept = rewrite_item(public, base_url="https://api/", bucket="bkt", protected=False, discovery_urls=[],
                        only=("thumbnail",))  # fmt: skip
    assert kept["assets"] == public["assets"]
