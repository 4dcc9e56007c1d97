"""The scheduler's plan: which jobs, on which triggers, running what. Pure: no database, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ingest import collections as col
from ingest.collections import CollectionSpec
from ingest.daemon.leader import lock_key
from ingest.daemon.scheduler import first_runs, jobs_for, run_audit, run_harvest, run_reconcile, run_retention
from ingest.settings import Settings
from tests.conftest import ROOT

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None, reconcile_interval_s=45)  # type: ignore[call-arg]


@pytest.fixture
def specs() -> dict[str, CollectionSpec]:
    return col.load_all(ROOT / "collections")


def with_harvest(spec: CollectionSpec, **harvest: object) -> CollectionSpec:
    return spec.model_copy(update={"harvest": spec.harvest.model_copy(update=harvest)})


def test_real_collections_give_one_hourly_harvest_and_a_daily_audit_each_plus_the_reconciler(
    specs: dict[str, CollectionSpec], settings: Settings
) -> None:
    jobs = jobs_for(specs, settings)
    n = len(specs)
    assert n == 11 and {"sentinel-1-grd", "sentinel-2-l2a", "sentinel-3-olci-l1-efr"} <= set(specs)
    assert [j.id for j in jobs] == [f"harvest:{c}" for c in sorted(specs)] + [f"audit:{c}" for c in sorted(specs)] + [
        "reconcile"
    ]
    for job in jobs[:n]:
        assert job.kind == "harvest" and job.trigger == "interval"
        assert job.trigger_args == {"seconds": 3600.0}
        assert job.func is run_harvest and job.args == (settings, job.collection)
        assert job.id == f"harvest:{job.collection}"
        assert job.misfire_grace_s == 3600
        assert job.describe() == "every 1:00:00"
    assert not any(j.kind == "retention" for j in jobs)  # the shipped policies are off until an operator sets one
    for job in jobs[n : 2 * n]:  # audits are on by default: what they find shows nowhere else
        assert (job.kind, job.trigger, dict(job.trigger_args)) == ("audit", "cron", {"expr": "15 4 * * *"})
        assert job.func is run_audit and job.args == (settings, job.collection) and job.id == f"audit:{job.collection}"


def test_an_enabled_retention_policy_gets_a_cron_job_on_its_schedule(
    specs: dict[str, CollectionSpec], settings: Settings
) -> None:
    spec = specs["sentinel-2-l1c"]
    retention = spec.retention.model_copy(update={"enabled": True, "schedule": "15 2 * * 0"})
    specs = {**specs, spec.id: spec.model_copy(update={"retention": retention})}
    jobs = {j.id: j for j in jobs_for(specs, settings)}
    job = jobs["retention:sentinel-2-l1c"]
    assert (job.kind, job.trigger, dict(job.trigger_args)) == ("retention", "cron", {"expr": "15 2 * * 0"})
    assert job.func is run_retention and job.args == (settings, "sentinel-2-l1c")
    assert [j for j in jobs if j.startswith("retention:")] == ["retention:sentinel-2-l1c"]
    fire = job.make_trigger().get_next_fire_time(None, NOW)
    assert (fire.weekday(), fire.hour, fire.minute) == (6, 2, 15)


def test_an_audit_follows_its_schedule_and_can_be_turned_off(
    specs: dict[str, CollectionSpec], settings: Settings
) -> None:
    s1 = specs["sentinel-1-grd"]
    specs["sentinel-1-grd"] = s1.model_copy(update={"audit": s1.audit.model_copy(update={"schedule": "0 5 * * 0"})})
    s2 = specs["sentinel-2-l1c"]
    specs["sentinel-2-l1c"] = s2.model_copy(update={"audit": s2.audit.model_copy(update={"enabled": False})})
    audits = {j.id: j for j in jobs_for(specs, settings) if j.kind == "audit"}
    assert set(audits) == {f"audit:{c}" for c in specs if c != "sentinel-2-l1c"}
    fire = audits["audit:sentinel-1-grd"].make_trigger().get_next_fire_time(None, NOW)
    assert (fire.weekday(), fire.hour, fire.minute) == (6, 5, 0)  # 0 = Sunday, as cron means it


def test_reconcile_job_follows_the_setting_and_sees_every_collection(
    specs: dict[str, CollectionSpec], settings: Settings
) -> None:
    job = jobs_for(specs, settings)[-1]
    assert (job.id, job.kind, job.trigger, dict(job.trigger_args)) == (
        "reconcile", "reconcile", "interval", {"seconds": 45},
    )  # fmt: skip
    assert job.func is run_reconcile and job.args[0] is settings and set(job.args[1]) == set(specs)
    assert job.describe() == "every 45 s" and job.misfire_grace_s == 45
    trigger = job.make_trigger(NOW)
    assert isinstance(trigger, IntervalTrigger)
    assert trigger.get_next_fire_time(None, NOW) == NOW
    assert trigger.get_next_fire_time(NOW, NOW) == NOW + timedelta(seconds=45)


def test_cron_harvest_gets_a_utc_cron_trigger(specs: dict[str, CollectionSpec], settings: Settings) -> None:
    specs["sentinel-2-l2a"] = with_harvest(specs["sentinel-2-l2a"], cron="15 */6 * * *", interval=None)
    job = next(j for j in jobs_for(specs, settings) if j.collection == "sentinel-2-l2a")
    assert (job.trigger, dict(job.trigger_args)) == ("cron", {"expr": "15 */6 * * *"})
    assert job.describe() == "cron '15 */6 * * *' (UTC)"
    trigger = job.make_trigger()
    assert isinstance(trigger, CronTrigger) and str(trigger.timezone) == "UTC"
    assert trigger.get_next_fire_time(None, NOW) == datetime(2026, 3, 1, 12, 15, tzinfo=UTC)


def test_short_interval_and_disabled_harvest(specs: dict[str, CollectionSpec], settings: Settings) -> None:
    specs["sentinel-1-grd"] = with_harvest(specs["sentinel-1-grd"], enabled=False)
    specs["sentinel-2-l1c"] = with_harvest(specs["sentinel-2-l1c"], interval=timedelta(seconds=5))
    jobs = {j.id: j for j in jobs_for(specs, settings) if j.kind != "audit"}
    assert set(jobs) == {f"harvest:{c}" for c in specs if c != "sentinel-1-grd"} | {"reconcile"}
    fast = jobs["harvest:sentinel-2-l1c"]
    assert fast.trigger_args == {"seconds": 5.0} and fast.describe() == "every 5 s" and fast.misfire_grace_s == 5
    # a disabled collection is still reconciled (its backfilled products must still be processed)
    assert "sentinel-1-grd" in jobs["reconcile"].args[1]


def test_no_collections_still_reconciles(settings: Settings) -> None:
    assert [j.id for j in jobs_for({}, settings)] == ["reconcile"]


def test_first_runs_resume_interval_harvests_from_the_last_harvest(
    specs: dict[str, CollectionSpec], settings: Settings
) -> None:
    specs["sentinel-2-l2a"] = with_harvest(specs["sentinel-2-l2a"], cron="0 * * * *", interval=None)
    plan = jobs_for(specs, settings)
    last = {
        "sentinel-1-grd": NOW - timedelta(minutes=20),  # ran 20 min ago: next in 40 min
        "sentinel-2-l1c": NOW - timedelta(hours=3),  # overdue (no scheduler led for a while): now
    }
    runs = first_runs(plan, last, NOW)
    never = {f"harvest:{c}": NOW for c in specs if c not in last and c != "sentinel-2-l2a"}  # no history: now
    assert runs == {
        **never,
        "harvest:sentinel-1-grd": NOW + timedelta(minutes=40),
        "harvest:sentinel-2-l1c": NOW,
        "reconcile": NOW,  # at once: repair what died with the previous leader
    }  # the cron harvest is absent: it follows its cron


def test_first_runs_with_no_history_run_everything_now(specs: dict[str, CollectionSpec], settings: Settings) -> None:
    runs = first_runs(jobs_for(specs, settings), {}, NOW)
    assert set(runs.values()) == {NOW} and len(runs) == len(specs) + 1


def test_lock_key_is_a_stable_signed_int64() -> None:
    key = lock_key("ingest-scheduler")
    assert key == lock_key("ingest-scheduler") != lock_key("ingest-scheduler2")
    assert -(2**63) <= key < 2**63
    # pinned: schedulers of two releases running side by side during an upgrade must agree on it
    assert key == 8509742227160822623


def test_a_push_per_registration_target_every_interval(specs: dict[str, CollectionSpec]) -> None:
    from ingest.daemon.scheduler import run_register

    targets = [{"name": "national", "url": "https://cat.example", "token": "t", "interval_s": 600},
               {"name": "eosc", "url": "https://eosc.example", "token": "u"}]  # fmt: skip
    settings = Settings(_env_file=None, register_targets=targets)  # type: ignore[call-arg,arg-type]
    jobs = {j.id: j for j in jobs_for(specs, settings) if j.kind == "register"}
    assert list(jobs) == ["register:national", "register:eosc"]
    assert dict(jobs["register:national"].trigger_args) == {"seconds": 600.0}
    assert dict(jobs["register:eosc"].trigger_args) == {"seconds": 3600.0}
    assert jobs["register:eosc"].func is run_register and jobs["register:eosc"].args == (settings, "eosc")
    assert [j.id for j in jobs_for(specs, Settings(_env_file=None)) if j.kind == "register"] == []  # type: ignore[call-arg]
