"""Hostile operator files (collections/*.yaml): each is refused with one line naming the file, the field
and the line, quickly and in bounded memory.

The hostile files are loaded in one child process under an address-space limit, so that a regression
(an alias bomb expanding again) fails the test instead of taking the machine's memory, and so that the
child's peak RSS measures the loader alone."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ingest import collections as col
from ingest import yamlfile
from ingest.errors import CollectionSpecError
from ingest.yamlfile import Limits, YamlFileError, load_mapping
from tests.conftest import ROOT, run_cli

S1 = (ROOT / "collections" / "sentinel-1-grd.yaml").read_text(encoding="utf-8")
SUMMARIES, SOURCE, HARVEST = "  summaries:\n", "source:\n", "harvest:\n"
MiB = 1 << 20
RSS_GROWTH_MB = 40  # the loader's own bound is ~30 MB (MAX_NODES values); a bomb used to take 5.8 GB
SECONDS = 5.0  # the slowest case, 50,000 values, takes ~1.7 s; the bomb used to take 88 s


def _line_of(needle: str) -> int:
    """The line of the shipped S1 file on which ``needle`` starts."""
    return S1.count("\n", 0, S1.index(needle)) + 1


def _bomb(indent: str) -> str:
    """Billion laughs: 9 levels of 9 aliases, 387 million strings once expanded."""
    lines = [f'{indent}lol0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n']
    lines += [f"{indent}lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)]
    return "".join(lines)


File = Callable[[], tuple[bytes, int]]  # a hostile file's bytes, and the line its hostile part starts on


def _inserted(after: str, text: str) -> File:
    """The shipped S1 file with ``text`` inserted after the line ``after``."""
    at = S1.index(after) + len(after)
    return lambda: ((S1[:at] + text + S1[at:]).encode(), S1.count("\n", 0, at) + 1)


def _replaced(old: str, new: bytes) -> File:
    head, _, tail = S1.partition(old)
    return lambda: (head.encode() + new + tail.encode(), _line_of(old))


def _appended(text: str) -> File:
    return lambda: ((S1 + text).encode(), S1.count("\n") + 1)


def _whole(data: bytes) -> File:
    return lambda: (data, 1)


def _padded(size: int) -> str:
    return S1 + "#" * (size - len(S1.encode()) - 1) + "\n"


def _keywords(count: int) -> File:
    return _inserted("  keywords:\n", "".join(f"  - keyword-{i}\n" for i in range(count)))


@dataclass(frozen=True)
class Case:
    id: str
    file: File
    expect: str  # regex for the message after "FILE: "; LINE stands for the line the hostile part starts on
    max_bytes: int | None = None  # given: load_mapping with this size bound (YamlFileError), else load_spec


AT = r" \(line LINE, column \d+\)"
ANCHORS = r"anchors and aliases are not allowed in an operator file; write the value out" + AT
DEEP = r"\.\.\.: nested deeper than 32 levels" + AT
SIZE = r"\d+ bytes, more than the 1048576 allowed"
TOO_MANY_KEYWORDS = (
    rf"stac\.keywords: more than 10000 items in a list \(line {_line_of('  keywords:') + 10001}, column 5\)"
)
NOT_A_STRING = r"reads as (a number|a boolean|null|a date), not a string; quote it" + AT
CASES = [
    Case(
        "alias-bomb-in-summaries", _inserted(SUMMARIES, _bomb("    ")), r"stac\.summaries\.lol0: anchor &a0: " + ANCHORS
    ),
    Case(
        "alias-bomb-in-filters",
        _inserted(SOURCE, "  filters:\n" + _bomb("    ")),
        r"source\.filters\.lol0: anchor &a0: anchors and aliases are not allowed .*",
    ),
    Case("alias-bomb-at-top-level", _appended(_bomb("")), r"lol0: anchor &a0: " + ANCHORS),
    Case(
        "alias-bomb-in-a-list",
        _inserted(SUMMARIES, "    p: [&x [a, b], *x, *x]\n"),
        r"stac\.summaries\.p\[0\]: anchor &x: .*",
    ),
    Case("anchor-on-a-key", _inserted(SUMMARIES, "    ? &k lol\n    : 1\n"), r"stac\.summaries: anchor &k: " + ANCHORS),
    Case("anchor-alone", _replaced("title: Sentinel", b"title: &t Sentinel"), r"stac\.title: anchor &t: " + ANCHORS),
    Case(
        "alias-alone",
        _inserted(SUMMARIES, "    p: *nowhere\n"),
        r"stac\.summaries\.p: alias \*nowhere: aliases are .*" + AT,
    ),
    Case(
        "merge-key",
        _inserted(HARVEST, "  <<: {enabled: true}\n"),
        r"harvest: merge key '<<': merge keys are not .*" + AT,
    ),
    Case(
        "merge-key-and-alias",
        _inserted(SUMMARIES, "    b: &b {a: 1}\n    c:\n      <<: *b\n"),
        r"stac\.summaries\.b: anchor &b: .*",
    ),
    Case("duplicate-key-top-level", _appended("id: sentinel-1-grd\n"), r"id: duplicate key \(first at line 3\)" + AT),
    Case(
        "duplicate-key-nested",
        _inserted("    - sentinel-1c\n", "    platform: [sentinel-9]\n"),
        rf"stac\.summaries\.platform: duplicate key \(first at line {_line_of('    platform:')}\)" + AT,
    ),
    Case(
        "duplicate-key-quoted",
        _inserted(SUMMARIES, "    'platform': [x]\n"),
        r"stac\.summaries\.platform: duplicate key .*",
    ),
    Case(
        "duplicate-key-in-a-list-item",
        _inserted("  - name: ESA\n", "    name: NASA\n"),
        r"stac\.providers\[0\]\.name: duplicate .*" + AT,
    ),
    Case(
        "nested-1000-[",
        _inserted(SOURCE, "  filters: " + "[" * 1000 + "]" * 1000 + "\n"),
        r"source\.filters(\[0\]){6}" + DEEP,
    ),
    Case(
        "nested-100000-[", _inserted(SOURCE, "  filters: " + "[" * 100_000 + "\n"), r"source\.filters(\[0\]){6}" + DEEP
    ),
    Case(
        "nested-1000-{",
        _inserted(SOURCE, "  filters: " + "{a: " * 1000 + "}" * 1000 + "\n"),
        r"source\.filters(\.a){6}" + DEEP,
    ),
    Case(
        "nested-100000-{", _inserted(SOURCE, "  filters: " + "{a: " * 100_000 + "\n"), r"source\.filters(\.a){6}" + DEEP
    ),
    Case(
        "nested-mixed",
        _inserted(SOURCE, "  filters: " + "[{a: " * 50_000 + "\n"),
        r"source\.filters\[0\]\.a\[0\]\.a\[0\]\.a" + DEEP,
    ),
    Case(
        "nested-block-style",
        _inserted(
            SOURCE, "  filters:\n" + "".join(f"{'  ' * (i + 2)}k{i}:\n" for i in range(40)) + " " * 84 + "k: 1\n"
        ),
        r"source\.filters\.k0\.k1\.k2\.k3\.k4\.k5\.\.\.: nested deeper than 32 levels \(line \d+, column \d+\)",
    ),
    Case("size-50-MB", lambda: (_padded(50 * MiB).encode(), 1), SIZE),
    Case("size-just-above-the-bound", lambda: (_padded(MiB + 1).encode(), 1), SIZE),
    Case("million-keywords", _keywords(1_000_000), SIZE),
    Case("million-keywords-past-the-size-bound", _keywords(1_000_000), TOO_MANY_KEYWORDS, max_bytes=64 * MiB),
    Case("too-many-keywords-within-the-size-bound", _keywords(20_000), TOO_MANY_KEYWORDS),
    Case(
        "too-many-values",
        _inserted(SUMMARIES, "".join(f"    k{i}: [{', '.join(['1'] * 999)}]\n" for i in range(60))),
        r"stac\.summaries\.k\d+\[\d+\]: more than 50000 values in the file \(line \d+, column \d+\)",
    ),
    Case("key-int", _inserted(SUMMARIES, "    1: one\n"), r"stac\.summaries: key '1' " + NOT_A_STRING),
    Case("key-bool", _inserted(SUMMARIES, "    on: x\n"), r"stac\.summaries: key 'on' " + NOT_A_STRING),
    Case("key-null", _inserted(SUMMARIES, "    ~: x\n"), r"stac\.summaries: key '~' " + NOT_A_STRING),
    Case("key-date", _inserted(SUMMARIES, "    2024-01-01: x\n"), r"stac\.summaries: key '2024-01-01' " + NOT_A_STRING),
    Case(
        "key-a-list",
        _inserted(SUMMARIES, "    ? [a, b]\n    : x\n"),
        r"stac\.summaries: a list or mapping as a key; .*" + AT,
    ),
    Case(
        "key-a-flow-list",
        _inserted(SUMMARIES, "    p: {[a]: b}\n"),
        r"stac\.summaries\.p: a list or mapping as a key; .*" + AT,
    ),
    Case(
        "python-tag",
        _inserted(SUMMARIES, "    p: !!python/object/apply:os.system [echo owned]\n"),
        r"stac\.summaries\.p: tag 'tag:yaml\.org,2002:python/object/apply:os\.system': explicit tags are not .*" + AT,
    ),
    Case(
        "binary-tag",
        _inserted(SUMMARIES, "    p: !!binary aGVsbG8=\n"),
        r"stac\.summaries\.p: tag 'tag:yaml\.org,2002:binary': .*",
    ),
    Case(
        "nul-byte",
        _replaced("Level-1 GRD\n", b"Level-1\x00GRD\n"),
        r"line LINE not valid YAML: control character U\+0000 at column 28",
    ),
    Case("binary-garbage", _whole(bytes(range(256)) * 64), r"line 2 not valid YAML: not UTF-8 \(byte 0x80\)"),
    Case(
        "invalid-utf-8",
        _replaced("Level-1 GRD\n", b"Level-1 \xff\n"),
        r"line LINE not valid YAML: not UTF-8 \(byte 0xff\)",
    ),
    Case("utf-16", _whole("id: x\n".encode("utf-16")), r"line 1 not valid YAML: not UTF-8 \(byte 0xff\)"),
    Case("a-list-not-a-mapping", _whole(b"- id: x\n- id: y\n"), r"expected a mapping at the top level, got a list"),
    Case("a-scalar-not-a-mapping", _whole(b"just some text\n"), r"expected a mapping at the top level, got a scalar"),
    Case("empty-file", _whole(b""), r"expected a mapping at the top level, got an empty file"),
    Case("comments-only", _whole(b"# nothing here\n"), r"expected a mapping at the top level, got an empty file"),
    Case(
        "two-documents",
        _appended("---\nid: x\n"),
        r"line LINE not valid YAML: expected a single document in the stream, but .*",
    ),
    Case(
        "bad-date",
        _replaced("start: '2014-10-03'", b"start: 2014-13-45"),
        r"stac\.start: '2014-13-45' reads as a date but is not a valid one; quote it" + AT,
    ),
    Case(
        "bad-number",
        _inserted(SUMMARIES, "    n: 0x_\n"),
        r"stac\.summaries\.n: '0x_' reads as a number but is not a valid one; .*",
    ),
    Case(
        "huge-number",
        _inserted(SUMMARIES, f"    n: {'9' * 5000}\n"),
        r"stac\.summaries\.n: a number of 5000 characters; .*" + AT,
    ),
    Case(
        "unclosed-list",
        _inserted(SUMMARIES, "    p: [a, b\n"),
        r"line \d+ not valid YAML: .* \(in stac\.summaries\.p\)",
    ),
]

# Loads every file given on the command line (a JSON list of [path, max_bytes]) and prints, per file,
# what was raised, how long it took and how far the peak RSS rose over the child's start.
_CHILD = """
import json, resource, sys, time
from pathlib import Path
from ingest.collections import load_spec
from ingest.yamlfile import Limits, load_mapping

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

