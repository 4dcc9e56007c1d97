"""The fault tests (database restarts, chaos) each get a stack of their own: they restart and kill its
servers, which the session's shared stack must not suffer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ingest import stack as st
from tests import pg_restart
from tests.conftest import Stack


@pytest.fixture(scope="module")
def private() -> Iterator[tuple[Stack, st.StackConfig]]:
    with pg_restart.private_stack() as made:
        yield made


@pytest.fixture(scope="module")
def stack(private: tuple[Stack, st.StackConfig]) -> Stack:
    """This module's cluster in place of the session's (``make_world`` and ``migrated_db`` use it)."""
    return private[0]


@pytest.fixture(scope="module")
def cfg(private: tuple[Stack, st.StackConfig]) -> st.StackConfig:
    return private[1]


@pytest.fixture(scope="module")
def migrated_template() -> str:
    return st.PG_DATABASE  # ``stack.up`` migrated it, and nothing here connects to it
