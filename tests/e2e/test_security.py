"""Who may do what, against the real API, service and projection processes: tokens and
roles on every endpoint, writes that become commands, idempotency keys, allowed targets."""

import time
import uuid

import pytest

ENDPOINTS = [  # (method, path, body, the least role that may)
    ("GET", "/snapshots", None, "viewer"),
    ("GET", "/snapshots/no-such-one", None, "viewer"),
    ("GET", "/snapshots/no-such-one/history", None, "viewer"),
    ("GET", "/clusters", None, "viewer"),
    ("GET", "/clusters/dws-e2e", None, "viewer"),
    ("GET", "/clusters/dws-e2e/history", None, "viewer"),
    ("PUT", "/clusters/no-such-one/policy", {"schedule": "rate(1 hour)", "keep_days": 1}, "operator"),
    ("DELETE", "/clusters/no-such-one/policy", None, "operator"),
    ("GET", "/commands/no-such-command", None, "viewer"),
    ("POST", "/snapshots", {"cluster_name": "dws-e2e", "snapshot_name": "x"}, "operator"),
    ("DELETE", "/snapshots/no-such-one", None, "operator"),
    ("POST", "/snapshots/no-such-one/restore", {"target_cluster_name": "dws-copy-x"}, "operator"),
    ("POST", "/snapshots/no-such-one/copy", {"target_repository": "s3://dr/x"}, "operator"),
    ("POST", "/clusters", {"cluster_name": "dws-x", "driver": "sqlite", "target": "/nope"}, "admin"),
]
ROLES = ("viewer", "operator", "admin")


@pytest.fixture(scope="module")
def tokens(system):
    return {role: system.create_token(f"sec-{role}-{uuid.uuid4().hex[:6]}", role) for role in ROLES}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("method, path, body, least", ENDPOINTS)
def test_every_endpoint_refuses_a_missing_unknown_or_too_weak_token(system, tokens, method, path, body, least):
    for token, status, code in [("", 401, "unauthenticated"), ("dws_not-a-real-token", 401, "unauthenticated")] + [
            (tokens[role], 403, "forbidden") for role in ROLES[:ROLES.index(least)]]:
        headers = {"Authorization": f"Bearer {token}" if token else ""}
        answer = system.request(method, path, json=body, headers=headers)
        assert (answer.status_code, answer.json()["code"]) == (status, code), (method, path, token[:8])
        assert answer.json()["reason"]
    allowed = system.request(method, path, json=body, token=tokens[least])
    assert allowed.status_code not in (401, 403)


def test_health_needs_no_token(system):
    assert system.request("GET", "/health", headers={"Authorization": ""}).status_code == 200
    assert system.request("GET", "/health/live", headers={"Authorization": ""}).status_code == 200


def test_a_revoked_token_stops_working_at_once(system):
    name = unique("leaver")
    token = system.create_token(name, "viewer")
    assert system.get("/snapshots", token=token).status_code == 200
    from tests.e2e.system import snapshotctl
    assert snapshotctl("token", "revoke", name, env=system.env).returncode == 0
    assert system.get("/snapshots", token=token).json()["code"] == "unauthenticated"


def test_an_operators_post_becomes_the_snapshot_workflow_followed_at_its_location(system, tokens):
    name = unique("api")
    answer = system.request("POST", "/snapshots", token=tokens["operator"],
                            json={"cluster_name": "dws-e2e", "snapshot_name": name, "description": "via REST"})
    assert answer.status_code == 202
    command_id = answer.json()["command_id"]
    assert answer.headers["Location"] == f"/commands/{command_id}"
    state = system.wait_for_api(answer.headers["Location"], lambda r: r.status_code == 200 and any(
        e["type"] == "ClusterUnlocked" for e in r.json()["events"]), timeout=60).json()
    assert state["state"] == "accepted" and state["rejection"] is None
    assert [e["type"] for e in state["events"]][:2] == ["ClusterLocked", "SnapshotStarted"]


def test_the_same_idempotency_key_is_one_command_and_another_payload_is_refused(system, tokens):
    key, name = unique("key"), unique("idem")
    body = {"cluster_name": "dws-e2e", "snapshot_name": name}
    first = system.request("POST", "/snapshots", token=tokens["operator"], json=body, headers={"Idempotency-Key": key})
    again = system.request("POST", "/snapshots", token=tokens["operator"], json=body, headers={"Idempotency-Key": key})
    other = system.request("POST", "/snapshots", token=tokens["operator"], headers={"Idempotency-Key": key},
                           json={**body, "snapshot_name": name + "-2"})
    assert first.json() == again.json() == {"command_id": key}
    assert (other.status_code, other.json()["code"]) == (409, "command_id_reused")


