"""A Keycloak-shaped OpenID provider: the realm ``CDSE`` of identity.dataspace.copernicus.eu, in small.

What EODAG's ``KeycloakOIDCPasswordAuth`` uses of it: the discovery document
(``/auth/realms/CDSE/.well-known/openid-configuration``: ``token_endpoint``, ``jwks_uri``,
``authorization_endpoint``, ``id_token_signing_alg_values_supported``), the JWKS it verifies tokens
with (``kid``, RS256), and the token endpoint with ``grant_type=password`` (client ``cdse-public``,
no secret) and ``grant_type=refresh_token``. Access tokens are RS256 JWTs for the audience
``CLOUDFERRO_PUBLIC``, 10 minutes by default; refresh tokens 60 minutes (CDSE's quotas page). Every
password grant opens a session (:class:`~ingest.devtools.cdse.limits.SessionBook`); a refresh keeps
it. Errors are Keycloak's (``{"error": "invalid_grant", "error_description": "Invalid user
credentials"}`` with 401 for a wrong password). The key pair is made at start: tokens do not survive
a restart, as sessions do not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from ingest.devtools.cdse.limits import TOO_MANY_BODY, LimitExceeded, SessionBook

REALM_PATH = "/auth/realms/CDSE"
CLIENT_ID = "cdse-public"
AUDIENCE = "CLOUDFERRO_PUBLIC"
ACCESS_LIFETIME_S = 600.0
REFRESH_LIFETIME_S = 3600.0
DEFAULT_USERS = {"ingest@example.com": "ingest"}
SCOPE = "AUDIENCE_PUBLIC openid email profile user-context"
_USER_NAMESPACE = uuid.UUID("2b9c7d1e-8f3a-5c6b-9d0e-4f1a2b3c4d5e")


class TokenRequestError(Exception):
    """A refused token request: HTTP ``status`` and Keycloak's JSON ``body``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.body: dict[str, Any] = {"error": error, "error_description": description}


class TooManySessions(TokenRequestError):
    def __init__(self) -> None:
        super().__init__(429, "too_many_sessions", TOO_MANY_BODY["message"])
        self.body = dict(TOO_MANY_BODY)