base = peak_mb()
out = []
for path, max_bytes in json.loads(sys.argv[1]):
    start = time.perf_counter()
    try:
        load_mapping(Path(path), Limits(max_bytes=max_bytes)) if max_bytes else load_spec(Path(path))
        raised, message = None, ""
    except BaseException as exc:
        raised, message = f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc)
    out.append({"raised": raised, "message": message, "seconds": time.perf_counter() - start,
                "rss_growth_mb": peak_mb() - base})
print(json.dumps(out))
"""


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str, dict[str, Any]]]:
    """Every case's file, expected message regex and the child's result."""
    d = tmp_path_factory.mktemp("hostile")
    files: dict[str, tuple[Path, str]] = {}
    for case in CASES:
        data, line = case.file()
        path = d / case.id / "sentinel-1-grd.yaml"
        path.parent.mkdir()
        path.write_bytes(data)
        files[case.id] = (path, case.expect.replace("LINE", str(line)))
    spec = json.dumps([[str(files[c.id][0]), c.max_bytes] for c in CASES])
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, spec],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_address_space,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    return {c.id: (*files[c.id], r) for c, r in zip(CASES, json.loads(child.stdout), strict=True)}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_file_is_refused_in_one_line(
    case: Case, results: dict[str, tuple[Path, str, dict[str, Any]]]
) -> None:
    path, pattern, r = results[case.id]
    expected = "ingest.yamlfile.YamlFileError" if case.max_bytes else "ingest.errors.CollectionSpecError"
    assert r["raised"] == expected, r["message"][:500]
    message: str = r["message"]
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{path}: "), message[:500]
    assert re.fullmatch(pattern, message.removeprefix(f"{path}: ")), message[:500]
    assert r["seconds"] < SECONDS, r
    assert r["rss_growth_mb"] < RSS_GROWTH_MB, r


def test_shipped_files_are_within_every_bound() -> None:
    # none of them needs more than a small part of a bound: 1,737 values and 22 KB at most
    for path in sorted((ROOT / "collections").glob("*.yaml")):
        assert load_mapping(path, Limits(max_bytes=MiB // 16, max_nodes=5000, max_items=100, max_depth=8))


def test_a_file_of_exactly_the_size_bound_loads(tmp_path: Path) -> None:
    path = tmp_path / "sentinel-1-grd.yaml"
    path.write_text(_padded(yamlfile.MAX_BYTES))
    assert path.stat().st_size == yamlfile.MAX_BYTES
    assert col.load_spec(path).id == "sentinel-1-grd"


@pytest.mark.parametrize(("depth", "ok"), [(yamlfile.MAX_DEPTH, True), (yamlfile.MAX_DEPTH + 1, False)])
def test_the_depth_bound_is_exact(tmp_path: Path, depth: int, ok: bool) -> None:
    path = tmp_path / "deep.yaml"
    lists = depth - 1  # the top-level mapping is the first level
    path.write_text("a: " + "[" * lists + "]" * lists + "\n")
    if ok:
        expected: list[Any] = []
        for _ in range(lists - 1):
            expected = [expected]
        assert load_mapping(path) == {"a": expected}
    else:
        with pytest.raises(YamlFileError, match=r"deep\.yaml: a\[0\].*: nested deeper than 32 levels \(line 1,"):
            load_mapping(path)


def test_what_is_accepted_is_what_yaml_means(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("a: [1, 2.5, true, null, '1', 2024-01-02]\nb: {c: 'x', \"d\": y}\n")
    assert load_mapping(path) == {"a": [1, 2.5, True, None, "1", date(2024, 1, 2)], "b": {"c": "x", "d": "y"}}


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading without O_NONBLOCK would wait for a writer forever
    for path in (fifo, tmp_path):
        with pytest.raises(CollectionSpecError, match=rf"^{re.escape(str(path))}: not a regular file$"):
            col.load_spec(path)
    with pytest.raises(CollectionSpecError, match=r"no such collection file"):
        col.load_spec(tmp_path / "missing.yaml")


def test_validation_errors_are_capped_to_a_readable_line(tmp_path: Path) -> None:
    path = tmp_path / "sentinel-1-grd.yaml"
    path.write_bytes(_inserted("  keywords:\n", "".join(f"  - {i}\n" for i in range(500)))()[0])
    with pytest.raises(CollectionSpecError) as err:
        col.load_spec(path)
    assert str(err.value).count("Input should be a valid string") == 5 and "(and 495 more)" in str(err.value)


def test_validate_cli_refuses_a_bomb_in_one_line(tmp_path: Path) -> None:
    bomb = tmp_path / "BOMB.yaml"
    bomb.write_bytes(_inserted(SUMMARIES, _bomb("    "))()[0])
    r = run_cli("collections", "validate", str(bomb), timeout=30)
    assert r.returncode == 78
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bomb}: stac.summaries.lol0: anchor &a0"), r.stderr
