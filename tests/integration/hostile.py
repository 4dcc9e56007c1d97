"""A real ``ingest serve`` under hostile clients: its worker processes, their memory, and the hostile
requests of the sweep that found the API's crashes and 500s (shared by the tests and the fuzz)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from ingest.adapters import pgstac
from tests.conftest import Stack
from tests.integration.api import (
    EUROPE,
    T0,
    ApiDatabase,
    ApiServer,
    api_database,
    api_server,
    hours,
    publish,
    stac_item,
)

GROWTH_MB = 50  # what one worker may grow by over a whole sweep or fuzz run (measured: under 5 MB)


@contextmanager
def small_catalogue(stack: Stack, template: str, count: int) -> Iterator[ApiDatabase]:
    """A database with one collection ``coll-a`` of ``count`` items a00, a01, ... (one a day, Europe)."""
    with api_database(stack, template) as d:
        publish(d.admin_dsn, "coll-a")
        when = [datetime(2024, 1, 1 + i, 10, tzinfo=UTC) for i in range(count)]
        pgstac.load_items(
            d.admin_dsn, [stac_item("coll-a", f"a{i:02d}", t, EUROPE, T0 + hours(i)) for i, t in enumerate(when)]
        )
        yield d


@contextmanager
def two_workers(db: ApiDatabase, logs: Path, **env: str) -> Iterator[ApiServer]:
    """``ingest serve`` with two worker processes, both serving."""
    with api_server(db.reader_dsn, logs, **{"INGEST_API_WORKERS": "2", **env}) as s:
        wait_for_workers(s, 2)
        yield s


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(p) for p in text)
    return found


def workers(server: ApiServer) -> list[int]:
    """PIDs of the server's worker processes (uvicorn's spawned children, not multiprocessing's helpers)."""
    out = []
    for pid in children(server.proc.pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"resource_tracker" not in cmd and b"forkserver" not in cmd:
            out.append(pid)
    return sorted(out)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def total_rss_mb(pids: list[int]) -> float:
    return sum(rss_mb(p) for p in pids)


def wait_for_workers(server: ApiServer, count: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = workers(server)
        if len(pids) == count:
            try:
                if requests.get(server.url + "/_mgmt/ping", timeout=2).status_code == 200:
                    return pids
            except requests.ConnectionError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"{count} workers not serving within {timeout}s: {workers(server)}\n{server.output()[-3000:]}")


@dataclass
class Hostile:
    """One request of the sweep: what it is, and the 4xx statuses it may get."""

    name: str
    method: str
    path: str
    params: dict[str, str] | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    statuses: tuple[int, ...] = (400,)

    def send(self, base: str, timeout: float = 30) -> requests.Response:
        return requests.request(
            self.method,
            base + self.path,
            params=self.params,
            data=self.body,
            headers=self.headers,
            timeout=timeout,
            allow_redirects=False,  # a Location follows the Host header: never leave 127.0.0.1
        )


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def post(name: str, body: bytes, headers: dict[str, str] | None = None, statuses: tuple[int, ...] = (400,)) -> Hostile:
    return Hostile(name, "POST", "/search", body=body, headers=headers or JSON, statuses=statuses)


JSON = {"Content-Type": "application/json"}
ITEMS = "/collections/coll-a/items"


def sweep() -> list[Hostile]:
    """The classes of the sweep that got 500s or took the API down (issue: hostile input), each once."""
    h: list[Hostile] = []
    for path in ("/search", ITEMS, "/collections"):
        h.append(Hostile(f"1600 parentheses on {path}", "GET", path, {"filter": "(" * 1600 + "1=1" + ")" * 1600}))
        h.append(Hostile(f"NOT x1000 on {path}", "GET", path, {"filter": "NOT " * 1000 + "id = 'x'"}))
    nested_not: str = '{"op":"=","args":[{"property":"id"},"x"]}'
    for _ in range(200):
        nested_not = '{"op":"not","args":[' + nested_not + "]}"
    h += [
        Hostile("CQL2-JSON not x200 on GET", "GET", "/search", {"filter-lang": "cql2-json", "filter": nested_not}),
        post("CQL2-JSON not x200 on POST", ('{"filter":' + nested_not + "}").encode(), JSON),
        post("sortby x1000 (POST)",
            _json({"sortby": [{"field": f"properties.f{i}", "direction": "asc"} for i in range(1000)]}), JSON,
        ),
        post("fields.include x10000", _json({"fields": {"include": [f"p{i}" for i in range(10_000)]}}), JSON),
    ]  # fmt: skip
    for where, params in [
        ("ids", {"ids": "a\x00b"}),
        ("collections", {"collections": "coll\x00"}),
        ("q", {"q": "a\x00"}),
        ("fields", {"fields": "id\x00"}),
        ("query", {"query": '{"x\x00":{"eq":1}}'}),
        ("filter", {"filter": "id = 'a\x00'"}),
        ("token", {"token": "next:\x00"}),
    ]:
        h.append(Hostile(f"NUL in {where}", "GET", "/collections" if where == "q" else "/search", params))
    h += [
        Hostile("NUL in a collection id", "GET", "/collections/coll%00a/items"),
        Hostile("NUL in an item id", "GET", "/collections/coll-a/items/a%0001"),
        post("NUL in a POST body", _json({"ids": ["a\x00"]}), JSON),
    ]
    for token in ("abc", "next:", "next:coll-a:zzz", "prev:nosuch:zz", "next:" + "a" * 100_000):
        h.append(Hostile(f"paging token {token[:12]!r}", "GET", "/search", {"token": token}, statuses=(400, 414)))
    for s in ("properties.", "+", "-", "properties", "a..b", "-properties."):
        h.append(Hostile(f"sortby={s!r}", "GET", "/search", {"sortby": s}))
    for f in (
        "nosuchfn(id)", "id nosuchop 1", "s_intersects(geometry)", "s_intersects(geometry, POLYGON((0 0, 1 1)))",
        "id LIKE '%\\'", "a_contains(id)", "t_before(datetime)", "id IN ()", "id BETWEEN 1", "casei(id) = 1 = 2",
    ):  # fmt: skip
        h.append(Hostile(f"filter {f!r}", "GET", "/search", {"filter": f}))
    h.append(Hostile("query nosuchop", "GET", "/search", {"query": '{"x":{"nosuchop":1}}'}))
    for q in ("' ( ! & :* <->", " ".join(["w"] * 3000), "a <-> b", ":*", "!!"):
        h.append(Hostile(f"q={q[:16]!r}", "GET", "/collections", {"q": q}))
    for b in ("nan,0,1,1", "inf,0,1,1", "1e999,0,1,1", "-Infinity,0,1,1", "0,0,1", "a,b,c,d"):
        h.append(Hostile(f"bbox={b}", "GET", "/search", {"bbox": b}))
    for lim in ("nan", "inf", "1e999", "-1", "0", "1.5", "x"):
        h.append(Hostile(f"limit={lim}", "GET", "/search", {"limit": lim}))
    h.append(post("limit NaN in POST", b'{"limit": NaN}', JSON))
    h.append(post("bbox 1e999 in POST", b'{"bbox": [1e999, 0, 1, 1]}', JSON))
    for d in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00/..", "x/y/z"):
        h.append(Hostile(f"datetime={d} (search)", "GET", "/search", {"datetime": d}))
        h.append(Hostile(f"datetime={d} (items)", "GET", ITEMS, {"datetime": d}))
        h.append(Hostile(f"since={d}", "GET", "/deleted-items", {"since": d}))
    h.append(
        Hostile("deleted-items bad token", "GET", "/deleted-items", {"since": "2024-01-01T00:00:00Z", "token": "!!"})
    )
    h.append(Hostile(
        "deleted-items token at the edge", "GET", "/deleted-items",
        {"since": "2024-01-01T00:00:00Z", "token": "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzE0OjAwIiwgImEiLCAiYiJd"},
    ))  # fmt: skip
    h += [
        Hostile("fields=,,,", "GET", "/search", {"fields": ",,,"}),
        Hostile("query not JSON", "GET", "/search", {"query": "{bad"}),
        Hostile("intersects not JSON", "GET", "/search", {"intersects": "{bad"}),
        Hostile("intersects not a geometry", "GET", "/search", {"intersects": "[1,2]"}),
        Hostile("cql2-json filter in text", "GET", "/search", {"filter-lang": "cql2-json", "filter": "id='a'"}),
        post("text/plain body", b"hello", {"Content-Type": "text/plain"}, (415,)),
        post("form body", b"a=b", {"Content-Type": "application/x-www-form-urlencoded"}, (415,)),
        post("multipart body", b"--x\r\n\r\n--x--", {"Content-Type": "multipart/form-data; boundary=x"}, (415,)),
        post("null body", b"null", JSON),
        post("list body", b"[]", JSON),
        post("number body", b"1", JSON),
        post("invalid UTF-8 body", b'{"ids": ["\xff"]}', JSON),
        post("deep JSON body", b"[" * 100_000 + b"]" * 100_000, JSON),
        post("body over the bound", b'{"ids": ["' + b"a" * 2_000_000 + b'"]}', JSON, (413,)),
        Hostile("query string over the bound", "GET", "/search", {"ids": "a" * 20_000}, statuses=(414,)),
        Hostile("bad percent-escape", "GET", "/search?ids=%ff%fe"),
    ]  # fmt: skip
    for page in ("/", "/healthz", "/search", "/collections"):
        h.append(
            Hostile(f"non-ASCII X-Forwarded-Host on {page}", "GET", page, headers={"X-Forwarded-Host": "hé.example"})
        )
    h.append(Hostile("non-host Host header", "GET", "/", headers={"Host": "a b/c"}))
    return h