class InvalidToken(Exception):
    """An access token refused: ``reason`` is one of missing, malformed, signature, expired, audience, type."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Claims:
    user: str
    session_id: str
    expires: float
    raw: Mapping[str, Any]


def issuer_of(base_url: str) -> str:
    return base_url.rstrip("/") + REALM_PATH


class OpenIdProvider:
    """Keys, sessions and tokens of the realm; thread-safe. ``clock``: seconds since the epoch."""

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        access_lifetime_s: float = ACCESS_LIFETIME_S,
        refresh_lifetime_s: float = REFRESH_LIFETIME_S,
        max_sessions: int = 100,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if access_lifetime_s <= 0 or refresh_lifetime_s <= 0:
            raise ValueError("token lifetimes must be > 0")
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.access_lifetime_s = float(access_lifetime_s)
        self.refresh_lifetime_s = float(refresh_lifetime_s)
        self.clock = clock or time.time
        self.sessions = SessionBook(max_sessions, self.clock)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        self.kid = _thumbprint(public_jwk)
        self._jwk = {"kid": self.kid, "kty": "RSA", "alg": "RS256", "use": "sig", **public_jwk}
        self._lock = threading.Lock()
        self.grants: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    # -- documents -------------------------------------------------------------------------

    def discovery(self, base_url: str) -> dict[str, Any]:
        """The ``.well-known/openid-configuration`` document, its URLs under ``base_url``."""
        iss = issuer_of(base_url)
        oidc = f"{iss}/protocol/openid-connect"
        return {
            "issuer": iss,
            "authorization_endpoint": f"{oidc}/auth",
            "token_endpoint": f"{oidc}/token",
            "introspection_endpoint": f"{oidc}/token/introspect",
            "userinfo_endpoint": f"{oidc}/userinfo",
            "end_session_endpoint": f"{oidc}/logout",
            "jwks_uri": f"{oidc}/certs",
            "grant_types_supported": ["authorization_code", "refresh_token", "password"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "scopes_supported": ["openid", "email", "profile", "offline_access"],
            "claims_supported": ["aud", "sub", "iss", "exp", "iat", "preferred_username", "email"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._jwk)]}

    # -- the token endpoint ----------------------------------------------------------------

    def token(self, form: Mapping[str, str], base_url: str) -> dict[str, Any]:
        """Answer a token request (form fields of the POST); TokenRequestError when refused."""
        grant = form.get("grant_type", "")
        try:
            if not grant:
                raise TokenRequestError(400, "invalid_request", "Missing form parameter: grant_type")
            if form.get("client_id") != CLIENT_ID:
                raise TokenRequestError(401, "invalid_client", "Invalid client or Invalid client credentials")
            if grant == "password":
                answer = self._password(form, base_url)
            elif grant == "refresh_token":
                answer = self._refresh(form, base_url)
            else:
                raise TokenRequestError(400, "unsupported_grant_type", "Unsupported grant_type")
        except TokenRequestError as exc:
            key = f"{grant or '-'} {exc.status}"
            with self._lock:
                self.failures[key] = self.failures.get(key, 0) + 1
            raise
        with self._lock:
            self.grants[grant] = self.grants.get(grant, 0) + 1
        return answer

    def _password(self, form: Mapping[str, str], base_url: str) -> dict[str, Any]:
        user, password = form.get("username", ""), form.get("password", "")
        expected = self.users.get(user)
        # compared even for an unknown user, so that timing does not tell which users exist
        ok = hmac.compare_digest(password.encode(), (expected or "\0").encode()) and expected is not None
        if not ok:
            raise TokenRequestError(401, "invalid_grant", "Invalid user credentials")
        try:
            session = self.sessions.open(user, self.access_lifetime_s, self.refresh_lifetime_s)
        except LimitExceeded:
            raise TooManySessions() from None
        return self._tokens(user, session.id, base_url)

    def _refresh(self, form: Mapping[str, str], base_url: str) -> dict[str, Any]:
        token = form.get("refresh_token", "")
        if not token:
            raise TokenRequestError(400, "invalid_request", "Missing form parameter: refresh_token")
        try:
            claims = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            raise TokenRequestError(400, "invalid_grant", "Invalid refresh token") from None
        if claims.get("typ") != "Refresh" or claims.get("azp") != form.get("client_id"):
            raise TokenRequestError(400, "invalid_grant", "Invalid refresh token")
        if float(claims.get("exp", 0)) <= self.clock():
            raise TokenRequestError(400, "invalid_grant", "Token is not active")
        session = self.sessions.refresh(str(claims.get("sid", "")), self.access_lifetime_s, self.refresh_lifetime_s)
        if session is None:
            raise TokenRequestError(400, "invalid_grant", "Session not active")
        return self._tokens(session.user, session.id, base_url)

    def _tokens(self, user: str, session_id: str, base_url: str) -> dict[str, Any]:
        now = self.clock()
        iat = int(now)  # whole seconds, never after now: PyJWT refuses an iat in the future
        iss = issuer_of(base_url)
        common = {
            "iat": iat,
            "iss": iss,
            "sub": str(uuid.uuid5(_USER_NAMESPACE, user)),
            "azp": CLIENT_ID,
            "sid": session_id,
            "session_state": session_id,
            "scope": SCOPE,
        }
        access = {
            **common,
            "exp": now + self.access_lifetime_s,
            "jti": str(uuid.uuid4()),
            "aud": [AUDIENCE, "account"],
            "typ": "Bearer",
            "preferred_username": user,
            "email": user,
        }
        refresh = {
            **common,
            "exp": now + self.refresh_lifetime_s,
            "jti": str(uuid.uuid4()),
            "aud": iss,
            "typ": "Refresh",
        }
        return {
            "access_token": self.sign(access),
            "expires_in": int(self.access_lifetime_s),
            "refresh_expires_in": int(self.refresh_lifetime_s),
            "refresh_token": self.sign(refresh),
            "token_type": "Bearer",
            "not-before-policy": 0,
            "session_state": session_id,
            "scope": SCOPE,
        }

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A JWT of ``claims`` signed with the realm's key (tests make expired or foreign-audience tokens)."""
        return jwt.encode(dict(claims), self._key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})

    # -- access tokens presented to the download service -----------------------------------

    def verify_access(self, token: str | None) -> Claims:
        """The claims of a valid access token; InvalidToken (with its reason) otherwise."""
        if not token:
            raise InvalidToken("missing")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("malformed", str(exc)) from None
        if header.get("kid") != self.kid or header.get("alg") != "RS256":
            raise InvalidToken("signature", "unknown key or algorithm")
        try:
            claims = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "require": ["exp", "sub"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("signature", str(exc)) from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("malformed", str(exc)) from None
        if claims.get("typ") != "Bearer":
            raise InvalidToken("type", f"a {claims.get('typ')!r} token")
        expires = float(claims["exp"])
        if expires <= self.clock():
            raise InvalidToken("expired")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if AUDIENCE not in audiences:
            raise InvalidToken("audience", f"audience {audience!r}")
        user = str(claims.get("preferred_username") or claims["sub"])
        return Claims(user=user, session_id=str(claims.get("sid", "")), expires=expires, raw=claims)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            tokens = {"grants": dict(self.grants), "failures": dict(self.failures)}
        return {**tokens, "sessions": self.sessions.to_dict()}

    def reset_counters(self) -> None:
        with self._lock:
            self.grants = {}
            self.failures = {}
        self.sessions.reset_counters()


def _thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (what Keycloak's kids look like: stable for a key)."""
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
