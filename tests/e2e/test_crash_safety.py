"""Kill -9 anywhere: the service (workflows, relay) and the projection are SIGKILLed
again and again while snapshot workflows run; afterwards nothing is stuck, lost or doubled."""

import asyncio
import random
import sqlite3
import time
import uuid

import pytest

from services.snapshots import bootstrap, replay, views
from services.snapshots.broker import EmbeddedBroker
from services.snapshots.domain import command_record_id
from services.snapshots.demo import create_demo_warehouse
from services.snapshots.projection import Projection
from services.snapshots.settings import Settings
from tests.e2e.system import RunningSystem

CLUSTERS = [f"dws-crash-{i}" for i in range(4)]
WAVES, PER_WAVE = 6, 8


@pytest.fixture
def crash_system(tmp_path):
    """A broker of its own: one wave restarts it empty (Tansu keeps nothing)."""
    suffix = uuid.uuid4().hex[:6]
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    system = RunningSystem(broker.bootstrap_servers, tmp_path, commands_topic=f"crash.commands.{suffix}",
                           events_topic=f"crash.events.{suffix}", dlq_topic=f"crash.dlq.{suffix}",
                           service_id=f"crash-{suffix}", projection_poll_seconds="1")
    system.broker = broker
    for name in CLUSTERS:
        create_demo_warehouse(tmp_path / f"{name}.sqlite", customers=2000, sales=150_000)
    yield system.start()
    system.stop()
    broker.stop()


def store_events(settings: Settings) -> list:
    app = bootstrap.make_application(settings)
    try:
        return [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(1, 1_000_000)]
    finally:
        app.close()


def outcomes(events, command_ids) -> dict:
    """Per command id: its outcome events, and apart from them the `command_id_reused`
    answers to other payloads sent under the same id."""
    counts = {cid: {"CommandRejected": 0, "SnapshotCompleted": 0, "SnapshotFailed": 0, "ClusterUnlocked": 0,
                    "command_id_reused": 0} for cid in command_ids}
    for event in events:
        name = type(event).__name__
        if name == "CommandRejected" and event.code == "command_id_reused":
            name = "command_id_reused"
        cid = getattr(event, "command_id", None)
        if cid in counts and name in counts[cid]:
            counts[cid][name] += 1
    return counts


def settled(count: dict) -> bool:
    rejected = count["CommandRejected"] == 1 and count["SnapshotCompleted"] + count["SnapshotFailed"] == 0
    finished = count["CommandRejected"] == 0 and count["SnapshotCompleted"] + count["SnapshotFailed"] == 1 \
        and count["ClusterUnlocked"] == 1
    return rejected or finished


def store_position(settings: Settings) -> int:
    app = bootstrap.make_application(settings)
    try:
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


async def all_received(settings: Settings, command_ids: list[str], reused: list[str],
                       timeout: float = 60) -> None:
    """Every command recorded, and every reuse of an id answered."""
    app, deadline = bootstrap.make_application(settings), time.monotonic() + timeout

    def answered(command_id: str) -> bool:
        return bool(app.find(command_record_id(command_id)).refused_payloads)
    try:
        while not (all(app.has_seen(c) for c in command_ids) and all(answered(c) for c in reused)):
            assert time.monotonic() < deadline, "the service did not receive every command"
            await asyncio.sleep(0.3)
    finally:
        app.close()


async def view_reaches(settings: Settings, position: int, timeout: float = 60) -> None:
    """The projection's position in the store reaches `position` (what the store held)."""
    projection, deadline = bootstrap.make_projection(settings), time.monotonic() + timeout
    while projection.position() < position:
        assert time.monotonic() < deadline, f"the view stayed behind the store's {position}"
        await asyncio.sleep(0.3)


