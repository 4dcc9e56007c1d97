"""Bearer tokens from the configured OpenID issuers, verified with PyJWT (never by hand).

Per issuer, its discovery document (``issuer``, ``jwks_uri``) and its JWKS are fetched on first use and
kept for ``INGEST_OIDC_REFRESH_S``; a token signed with a key id not in the kept set makes one fetch
at once (a key rotation), at most one per ``_MIN_REFETCH_S`` per issuer (random kids cannot make us
hammer the issuer). When the issuer cannot be reached, the keys kept still verify; with none kept the
answer is IssuerUnavailable (the gateway's 503).

A token is accepted when: its header's ``alg`` is one of ``INGEST_OIDC_ALGORITHMS`` (asymmetric only:
``none`` and HMAC are refused before any key is looked at), its ``iss`` is a configured issuer's
discovered one, its ``kid`` names a key of that issuer whose type fits the algorithm, the signature
verifies, ``aud`` holds the issuer's configured audience, and ``exp`` (required), ``nbf`` and ``iat``
hold within ``INGEST_OIDC_LEEWAY_S``. Anything else is InvalidToken with a reason fit for a
``WWW-Authenticate`` header (it never quotes the token).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests

from ingest.errors import IngestError
from ingest.settings import OidcIssuer, Settings

_MIN_REFETCH_S = 10.0
_TIMEOUT_S = 5.0
_MAX_TOKEN_CHARS = 16_384  # a JWT is a few KB; anything larger is not one of ours


class InvalidToken(IngestError):
    """The token is missing, malformed, or fails verification (401)."""


class IssuerUnavailable(IngestError):
    """The issuer's keys cannot be had and none are kept (503)."""


Fetch = Callable[[str], dict[str, Any]]


def fetch_json(url: str) -> dict[str, Any]:
    r = requests.get(url, timeout=_TIMEOUT_S, headers={"Accept": "application/json"})
    r.raise_for_status()
    body = r.json()
    if not isinstance(body, dict):
        raise ValueError(f"{url}: not a JSON object")
    return body


@dataclass
class _Issuer:
    config: OidcIssuer
    issuer: str | None = None  # from discovery
    jwks_uri: str | None = None
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float = float("-inf")
    tried_at: float = float("-inf")


class Verifier:
    """Thread-safe: the gateway verifies from a thread pool."""

    def __init__(
        self,
        issuers: Sequence[OidcIssuer],
        *,
        algorithms: Sequence[str],
        leeway_s: float,
        refresh_s: float,
        fetch: Fetch = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuers = [_Issuer(c) for c in issuers]
        self._algorithms = tuple(algorithms)
        self._leeway_s = leeway_s
        self._refresh_s = refresh_s
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Verifier:
        return cls(
            settings.oidc_issuers,
            algorithms=settings.oidc_algorithms,
            leeway_s=settings.oidc_leeway_s,
            refresh_s=settings.oidc_refresh_s,
        )

    @property
    def discovery_urls(self) -> list[str]:
        return [i.config.discovery_url for i in self._issuers]

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or InvalidToken / IssuerUnavailable."""
        if not token or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 2:
            raise InvalidToken("the token is not a JWS compact serialisation")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise InvalidToken("the token cannot be decoded") from None
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise InvalidToken(f"signature algorithm {str(alg)[:20]!r} is not accepted")
        iss = unverified.get("iss")
        issuer = self._issuer_of(iss if isinstance(iss, str) else "")
        kid = header.get("kid")
        key = self._key(issuer, kid if isinstance(kid, str) else None)
        if not _fits(key, str(alg)):
            raise InvalidToken("the key named does not fit the token's algorithm")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[str(alg)],
                audience=issuer.config.audience,
                issuer=issuer.issuer,
                leeway=self._leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is for another audience") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is not valid ({type(exc).__name__})") from None
        return claims

    # ------------------------------------------------------------------ issuers and keys

    def _issuer_of(self, iss: str) -> _Issuer:
        with self._lock:
            for i in self._issuers:
                self._discover(i)
            matched = [i for i in self._issuers if i.issuer is not None and i.issuer == iss]
            if matched:
                return matched[0]
            if all(i.issuer is None for i in self._issuers):
                raise IssuerUnavailable("no configured OpenID issuer can be reached")
        raise InvalidToken("the token is from an issuer this site does not trust")

    def _discover(self, i: _Issuer) -> None:
        now = self._clock()
        stale = now - i.fetched_at > self._refresh_s
        if (i.issuer is not None and not stale) or now - i.tried_at < _MIN_REFETCH_S:
            return
        self._refresh(i)

    def _refresh(self, i: _Issuer) -> None:
        """Discovery then JWKS; on failure what was kept stays."""
        i.tried_at = self._clock()
        try:
            meta = self._fetch(i.config.discovery_url)
            issuer, jwks_uri = meta.get("issuer"), meta.get("jwks_uri")
            if not isinstance(issuer, str) or not isinstance(jwks_uri, str):
                raise ValueError("discovery without issuer or jwks_uri")
            keys = jwt.PyJWKSet.from_dict(self._fetch(jwks_uri))
        except (requests.RequestException, ValueError, jwt.PyJWTError):
            return
        i.issuer, i.jwks_uri = issuer, jwks_uri
        i.keys = {k.key_id: k for k in keys.keys if k.key_id and (k.public_key_use in (None, "sig"))}
        i.fetched_at = i.tried_at

    def _key(self, i: _Issuer, kid: str | None) -> jwt.PyJWK:
        if kid is None:
            raise InvalidToken("the token names no key (kid)")
        with self._lock:
            if kid not in i.keys and self._clock() - i.tried_at >= _MIN_REFETCH_S:
                self._refresh(i)  # a rotation: the new key is in the issuer's JWKS
            key = i.keys.get(kid)
            if key is None and not i.keys:
                raise IssuerUnavailable("the issuer's keys cannot be fetched and none are kept")
        if key is None:
            raise InvalidToken("the token is signed with a key the issuer does not publish")
        return key


def _fits(key: jwt.PyJWK, alg: str) -> bool:
    """Whether the key's type is the algorithm's (an RSA key never checks an ES256 token)."""
    kty = key.key_type
    return (
        (kty == "RSA" and alg[:2] in ("RS", "PS"))
        or (kty == "EC" and alg.startswith("ES"))
        or (kty == "OKP" and alg == "EdDSA")
    )
