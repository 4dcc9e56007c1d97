"""Who may read a collection's assets (``access:`` in the collection YAML), and the decision for one
request. Pure.

* ``public``: anyone, no token needed (a token sent is not checked).
* ``authenticated``: any valid token from a configured issuer.
* ``entitlements``: a valid token whose entitlement claim (``INGEST_OIDC_ENTITLEMENT_CLAIM``, EGI
  Check-in's ``eduperson_entitlement`` by default; a string or a list of strings) holds one of them.

Metadata stays public whatever the policy: the policy guards the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AccessPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["public", "authenticated", "entitlements"] = "public"
    entitlements: tuple[str, ...] = Field(default=(), description="one of them must be in the token's claim")

    @model_validator(mode="after")
    def _entitlements_go_with_their_policy(self) -> AccessPolicy:
        if self.policy == "entitlements" and not self.entitlements:
            raise ValueError("policy 'entitlements' needs at least one value in 'entitlements'")
        if self.policy != "entitlements" and self.entitlements:
            raise ValueError(f"'entitlements' is for policy 'entitlements', not {self.policy!r}")
        if any(not e.strip() for e in self.entitlements):
            raise ValueError("an entitlement is an empty string")
        return self

    def published(self) -> dict[str, Any]:
        """As the collection document publishes it (``ingest:access``), which the gateway reads."""
        doc: dict[str, Any] = {"policy": self.policy}
        if self.entitlements:
            doc["entitlements"] = list(self.entitlements)
        return doc

    @classmethod
    def from_published(cls, doc: object) -> AccessPolicy:
        """From a collection document's ``ingest:access``; absent: public. Anything else is refused
        (ValueError): a policy the gateway cannot read never falls open."""
        if doc is None:
            return cls()
        if not isinstance(doc, Mapping):
            raise ValueError("ingest:access is not an object")
        return cls.model_validate(dict(doc))


class Decision(Enum):
    ALLOW = "allow"
    UNAUTHENTICATED = "unauthenticated"  # 401: no (valid) token where one is needed
    FORBIDDEN = "forbidden"  # 403: a valid token, not entitled


def decide(policy: AccessPolicy, claims: Mapping[str, Any] | None, claim: str) -> Decision:
    """``claims``: the verified token's claims, None when there is no valid token."""
    if policy.policy == "public":
        return Decision.ALLOW
    if claims is None:
        return Decision.UNAUTHENTICATED
    if policy.policy == "authenticated":
        return Decision.ALLOW
    held = claims.get(claim)
    values = (
        {held}
        if isinstance(held, str)
        else {v for v in held if isinstance(v, str)}
        if isinstance(held, list)
        else set()
    )
    return Decision.ALLOW if values & set(policy.entitlements) else Decision.FORBIDDEN
