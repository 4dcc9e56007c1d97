"""Zip archives as a streaming writer makes them, for the acquisition tests."""

from __future__ import annotations

import io


class Unseekable(io.RawIOBase):
    """What zipfile writes to when it cannot seek back: data descriptors after each member."""

    def __init__(self) -> None:
        self.out = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        return self.out.write(b)
