from __future__ import annotations

import itertools

from ingest.state.machine import IN_FLIGHT, PIPELINE, TERMINAL, State, allowed_targets, can_transition


def test_pipeline_steps_are_allowed_in_order() -> None:
    for src, dst in itertools.pairwise(PIPELINE):
        assert can_transition(src, dst), (src, dst)


def test_no_skipping_stages() -> None:
    assert not can_transition(State.DISCOVERED, State.CATALOGUED)
    assert not can_transition(State.CLAIMED, State.UPLOADED)
    assert not can_transition(State.DOWNLOADED, State.CATALOGUED)


def test_every_in_flight_state_can_fail_or_be_released() -> None:
    for s in IN_FLIGHT:
        assert {State.FAILED, State.INVALID, State.DISCOVERED} <= allowed_targets(s)


def test_retired_is_final_and_terminal_states_do_not_fail() -> None:
    assert allowed_targets(State.RETIRED) == frozenset()
    for s in TERMINAL:
        assert State.FAILED not in allowed_targets(s)


def test_failed_products_can_be_claimed_again() -> None:
    assert can_transition(State.FAILED, State.CLAIMED)
    assert not can_transition(State.FAILED, State.CATALOGUED)
