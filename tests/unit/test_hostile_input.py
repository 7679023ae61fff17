"""Property-based hostile input: random and malicious payloads at the command decoder,
the intake (with a real in-memory event store) and the HTTP API (with a real SQLite view).
Nothing crashes; every bad command is answered with a specific code or dead-lettered."""

import asyncio
import json
import re
import string
from pathlib import Path
from urllib.parse import quote

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.codec import CommandInvalid, Undecodable, decode, parse_command
from events.commands import COMMAND_TYPES
from events.vocabulary import RejectionCode
from services.snapshots import views
from services.snapshots.api import create_api
from services.snapshots.targets import AllowedTargets
from services.snapshots.tokens import TokenStore
from services.snapshots.application import SnapshotsApplication
from services.snapshots.rules import CommandNotAccepted, check_snapshot_name
from services.snapshots.intake import CommandIntake
from services.snapshots.bootstrap import make_workflow

CODES = set(RejectionCode)
NASTY = st.sampled_from([
    "'; DROP TABLE snapshots; --", "../../etc/passwd", "..", "/", "nightly\x00", "a" * 5000,
    "ηightly-01", "nіghtly-01", "ｎｉｇｈｔｌｙ", "nightly-01\n", "Robert'); --", "$(rm -rf /)",
    "%s%s%n", "{{7*7}}", "\u202enightly", "null", "",
])
TEXT = st.one_of(NASTY, st.text(max_size=300))
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                       lambda children: st.lists(children, max_size=4)
                       | st.dictionaries(TEXT, children, max_size=4), max_leaves=12)
FIELDS = ["cluster_name", "snapshot_name", "description", "driver", "target", "status",
          "target_cluster_name"]
DATA = st.dictionaries(st.sampled_from(FIELDS) | TEXT, JSONISH | TEXT, max_size=6)
TYPES = st.sampled_from(sorted(COMMAND_TYPES)) | TEXT


def envelope(type_, data, id_="x") -> bytes:
    return json.dumps({"specversion": "1.0", "id": id_, "type": type_, "source": "fuzz", "data": data}).encode()


@given(st.binary(max_size=2000))
def test_random_bytes_are_undecodable_or_a_command_never_a_crash(raw):
    try:
        parse_command(decode(raw))
    except (Undecodable, CommandInvalid):
        pass


@given(TYPES, DATA)
def test_random_envelopes_are_a_command_or_an_invalid_command_with_a_spec_code(type_, data):
    try:
        parse_command(decode(envelope(type_, data)))
    except Undecodable:
        pass  # e.g. an empty or oversized type: not a CloudEvent, so the DLQ
    except CommandInvalid as invalid:
        assert invalid.code in ("invalid_command", "unknown_command_type")


@given(TEXT)
def test_a_name_the_domain_accepts_is_a_safe_path_component_and_identifier(name):
    try:
        check_snapshot_name(name)
    except CommandNotAccepted:
        return
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{3,63}", name)
    assert set(name) <= set(string.ascii_letters + string.digits + "-_")
    assert (Path("/repo") / name).parent == Path("/repo")


class Intake:
    """A real intake over a real (in-memory) event store; the DLQ is a list."""

    def __init__(self):
        self.app = SnapshotsApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        self.dead = []

        async def dead_letter(value, key, headers):
            self.dead.append(dict(headers))

        self.intake = CommandIntake(self.app, make_workflow(self.app, {}, Path("/nonexistent"), 1), dead_letter)

    def rejections(self) -> list:
        return [self.app.mapper.to_domain_event(n) for n in self.app.recorder.select_notifications(1, 10_000)
                if n.topic.endswith("CommandRejected")]


# No deadline: a loaded machine makes an example slow, which says nothing about the code.
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=300), st.tuples(TYPES, DATA).map(lambda t: envelope(*t))),
                min_size=1, max_size=8))
def test_the_intake_answers_every_bad_message_with_one_code_or_the_dlq_and_never_raises(messages):
    subject = Intake()

    async def feed():
        outcomes = [await subject.intake.receive(raw, b"k") for raw in messages]
        await subject.intake._workflow.wait_idle()
        return outcomes

    outcomes = asyncio.run(feed())
    assert set(outcomes) <= {"accepted", "rejected", "duplicate", "dead-lettered"}
    assert len(subject.dead) == outcomes.count("dead-lettered")
    assert all(headers["x-snapshot-error"] for headers in subject.dead)
    rejected = subject.rejections()
    assert len(rejected) == outcomes.count("rejected")
    assert {r.code for r in rejected} <= CODES


class FuzzedApi:
    """The real API over a real SQLite view database; commands it sends are kept in a list."""

    def __init__(self, base: Path):
        engine = views.connect(f"sqlite:///{base / 'fuzz-views.sqlite'}")
        tokens = TokenStore(engine)
        self.sent = []

        async def send(envelope):
            self.sent.append(envelope)

        self.client = TestClient(create_api(engine, tokens, send,
                                            AllowedTargets.default(base)), raise_server_exceptions=False)
        tokens.revoke("fuzz")
        self.headers = {"Authorization": "Bearer " + tokens.create("fuzz", "admin")}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/snapshots/", "/snapshots/{}/history", "/clusters/", "/commands/"]),
       name=TEXT.filter(lambda t: t not in ("", ".", "..") and len(t) < 1000),
       params=st.dictionaries(st.sampled_from(["cluster", "status", "limit", "offset", "type", "since",
                                                "until", "q", "sort"]), TEXT, max_size=4))
def test_the_api_answers_hostile_requests_with_200_400_404_or_422_never_500(tmp_path_factory, path, name, params):
    api = FuzzedApi(tmp_path_factory.getbasetemp())
    name = quote(name, safe="")  # as any HTTP client sends it
    url = path.format(name) if "{}" in path else path + name
    assert api.client.get(url, headers=api.headers).status_code in (200, 400, 404, 422)
    assert api.client.get("/snapshots", params=params, headers=api.headers).status_code in (200, 400, 422)
    assert api.client.get(url).status_code in (401, 404)  # 404: no such route, whoever asks


BODIES = st.one_of(st.dictionaries(st.sampled_from(["cluster_name", "snapshot_name", "description", "driver",
                                                     "target", "target_cluster_name"]),
                                   st.one_of(TEXT, st.integers(), st.none()), max_size=6),
                   st.lists(TEXT, max_size=3), TEXT)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method_path=st.sampled_from([("POST", "/snapshots"), ("POST", "/clusters"),
                                    ("POST", "/snapshots/x-{}/restore"), ("DELETE", "/snapshots/x-{}")]),
       name=st.text(max_size=40).map(lambda t: quote(t, safe="")), body=BODIES,
       key=st.one_of(st.none(), st.text(alphabet=string.ascii_letters, min_size=1, max_size=20)))
def test_the_write_endpoints_answer_hostile_bodies_with_a_code_never_500(tmp_path_factory, method_path,
                                                                       name, body, key):
    api = FuzzedApi(tmp_path_factory.getbasetemp())
    method, path = method_path[0], method_path[1].format(name)
    headers = {**api.headers, **({"Idempotency-Key": key} if key else {})}
    response = api.client.request(method, path, json=body, headers=headers)
    assert response.status_code in (202, 404, 409, 422), response.text
    if response.status_code != 202:
        assert set(response.json()) >= {"code", "reason"} or "detail" in response.json()
        assert response.json().get("code", "invalid_command") in CODES | {"unknown_snapshot", "command_id_reused"}
    else:
        assert api.sent[-1].id == response.json()["command_id"]
        assert api.sent[-1].authid == "fuzz" and api.sent[-1].authtype == "app_user"
