"""Registration's pure parts: what a target is sent, what needs sending, where a push reads from,
and the target settings; and the client's retry decisions against a local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr, ValidationError

from ingest.errors import UpstreamUnavailable
from ingest.federation import plan
from ingest.federation.client import ATTEMPTS, ItemRejected, Upstream
from ingest.settings import RegisterTarget, Settings

ITEM: dict[str, Any] = {
    "type": "Feature", "stac_version": "1.1.0", "id": "S2A_X", "collection": "sentinel-2-l2a",
    "geometry": None, "properties": {"datetime": "2026-03-01T00:00:00Z", "updated": "2026-03-02T00:00:00Z"},
    "assets": {"B04": {"href": "s3://eo-catalogue/sentinel-2-l2a/S2A_X/B04.tif"},
               "elsewhere": {"href": "https://example.org/x.tif"}},
    "links": [{"rel": "self", "href": "http://ours/x"}, {"rel": "license", "href": "https://sentinel.esa.int/tc"}],
}  # fmt: skip


def test_the_public_form_drops_structural_links_and_keeps_the_rest() -> None:
    out = plan.public_item(ITEM, plan.PublicForm(None, "eo-catalogue", ()), protected=False)
    assert out["links"] == [{"rel": "license", "href": "https://sentinel.esa.int/tc"}]
    assert out["assets"] == ITEM["assets"] and ITEM["links"][0]["rel"] == "self"  # the input is left alone


def test_with_the_gateway_on_pushed_hrefs_are_the_gateways_under_the_public_url() -> None:
    form = plan.PublicForm(
        "https://stac.example.org", "eo-catalogue", ("https://aai.example/.well-known/openid-configuration",)
    )
    out = plan.public_item(ITEM, form, protected=True)
    assert out["assets"]["B04"]["href"] == "https://stac.example.org/collections/sentinel-2-l2a/items/S2A_X/assets/B04"
    assert out["assets"]["B04"]["auth:refs"] == ["oidc"]
    assert out["assets"]["elsewhere"]["href"] == "https://example.org/x.tif"  # not ours: as it is
    assert out["properties"]["auth:schemes"]["oidc"]["type"] == "openIdConnect"


def test_digest_is_of_the_content_not_of_key_order() -> None:
    shuffled = dict(reversed(list(ITEM.items())))
    assert plan.digest(shuffled) == plan.digest(ITEM)
    assert plan.digest({**ITEM, "bbox": [0, 0, 1, 1]}) != plan.digest(ITEM)


def test_to_send_skips_what_the_target_holds_as_it_is() -> None:
    other = {**ITEM, "id": "S2A_Y"}
    held = {"S2A_X": plan.digest(ITEM), "S2A_Y": "stale"}
    assert [d["id"] for d, _ in plan.to_send([ITEM, other], held)] == ["S2A_Y"]
    assert [d["id"] for d, _ in plan.to_send([ITEM, other], {})] == ["S2A_X", "S2A_Y"]


def test_a_push_reads_from_the_cursor_less_the_settle_window() -> None:
    cursor = datetime(2026, 12, 1, tzinfo=UTC)
    assert plan.read_from(cursor, 60) == cursor - timedelta(seconds=60)
    assert plan.read_from(None, 60) is None


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ({"name": "Bad Name", "url": "https://x.example"}, "name"),
        ({"name": "n", "url": "ftp://x.example"}, "must be an http:// or https:// URL"),
        ({"name": "n", "url": "https://x.example", "token_url": "https://aai/token"}, "needs client_id and client_sec"),
        ({"name": "n", "url": "https://x.example", "token": "t", "token_url": "https://aai/token", "client_id": "c",
          "client_secret": "s"}, "not both"),
        ({"name": "n", "url": "https://x.example", "tokn": "t"}, "Extra inputs"),
    ],
)  # fmt: skip
def test_a_wrong_target_is_refused(target: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        RegisterTarget.model_validate(target)


def test_target_secrets_are_secrets_and_names_unique() -> None:
    t = [
        {
            "name": "a",
            "url": "https://x.example/",
            "token_url": "https://aai/token",
            "client_id": "c",
            "client_secret": "s3",
        }
    ]
    s = Settings(_env_file=None, register_targets=t)  # type: ignore[call-arg,arg-type]
    assert s.register_targets[0].url == "https://x.example"
    assert SecretStr("s3") in s.secrets() and "s3" not in repr(s.register_targets[0])
    with pytest.raises(ValidationError, match="unique"):
        Settings(_env_file=None, register_targets=t * 2)  # type: ignore[call-arg,arg-type]


# ----------------------------------------------------------------------------- the client's decisions


class _Handler(BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    seen: ClassVar[list[tuple[str, str, str | None]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization")))
        status = type(self).answers.pop(0) if type(self).answers else 200
        body = json.dumps({"code": "x", "description": f"said {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.answers, _Handler.seen = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _client(url: str) -> tuple[Upstream, list[float]]:
    waits: list[float] = []
    target = RegisterTarget(name="t", url=url, token=SecretStr("static-token"))
    return Upstream(target, sleep=waits.append), waits


def test_a_passing_failure_is_retried_with_growing_waits(server: str) -> None:
    _Handler.answers = [503, 502]
    up, waits = _client(server)
    up.put_item("c", ITEM)
    assert [s[0] for s in _Handler.seen] == ["POST"] * 3 and waits == [1.0, 2.0]
    assert _Handler.seen[0][2] == "Bearer static-token"


def test_an_item_already_there_is_replaced(server: str) -> None:
    _Handler.answers = [409, 200]
    up, _ = _client(server)
    up.put_item("c", ITEM)
    assert [(m, p) for m, p, _ in _Handler.seen] == [
        ("POST", "/collections/c/items"),
        ("PUT", "/collections/c/items/S2A_X"),
    ]


def test_a_refused_document_is_rejected_with_the_targets_words(server: str) -> None:
    _Handler.answers = [400]
    up, waits = _client(server)
    with pytest.raises(ItemRejected, match="HTTP 400: said 400"):
        up.put_item("c", ITEM)
    assert waits == []  # never retried: the same document gets the same answer


def test_a_target_that_stays_away_is_unavailable_after_the_attempts(server: str) -> None:
    _Handler.answers = [503] * ATTEMPTS
    up, waits = _client(server)
    with pytest.raises(UpstreamUnavailable, match=f"HTTP 503 after {ATTEMPTS} tries"):
        up.delete_item("c", "S2A_X")
    assert len(waits) == ATTEMPTS - 1


def test_a_deletion_of_what_is_not_there_is_done(server: str) -> None:
    _Handler.answers = [404]
    up, _ = _client(server)
    up.delete_item("c", "S2A_X")
    assert _Handler.seen[0][:2] == ("DELETE", "/collections/c/items/S2A_X")
