"""Operating the real processes: `/metrics` after a snapshot and a rejection, the alert rules
and the dashboard against a live scrape, `/health` while the broker does not answer, and one
grep of a command id across the parts' logs."""

import json
import os
import re
import signal
import uuid
from datetime import datetime

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from services.snapshots.broker import EmbeddedBroker
from tests.e2e.system import ROOT, RunningSystem
from tests.e2e.up_process import wait_for

ACCEPTED = ("dws_snapshots_commands_total", (("outcome", "accepted"), ("type", "CreateSnapshotRequested")))
REJECTED = ("dws_snapshots_commands_total", (("outcome", "rejected"), ("type", "CreateSnapshotRequested")))
COMPLETED = ("dws_snapshots_workflow_seconds_count", (("driver", "sqlite"), ("result", "completed")))
READ_ONLY = ("dws_snapshots_read_only_seconds_count", (("driver", "sqlite"),))
LAST_SUCCESS = ("dws_snapshots_last_success_timestamp_seconds", (("cluster", "dws-e2e"),))


def scrape_text(system) -> str:
    answer = httpx.get(f"http://127.0.0.1:{system.http_port}/metrics", timeout=10)  # no token
    assert answer.status_code == 200, answer.text
    return answer.text


def scrape(system) -> dict:
    """{(sample name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(scrape_text(system)) for s in family.samples}


def moved(before: dict, after: dict, key) -> float:
    return after.get(key, 0) - before.get(key, 0)


@pytest.fixture(scope="module")
async def a_snapshot_and_a_rejection(system):
    """One snapshot and one rejected command on the shared system; the scrape before them."""
    before, name = scrape(system), f"metered-{uuid.uuid4().hex[:8]}"
    command_id = await system.send("CreateSnapshotRequested", {"cluster_name": "dws-e2e", "snapshot_name": name})
    rejected = await system.send("CreateSnapshotRequested", {"cluster_name": "dws-e2e", "snapshot_name": "9lives"})
    await system.events_of(command_id, "ClusterUnlocked")
    await system.events_of(rejected, "CommandRejected")
    system.wait_for_api(f"/snapshots/{name}", lambda r: r.status_code == 200 and r.json()["status"] == "Available")
    return before, name, command_id


def test_metrics_show_the_snapshot_and_the_rejection_counted_and_the_snapshots_completion_time(
        system, a_snapshot_and_a_rejection):
    before, name, _ = a_snapshot_and_a_rejection

    def counted() -> dict | None:  # the service counts just after it stores: wait for it
        now = scrape(system)
        return now if all(moved(before, now, key) >= 1 for key in (ACCEPTED, REJECTED, COMPLETED, READ_ONLY)) else None
    after = wait_for(counted, 30, "the counters to move")

    assert [moved(before, after, key) for key in (ACCEPTED, REJECTED, COMPLETED, READ_ONLY)] == [1, 1, 1, 1]
    history = system.get(f"/snapshots/{name}/history").json()["events"]
    [completed] = [e for e in history if e["type"] == "SnapshotCompleted"]
    assert after[LAST_SUCCESS] == pytest.approx(datetime.fromisoformat(completed["time"]).timestamp(), abs=1e-3)
    assert after[("dws_snapshots_relay_lag_events", ())] >= 0
    assert after[("dws_snapshots_clusters", (("status", "Available"),))] >= 1


def metrics_used_by_the_rules_and_the_dashboard() -> set[str]:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"DwsSnapshotClusterFrozenPastItsTimeout", "DwsSnapshotNoRecentSuccess",
            "DwsSnapshotRelayLagGrowing"} <= {rule["alert"] for rule in alerts}
    assert all(rule["expr"].strip() and rule["annotations"]["summary"] for rule in alerts)
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dws-snapshots.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert dashboard["title"] == "dws-snapshots" and queries
    return {name for query in [rule["expr"] for rule in alerts] + queries
            for name in re.findall(r"\bdws_snapshots_[a-z_]+", query)}


def test_the_alert_rules_and_the_dashboard_parse_and_every_metric_they_use_is_scraped(
        system, a_snapshot_and_a_rejection):
    used = metrics_used_by_the_rules_and_the_dashboard()
    text = scrape_text(system)
    scraped = set(re.findall(r"^(?:# (?:HELP|TYPE) )?(dws_snapshots_[a-z_]+)", text, re.MULTILINE))
    assert used and used <= scraped, f"not in a live scrape: {sorted(used - scraped)}"


def test_one_grep_of_a_command_id_finds_its_intake_workflow_relay_and_projection_lines(
        system, a_snapshot_and_a_rejection):
    command_id = a_snapshot_and_a_rejection[2]
    wanted = {f"services.snapshots.{part}" for part in ("intake", "workflow", "relay", "projection")}

    def lines_about_it():
        found = [json.loads(line) for part in ("service", "projection")
                 for line in system.log(part).splitlines() if command_id in line]
        return found if wanted <= {line["logger"] for line in found} else None
    lines = wait_for(lines_about_it, 30, f"every part's line about {command_id}")

    assert all(line.get("command_id") == command_id or command_id in line.get("command_ids", [])
               for line in lines)
    assert {line["part"] for line in lines} == {"service", "projection"}


def test_every_line_the_parts_write_is_a_json_object_faust_s_own_included(system):
    for part in ("service", "projection", "api"):
        records = [json.loads(line) for line in system.log(part).splitlines() if line.strip()]
        assert {record["part"] for record in records} <= {part}
    assert any(record["logger"].startswith("faust.") for record in
               map(json.loads, system.log("service").splitlines()))


def test_health_is_503_naming_the_broker_while_it_does_not_answer_and_200_again_after(tmp_path):
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:  # its own: this test stops it
        api = RunningSystem(broker.bootstrap_servers, tmp_path, health_timeout_seconds="1").start(("api",))
        try:
            api.wait_for_api("/health", lambda r: r.status_code == 200, 60)
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                stopped = api.wait_for_api("/health", lambda r: r.status_code == 503, 60).json()
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            assert stopped["status"] == "failing"
            assert {name for name, part in stopped["parts"].items() if part["status"] != "ok"} == {"broker"}
            assert api.wait_for_api("/health", lambda r: r.status_code == 200, 60).json()["status"] == "ok"
        finally:
            api.stop()