@pytest.mark.parametrize("body, code", [
    ({"cluster_name": "dws-e2e", "snapshot_name": "1-bad"}, "invalid_snapshot_name"),
    ({"cluster_name": "dws-e2e", "snapshot_name": "good-name", "description": "a<b"}, "invalid_description"),
    ({"cluster_name": "dws-e2e"}, "invalid_command"),
])
def test_a_request_the_api_can_judge_is_answered_422_with_the_rejection_code(system, tokens, body, code):
    answer = system.request("POST", "/snapshots", token=tokens["operator"], json=body)
    assert (answer.status_code, answer.json()["code"]) == (422, code)


@pytest.mark.parametrize("target, code", [
    ("s3://AKIAEXAMPLE:wJalrXUtnFEMIK7MDENG@dr-bucket/dr", "secret_in_command"),
    ("s3://dr-bucket/dr?aws_secret_access_key=wJalrXUtnFEMIK7MDENG", "target_not_allowed"),
])
def test_a_copy_target_with_credentials_is_refused_before_it_reaches_the_bus(system, tokens, target, code):
    answer = system.request("POST", "/snapshots/any-snapshot/copy", token=tokens["operator"],
                            json={"target_repository": target})
    assert (answer.status_code, answer.json()["code"]) == (422, code)
    assert "wJalrXUtnFEMIK7MDENG" not in answer.json()["reason"]


@pytest.mark.parametrize("driver, target, code", [
    ("sqlite", "/etc/hostname", "target_not_allowed"),
    ("postgres", "postgresql://dws@db.example.com/warehouse", "target_not_allowed"),
    ("postgres", "postgresql://u:s3cret@[localhost]/db", "secret_in_command"),
])
async def test_a_target_outside_the_allow_list_or_with_a_password_is_refused_on_both_paths(
        system, tokens, driver, target, code):
    name = unique("dws-far")
    answer = system.request("POST", "/clusters", token=tokens["admin"],
                            json={"cluster_name": name, "driver": driver, "target": target})
    assert (answer.status_code, answer.json()["code"]) == (422, code)
    command_id = await system.send("RegisterCluster", {"cluster_name": name, "driver": driver, "target": target})
    [rejected] = await system.events_of(command_id, "CommandRejected")
    assert rejected.data["code"] == code
    time.sleep(0.5)
    assert system.get(f"/clusters/{name}").status_code == 404
    assert "s3cret" not in system.log("service")


async def test_every_event_of_an_operators_command_names_the_operator_on_the_topic_and_in_history(
        system, tokens):
    name = unique("actor")
    answer = system.request("POST", "/snapshots", token=tokens["operator"],
                            json={"cluster_name": "dws-e2e", "snapshot_name": name})
    command_id = answer.json()["command_id"]
    events = await system.events_of(command_id, "ClusterUnlocked", timeout=60)
    operator = next(t.name for t in _token_names(system) if t.name.startswith("sec-operator"))
    assert {(e.authtype, e.authid) for e in events} == {("app_user", operator)}
    history = system.wait_for_api(f"/snapshots/{name}/history", lambda r: r.status_code == 200 and any(
        e["type"] == "SnapshotCompleted" for e in r.json()["events"])).json()["events"]
    assert {(e["actor"]["authtype"], e["actor"]["authid"]) for e in history} == {("app_user", operator)}


async def test_a_command_from_the_bus_carries_its_own_actor_and_trace_to_its_events(system):
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    envelope = {"cluster_name": "dws-e2e", "snapshot_name": unique("traced")}
    command_id = await system.send_with("CreateSnapshotRequested", envelope, traceparent=traceparent,
                                        tracestate="vendor=1", authtype="service_account", authid="etl-runner")
    events = await system.events_of(command_id, "ClusterUnlocked", timeout=60)
    assert {(e.traceparent, e.tracestate, e.authtype, e.authid) for e in events} == {
        (traceparent, "vendor=1", "service_account", "etl-runner")}
    anonymous = await system.send("CreateSnapshotRequested", {"cluster_name": "dws-e2e", "snapshot_name": "1bad"})
    [rejected] = await system.events_of(anonymous, "CommandRejected")
    assert (rejected.authtype, rejected.authid) == ("unauthenticated", None)


def _token_names(system):
    from services.snapshots import bootstrap
    from services.snapshots.settings import Settings
    return bootstrap.make_token_store(Settings(data_dir=system.data_dir)).list()
