"""Shared by the benchmark scripts: a throw-away local stack on free ports."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ingest import stack as st


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def throwaway_stack(*, durable: bool = False) -> Iterator[dict[str, str]]:
    """Start PostgreSQL+PostGIS+pgstac and SeaweedFS (S3) in a temporary directory; yields the INGEST_* settings.
    ``durable``: fsync on, for figures that include commits to disk."""
    root = Path(tempfile.mkdtemp(prefix="bench-stack-", dir="/tmp"))
    os.chmod(root, 0o755)  # noqa: S103 - the postgres OS user must traverse it
    cfg = st.StackConfig(root=root, pg_port=free_port(), s3_port=free_port(), durable=durable)
    try:
        st.up(cfg)
        yield st.read_env(cfg)
    finally:
        st.down(cfg)
        shutil.rmtree(root, ignore_errors=True)
