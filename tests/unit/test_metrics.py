"""The metrics endpoint's HTTP side and its failure modes (the integration test scrapes real processes)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ingest import metrics
from ingest.errors import ConfigError
from ingest.settings import Settings
from ingest.state.machine import State
from tests.conftest import free_port


def settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


@pytest.fixture
def endpoint() -> Iterator[metrics.Endpoint]:
    down: dict[str, bool] = {"db": True}
    ep = metrics.Endpoint(
        "127.0.0.1",
        free_port(),
        live={"loop": lambda: None},
        ready={"database": lambda: "database db:5432/x unreachable: refused" if down["db"] else None},
    ).start()
    try:
        yield ep
    finally:
        ep.close()


def test_livez_readyz_and_metrics(endpoint: metrics.Endpoint) -> None:
    base = f"http://127.0.0.1:{endpoint.port}"
    metrics.stage_finished("c-unit", "download", 1.5, downloaded=1000)
    assert requests.get(base + "/livez", timeout=5).status_code == 200  # liveness ignores the database
    r = requests.get(base + "/readyz", timeout=5)
    assert r.status_code == 503 and r.text == "database: database db:5432/x unreachable: refused\n"
    r = requests.get(base + "/metrics", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(r.text)
               for s in f.samples}  # fmt: skip
    assert samples[("ingest_downloaded_bytes_total", (("collection", "c-unit"),))] >= 1000
    assert samples[("ingest_stage_duration_seconds_count", (("collection", "c-unit"), ("stage", "download")))] >= 1
    assert requests.get(base + "/nothing", timeout=5).status_code == 404


def test_a_check_that_raises_is_a_failed_check() -> None:
    def broken() -> str | None:
        raise RuntimeError("boom")

    assert metrics.run_checks({"a": lambda: None, "b": broken}) == {"b": "RuntimeError: boom"}


def test_port_zero_is_off_and_a_taken_port_is_a_clear_error() -> None:
    assert metrics.serve(settings(metrics_port=0), "worker") is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*INGEST_METRICS_PORT"):
            metrics.Endpoint("127.0.0.1", port).start()


def test_site_gauges_say_the_database_is_down_instead_of_failing_the_scrape() -> None:
    dsn = f"postgresql://u:secret-pw-123@127.0.0.1:{free_port()}/nodb"
    collector = metrics.DatabaseCollector(
        settings(database_url=dsn, db_connect_timeout_s=1), tuple(s.value for s in State)
    )
    families = list(collector.collect())
    assert [f.name for f in families] == ["ingest_database_up"]
    assert families[0].samples[0].value == 0
