"""Guarded state changes and discovery inserts against the real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest.errors import StateConflict
from ingest.state import repo
from ingest.state.machine import State
from tests.conftest import Stack


def _p(pid: str, published: datetime | None = None) -> repo.DiscoveredProduct:
    return repo.DiscoveredProduct(
        pid,
        "sentinel-2-l2a",
        "local",
        f"http://x/{pid}.zip",
        "1220" + "0" * 64,
        10,
        published or datetime.now(UTC),
        None,
        {"type": "Point", "coordinates": [1, 2]},
    )


def test_discovered_once_with_one_event(stack: Stack) -> None:
    ids = [f"T_{uuid.uuid4().hex}" for _ in range(3)]
    with psycopg.connect(stack.dsn) as conn:
        assert sorted(repo.insert_discovered(conn, [_p(i) for i in ids])) == sorted(ids)
        # the same products again, plus one new: only the new one is inserted
        extra = f"T_{uuid.uuid4().hex}"
        assert repo.insert_discovered(conn, [_p(i) for i in [*ids, extra]]) == [extra]
        for i in ids:
            evs = repo.events_of(conn, i)
            assert [(e["from_state"], e["to_state"]) for e in evs] == [(None, "discovered")]
            assert repo.get_product(conn, i)["state"] == "discovered"  # type: ignore[index]


def test_guarded_transitions_and_conflicts(stack: Stack) -> None:
    pid = f"T_{uuid.uuid4().hex}"
    with psycopg.connect(stack.dsn) as conn:
        repo.insert_discovered(conn, [_p(pid)])
        repo.transition(conn, pid, State.DISCOVERED, State.CLAIMED, message="claimed by test")
        # a second claimer finds it claimed: conflict, nothing changes
        with pytest.raises(StateConflict, match="expected discovered, found claimed") as err:
            repo.transition(conn, pid, State.DISCOVERED, State.CLAIMED)
        assert pid in str(err.value)
        repo.transition(
            conn,
            pid,
            State.CLAIMED,
            State.FAILED,
            message="boom",
            set_fields={
                "attempts": 1,
                "last_error": "boom",
                "next_attempt_at": datetime.now(UTC) + timedelta(minutes=1),
            },
        )
        row = repo.get_product(conn, pid)
        assert row is not None and (row["state"], row["attempts"], row["last_error"]) == ("failed", 1, "boom")
        evs = repo.events_of(conn, pid)
        assert [(e["from_state"], e["to_state"]) for e in evs] == [
            (None, "discovered"),
            ("discovered", "claimed"),
            ("claimed", "failed"),
        ]
        assert evs[1]["worker"] == repo.WORKER
        with pytest.raises(ValueError, match="not in the state machine"):
            repo.transition(conn, pid, State.FAILED, State.CATALOGUED)
        with pytest.raises(StateConflict, match="no such product"):
            repo.transition(conn, "T_nope", State.DISCOVERED, State.CLAIMED)


def test_watermark_only_moves_forward(stack: Stack) -> None:
    coll = f"c-{uuid.uuid4().hex[:8]}"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        assert repo.get_watermark(conn, coll) is None
        repo.advance_watermark(conn, coll, "local", t0, 5)
        repo.advance_watermark(conn, coll, "local", t0 - timedelta(days=3), 1)
        assert repo.get_watermark(conn, coll) == t0
        repo.advance_watermark(conn, coll, "local", t0 + timedelta(hours=1), 2)
        assert repo.get_watermark(conn, coll) == t0 + timedelta(hours=1)


def test_harvest_and_backfill_share_one_definition_of_due(stack: Stack) -> None:
    ids = {name: f"T_{name}_{uuid.uuid4().hex[:8]}" for name in ("new", "due", "later", "invalid", "claimed", "done")}
    now = datetime.now(UTC)
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        repo.insert_discovered(conn, [_p(i) for i in ids.values()])
        for name, retry_at in (("due", now - timedelta(seconds=1)), ("later", now + timedelta(hours=1))):
            repo.transition(conn, ids[name], State.DISCOVERED, State.CLAIMED)
            repo.transition(conn, ids[name], State.CLAIMED, State.FAILED, set_fields={"next_attempt_at": retry_at})
        repo.transition(conn, ids["invalid"], State.DISCOVERED, State.CLAIMED)
        repo.transition(conn, ids["invalid"], State.CLAIMED, State.INVALID)
        repo.transition(conn, ids["claimed"], State.DISCOVERED, State.CLAIMED)
        for step in (State.CLAIMED, State.DOWNLOADED, State.CONVERTED, State.UPLOADED, State.CATALOGUED):
            current = repo.get_product(conn, ids["done"])
            assert current is not None
            repo.transition(conn, ids["done"], State(current["state"]), step)
        states = repo.states_of(conn, [*ids.values(), "T_unknown"])
        due = {name for name, pid in ids.items() if states[pid][1]}
        assert due == {"new", "due"} and "T_unknown" not in states
        listed = set(repo.due_products(conn, "sentinel-2-l2a", limit=100_000))
        assert {name for name, pid in ids.items() if pid in listed} == due
