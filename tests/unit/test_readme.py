"""The README's configuration table is the operator's reference: it must name every setting."""

from __future__ import annotations

import re

from ingest.settings import ENV_PREFIX, Settings
from tests.conftest import ROOT


def test_every_setting_is_documented_and_nothing_else() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`(INGEST_[A-Z0-9_]+)`", readme))
    settings = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from the README"
    assert documented - settings == set(), "the README names settings that do not exist"
