"""Run the ingest schema's alembic migrations from code (stack up, tests, the migrate service)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from alembic import command
from ingest.state.db import sqlalchemy_url

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(dsn: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["url"] = sqlalchemy_url(dsn=dsn)
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(dsn: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(dsn), revision)


def downgrade(dsn: str, revision: str) -> None:
    command.downgrade(alembic_config(dsn), revision)