def wait_for_progress(settings: Settings, beyond: int, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app = bootstrap.make_application(settings)
        try:
            position = app.recorder.max_notification_id() or 0
        finally:
            app.close()
        if position > beyond:
            return position
        time.sleep(0.05)
    raise AssertionError(f"the store did not grow beyond {beyond} within {timeout} s")


async def test_after_repeated_sigkills_every_command_has_one_outcome_and_nothing_is_stuck(crash_system):
    system, rng = crash_system, random.Random(7)
    settings = Settings(data_dir=system.data_dir)
    for name in CLUSTERS:
        await system.send("RegisterCluster", {"cluster_name": name, "driver": "sqlite",
                                              "target": str(system.data_dir / f"{name}.sqlite")})
    position = wait_for_progress(settings, len(CLUSTERS) * 2 - 1)
    sent, reused, kills = [], [], {"service": 0, "projection": 0, "broker": 0}
    for wave in range(WAVES):
        for i in range(PER_WAVE):
            cluster = CLUSTERS[i % len(CLUSTERS)]
            sent.append(await system.send("CreateSnapshotRequested", {
                "cluster_name": cluster, "snapshot_name": f"w{wave}-s{i}-{uuid.uuid4().hex[:4]}"}))
        reused.append(sent[-PER_WAVE])  # a client reusing an earlier command id for another payload
        await system.send("CreateSnapshotRequested", {"cluster_name": CLUSTERS[0], "snapshot_name": "dup-x"},
                          command_id=reused[-1])
        position = wait_for_progress(settings, position + rng.randint(1, 12))
        part = "projection" if wave % 3 == 2 else "service"
        if wave == 3:  # the broker dies too and comes back empty: its events are lost
            await all_received(settings, sent, reused)  # (commands it had not delivered would be lost too)
            for each in ("service", "projection", "api"):
                system.kill(each)
            system.broker.stop()
            system.broker.start()
            system.start(["service", "projection", "api"])
            kills["broker"] += 1
        else:
            system.kill(part)
            kills[part] += 1
            system.start([part])
        await view_reaches(settings, store_position(settings))

    deadline = time.monotonic() + 180
    while True:
        events = store_events(settings)
        counts = outcomes(events, sent)
        answered = all(counts[cid]["command_id_reused"] == 1 for cid in reused)
        if (answered and all(settled(c) for c in counts.values())) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    unsettled = {cid: c for cid, c in counts.items() if not settled(c)}
    assert not unsettled, f"commands without exactly one outcome: {unsettled}"
    assert [counts[cid]["command_id_reused"] for cid in reused] == [1] * WAVES

    app = bootstrap.make_application(settings)
    for name in CLUSTERS:
        cluster = app.get_cluster(name)
        assert (cluster.status, cluster.task_status) == ("Available", None), name
        with sqlite3.connect(system.data_dir / f"{name}.sqlite", timeout=1) as db:
            db.execute("INSERT INTO customers (name, region) VALUES ('after-crash', 'north')")
    assert sum(type(e).__name__ == "SnapshotStarted" and e.snapshot_name == "dup-x" for e in events) == 0

    rebuilt = Projection(views.connect(f"sqlite:///{system.data_dir / 'rebuilt.sqlite'}"))
    rebuilt.catch_up(replay.store_reader(app, settings.service_id))
    expected = views.list_snapshots(rebuilt._engine, limit=1000), views.list_clusters(rebuilt._engine)
    live = bootstrap.make_view_engine(settings)
    deadline = time.monotonic() + 60
    while (views.list_snapshots(live, limit=1000), views.list_clusters(live)) != expected:
        assert time.monotonic() < deadline, "the projection never matched the state rebuilt from the store"
        await asyncio.sleep(0.5)

    completed = sum(c["SnapshotCompleted"] for c in counts.values())
    rejected = sum(c["CommandRejected"] for c in counts.values())
    print(f"\ncrash test: {len(sent)} commands, {kills['service']} service and {kills['projection']} "
          f"projection SIGKILLs, {kills['broker']} of everything with the broker, {completed} snapshots completed, "
          f"{sum(c['SnapshotFailed'] for c in counts.values())} failed, {rejected} rejected")
    assert completed >= len(CLUSTERS)
