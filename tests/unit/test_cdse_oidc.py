"""The CDSE-like provider's OpenID realm and its per-user limits: tokens, sessions, download slots."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ingest.devtools.cdse.limits import TOO_MANY_BODY, DownloadSlots, LimitExceeded, SessionBook
from ingest.devtools.cdse.oidc import (
    AUDIENCE,
    CLIENT_ID,
    InvalidToken,
    OpenIdProvider,
    TokenRequestError,
)

BASE = "http://127.0.0.1:9999"
USER, PASSWORD = "alice@example.com", "s3cret"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def realm(clock: Clock) -> Iterator[OpenIdProvider]:
    yield OpenIdProvider({USER: PASSWORD, "bob": "pw"}, max_sessions=3, clock=clock)


def login(realm: OpenIdProvider, user: str = USER, password: str = PASSWORD) -> dict[str, Any]:
    form = {"grant_type": "password", "client_id": CLIENT_ID, "username": user, "password": password}
    return realm.token(form, BASE)


def refresh(realm: OpenIdProvider, token: str) -> dict[str, Any]:
    return realm.token({"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": token}, BASE)


def test_discovery_and_keys_verify_the_tokens_with_pyjwt_as_eodag_does(realm: OpenIdProvider, clock: Clock) -> None:
    doc = realm.discovery(BASE + "/")
    iss = f"{BASE}/auth/realms/CDSE"
    assert doc["issuer"] == iss
    assert doc["token_endpoint"] == f"{iss}/protocol/openid-connect/token"
    assert doc["jwks_uri"] == f"{iss}/protocol/openid-connect/certs"
    assert doc["authorization_endpoint"] == f"{iss}/protocol/openid-connect/auth"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    answer = login(realm)
    (key,) = realm.jwks()["keys"]
    assert key["kid"] == jwt.get_unverified_header(answer["access_token"])["kid"]
    claims = jwt.decode(
        answer["access_token"],
        jwt.PyJWK(key).key,
        algorithms=doc["id_token_signing_alg_values_supported"],
        audience=[AUDIENCE],  # what EODAG's allowed_audiences checks
        options={"verify_exp": False, "verify_iat": False},  # the fake clock is in 2027
    )
    assert AUDIENCE in claims["aud"] and claims["typ"] == "Bearer" and claims["azp"] == CLIENT_ID
    assert claims["exp"] == clock.now + 600 and claims["iss"] == iss and claims["preferred_username"] == USER
    assert isinstance(claims["sub"], str) and claims["iat"] <= clock.now


def test_password_grant_answers_as_keycloak(realm: OpenIdProvider) -> None:
    answer = login(realm)
    assert answer["token_type"] == "Bearer"
    assert (answer["expires_in"], answer["refresh_expires_in"]) == (600, 3600)
    assert answer["session_state"] and answer["refresh_token"] and answer["access_token"]
    assert realm.verify_access(answer["access_token"]).user == USER


@pytest.mark.parametrize(
    ("form", "status", "error", "description"),
    [
        ({"username": USER, "password": "wrong"}, 401, "invalid_grant", "Invalid user credentials"),
        ({"username": "mallory", "password": PASSWORD}, 401, "invalid_grant", "Invalid user credentials"),
        ({"username": USER, "password": PASSWORD, "client_id": "other"}, 401, "invalid_client", None),
        ({"username": USER, "password": PASSWORD, "grant_type": ""}, 400, "invalid_request", None),
        (
            {"username": USER, "password": PASSWORD, "grant_type": "client_credentials"},
            400,
            "unsupported_grant_type",
            None,
        ),
    ],
)
def test_refused_token_requests(
    realm: OpenIdProvider, form: dict[str, str], status: int, error: str, description: str | None
) -> None:
    full = {"grant_type": "password", "client_id": CLIENT_ID, **form}
    with pytest.raises(TokenRequestError) as err:
        realm.token(full, BASE)
    assert err.value.status == status and err.value.body["error"] == error
    if description is not None:
        assert err.value.body == {"error": error, "error_description": description}
    assert realm.sessions.live(USER) == 0


def test_refresh_grant_keeps_the_session(realm: OpenIdProvider, clock: Clock) -> None:
    first = login(realm)
    clock.now += 700  # the access token has expired, the refresh token has not
    with pytest.raises(InvalidToken) as err:
        realm.verify_access(first["access_token"])
    assert err.value.reason == "expired"
    second = refresh(realm, first["refresh_token"])
    assert second["session_state"] == first["session_state"]
    assert realm.verify_access(second["access_token"]).session_id == first["session_state"]
    stats = realm.to_dict()
    assert stats["grants"] == {"password": 1, "refresh_token": 1}
    assert stats["sessions"]["opened"] == {USER: 1} and stats["sessions"]["live"] == {USER: 1}


def test_refused_refreshes(realm: OpenIdProvider, clock: Clock) -> None:
    first = login(realm)
    for bad in ("", "not.a.jwt", first["access_token"]):
        with pytest.raises(TokenRequestError) as err:
            refresh(realm, bad)
        assert err.value.status == 400
    clock.now += 3601
    with pytest.raises(TokenRequestError) as err:
        refresh(realm, first["refresh_token"])
    assert err.value.body == {"error": "invalid_grant", "error_description": "Token is not active"}


def test_sessions_beyond_the_limit_are_a_429_until_one_expires(realm: OpenIdProvider, clock: Clock) -> None:
    for _ in range(3):
        login(realm)
    login(realm, "bob", "pw")  # per user
    with pytest.raises(TokenRequestError) as err:
        login(realm)
    assert err.value.status == 429 and err.value.body == TOO_MANY_BODY
    assert realm.to_dict()["sessions"]["rejected"] == {USER: 1}
    clock.now += 601  # their access tokens expired (never refreshed): the sessions ended
    login(realm)
    assert realm.sessions.live(USER) == 1
    assert realm.to_dict()["sessions"]["max_live"][USER] == 3


def test_access_tokens_refused_for_each_reason(realm: OpenIdProvider, clock: Clock) -> None:
    answer = login(realm)
    good = jwt.decode(answer["access_token"], options={"verify_signature": False})
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(good, other_key, algorithm="RS256", headers={"kid": realm.kid})
    foreign_kid = jwt.encode(good, other_key, algorithm="RS256", headers={"kid": "someone-else"})
    cases = {
        "missing": None,
        "malformed": "abc.def",
        "signature": forged,
        "expired": realm.sign({**good, "exp": clock.now - 1}),
        "audience": realm.sign({**good, "aud": ["account", "SENTINEL_HUB"]}),
        "type": answer["refresh_token"],
    }
    for reason, token in cases.items():
        with pytest.raises(InvalidToken) as err:
            realm.verify_access(token)
        assert err.value.reason == reason, reason
    with pytest.raises(InvalidToken) as err:
        realm.verify_access(foreign_kid)
    assert err.value.reason == "signature"
    hs = jwt.encode(good, "k" * 32, algorithm="HS256", headers={"kid": realm.kid})  # algorithm confusion
    with pytest.raises(InvalidToken):
        realm.verify_access(hs)
    assert realm.verify_access(realm.sign({**good, "aud": AUDIENCE})).user == USER  # a bare string audience


def test_tokens_of_another_realm_instance_are_refused(clock: Clock) -> None:
    a, b = OpenIdProvider(clock=clock), OpenIdProvider(clock=clock)
    user, password = next(iter(a.users.items()))
    token = login(a, user, password)["access_token"]
    with pytest.raises(InvalidToken):
        b.verify_access(token)  # a restart makes new keys


def test_lifetimes_are_configurable(clock: Clock) -> None:
    realm = OpenIdProvider({USER: PASSWORD}, access_lifetime_s=2, refresh_lifetime_s=5, clock=clock)
    answer = login(realm)
    assert (answer["expires_in"], answer["refresh_expires_in"]) == (2, 5)
    clock.now += 2
    with pytest.raises(InvalidToken):
        realm.verify_access(answer["access_token"])
    with pytest.raises(ValueError):
        OpenIdProvider(access_lifetime_s=0)


def test_session_book_counts(clock: Clock) -> None:
    book = SessionBook(max_sessions=1, clock=clock)
    s = book.open("u", 10, 100)
    with pytest.raises(LimitExceeded):
        book.open("u", 10, 100)
    clock.now += 50  # the access token expired, the refresh token did not: a refresh revives the session
    assert book.live("u") == 0
    assert book.refresh(s.id, 10, 100) is not None and book.live("u") == 1
    clock.now += 200
    assert book.refresh(s.id, 10, 100) is None
    assert book.to_dict()["opened"] == {"u": 1} and book.to_dict()["refreshed"] == {"u": 1}


def test_download_slots_per_user_and_high_water_marks() -> None:
    slots = DownloadSlots(max_per_user=2)
    slots.acquire("a")
    slots.acquire("a")
    with pytest.raises(LimitExceeded):
        slots.acquire("a")
    slots.acquire("b")
    stats = slots.to_dict()
    assert stats["max_concurrent"] == 3 and stats["max_concurrent_per_user"] == {"a": 2, "b": 1}
    assert stats["rejected"] == {"a": 1} and stats["active"] == {"a": 2, "b": 1}
    assert stats["max_attempted_per_user"] == {"a": 3, "b": 1} and stats["max_attempted"] == 3
    slots.release("a")
    slots.acquire("a")
    slots.reset()  # counters restart, running downloads stay counted
    assert slots.to_dict()["max_concurrent"] == 3 and slots.to_dict()["started"] == {}
    for user in ("a", "a", "b"):
        slots.release(user)
    assert slots.to_dict()["active"] == {}
    slots.release("nobody")  # never negative
    assert slots.to_dict()["active"] == {}
