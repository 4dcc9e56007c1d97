"""The product state machine, as data: which transitions exist. Pure; the SQL guards use it."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    DISCOVERED = "discovered"
    CLAIMED = "claimed"
    DOWNLOADED = "downloaded"
    CONVERTED = "converted"
    UPLOADED = "uploaded"
    CATALOGUED = "catalogued"
    FAILED = "failed"  # retryable: attempts and next_attempt_at say when
    INVALID = "invalid"  # bad input, terminal until an operator forces a retry
    RETIRED = "retired"  # removed by retention
    OFFLINE = "offline"  # in the provider's long-term archive: next_attempt_at says when to look again


PIPELINE = (
    State.DISCOVERED,
    State.CLAIMED,
    State.DOWNLOADED,
    State.CONVERTED,
    State.UPLOADED,
    State.CATALOGUED,
)
IN_FLIGHT = frozenset({State.CLAIMED, State.DOWNLOADED, State.CONVERTED, State.UPLOADED})
TERMINAL = frozenset({State.CATALOGUED, State.INVALID, State.RETIRED})

_ALLOWED: dict[State, frozenset[State]] = {
    State.DISCOVERED: frozenset({State.CLAIMED, State.RETIRED}),
    State.CLAIMED: frozenset({State.DOWNLOADED, State.FAILED, State.INVALID, State.DISCOVERED, State.OFFLINE}),
    State.DOWNLOADED: frozenset({State.CONVERTED, State.FAILED, State.INVALID, State.DISCOVERED}),
    State.CONVERTED: frozenset({State.UPLOADED, State.FAILED, State.INVALID, State.DISCOVERED}),
    State.UPLOADED: frozenset({State.CATALOGUED, State.FAILED, State.INVALID, State.DISCOVERED}),
    # a catalogued product can be re-processed on purpose (forced) or retired by retention
    State.CATALOGUED: frozenset({State.CLAIMED, State.RETIRED}),
    State.FAILED: frozenset({State.CLAIMED, State.DISCOVERED, State.RETIRED}),
    State.INVALID: frozenset({State.DISCOVERED, State.RETIRED}),
    State.RETIRED: frozenset(),
    # looked at again when due (claimed), put back by an operator (discovered), or retired
    State.OFFLINE: frozenset({State.CLAIMED, State.DISCOVERED, State.RETIRED}),
}


def can_transition(src: State, dst: State) -> bool:
    return dst in _ALLOWED[src]


def allowed_targets(src: State) -> frozenset[State]:
    return _ALLOWED[src]
