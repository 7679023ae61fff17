"""What the throughput work must not break, on real SQLite and PostgreSQL stores: the
aggregate cache never serves a state the store does not hold (after a conflict, beside
another instance), a group of saves that fails halfway stores every other save and hands
the conflict to its own caller, and the intake's batches keep each cluster's order and
give every record its own outcome."""

import threading
import time
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError

from events.codec import command_envelope, encode
from events.commands import CreateSnapshotRequested, DeleteSnapshotRequested, RegisterCluster
from services.snapshots import bootstrap
from services.snapshots.intake import CommandIntake
from services.snapshots.settings import Settings
from tests.conftest import postgres_dsn


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path):
    if request.param == "postgres":
        dsn = postgres_dsn(request.getfixturevalue("postgres_database"))
        return Settings(event_store="postgres", postgres_dsn=dsn, data_dir=tmp_path, allowed_targets="*")
    return Settings(event_store="sqlite", data_dir=tmp_path, allowed_targets="*")


def register(app, name: str) -> None:
    assert app.handle(f"reg-{name}", RegisterCluster(cluster_name=name, driver="sqlite", target="/x")) == "accepted"


def test_the_cache_serves_what_another_instance_stored(settings):
    mine, other = bootstrap.make_application(settings), bootstrap.make_application(settings)
    register(mine, "dws-shared")
    assert mine.get_cluster("dws-shared").status == "Available"  # now in mine's cache
    assert other.handle("c1", CreateSnapshotRequested(cluster_name="dws-shared", snapshot_name="theirs")) == "accepted"
    assert mine.get_cluster("dws-shared").snapshot_name == "theirs"
    assert mine.handle("c2", CreateSnapshotRequested(cluster_name="dws-shared", snapshot_name="mine")) == "rejected"
    assert mine.complete_snapshot("dws-shared", "theirs", 1, None, "", "a1") is True


def test_a_stale_aggregate_never_wins_and_the_cache_after_a_conflict_holds_the_stored_state(settings):
    mine, other = bootstrap.make_application(settings), bootstrap.make_application(settings)
    register(mine, "dws-race")
    stale = mine.get_cluster("dws-race")  # read before the other instance writes
    assert other.handle("c1", CreateSnapshotRequested(cluster_name="dws-race", snapshot_name="first")) == "accepted"
    stale.lock("second", "c2")  # decided on stale state: it must not be stored
    with pytest.raises(IntegrityError):
        mine.save(stale)
    cluster = mine.get_cluster("dws-race")
    assert (cluster.snapshot_name, cluster.version) == ("first", other.get_cluster("dws-race").version)
    # A command decided through the conflict path gets the stored state, not the stale one.
    assert mine.handle("c3", CreateSnapshotRequested(cluster_name="dws-race", snapshot_name="third")) == "rejected"
    assert mine.get_cluster("dws-race").snapshot_name == "first"


def saves_together(app, *aggregates_per_save) -> list:
    """Each save from its own thread, all queued before any is written, so the group
    commit takes them as one batch; returns each save's result or error, in order."""
    results: list = [None] * len(aggregates_per_save)

    def save(index: int) -> None:
        try:
            results[index] = app.save(*aggregates_per_save[index])
        except Exception as error:  # noqa: BLE001 - compared below
            results[index] = error
    group = app.group_commit
    with group._writer:  # hold the writer until every save has queued (the test's only reach inside)
        threads = [threading.Thread(target=save, args=(i,)) for i in range(len(aggregates_per_save))]
        for thread in threads:
            thread.start()
        while len(group._queue) < len(threads):
            time.sleep(0.001)
    for thread in threads:
        thread.join()
    return results


def test_saves_that_arrive_together_share_one_transaction(settings):
    app = bootstrap.make_application(settings)
    for name in ("dws-a", "dws-b", "dws-c"):
        register(app, name)
    clusters = [app.get_cluster(name) for name in ("dws-a", "dws-b", "dws-c")]
    for index, cluster in enumerate(clusters):
        cluster.lock(f"s{index}", f"c{index}")
    before = app.group_commit.transactions
    results = saves_together(app, *[[cluster] for cluster in clusters])
    assert app.group_commit.transactions == before + 1
    assert all(len(recordings) == 1 for recordings in results)
    assert [app.get_cluster(name).snapshot_name for name in ("dws-a", "dws-b", "dws-c")] == ["s0", "s1", "s2"]


def test_a_batch_that_fails_halfway_stores_every_other_save_and_the_conflict_gets_its_error(settings):
    app = bootstrap.make_application(settings)
    for name in ("dws-a", "dws-b", "dws-c"):
        register(app, name)
    a, stale_b, c = (app.get_cluster(name) for name in ("dws-a", "dws-b", "dws-c"))
    fresh_b = app.get_cluster("dws-b")
    fresh_b.lock("winner", "cw")
    app.save(fresh_b)
    a.lock("sa", "ca")
    stale_b.lock("loser", "cl")
    c.lock("sc", "cc")
    stored_before = app.recorder.max_notification_id()
    results = saves_together(app, [a], [stale_b], [c])
    assert isinstance(results[1], IntegrityError)
    assert [len(results[0]), len(results[2])] == [1, 1]
    assert app.get_cluster("dws-a").snapshot_name == "sa" and app.get_cluster("dws-c").snapshot_name == "sc"
    assert app.get_cluster("dws-b").snapshot_name == "winner"
    # Nothing of the loser (PostgreSQL's ids may leave a gap where the batch rolled back).
    stored = app.recorder.select_notifications(stored_before + 1, 100)
    assert sorted(app.mapper.to_domain_event(n).snapshot_name for n in stored) == ["sa", "sc"]


class DeadLetters:
    def __init__(self):
        self.records = []

    async def __call__(self, value, key, headers):
        self.records.append(value)


def raw(command, command_id: str) -> tuple[bytes, bytes, int]:
    return encode(command_envelope(command, id=command_id)), command.cluster_name.encode(), 0


async def test_a_batch_of_commands_keeps_each_clusters_order_and_gives_each_its_own_outcome(settings):
    app, dead = bootstrap.make_application(settings), DeadLetters()
    intake = CommandIntake(app, bootstrap.make_workflow(app, {}, Path("/unused"), 1), dead)
    register(app, "dws-two")
    new = RegisterCluster(cluster_name="dws-new", driver="sqlite", target="/x")
    batch = [raw(new, "k1"),  # the snapshot below is accepted only if this came first
             raw(CreateSnapshotRequested(cluster_name="dws-new", snapshot_name="new-a"), "k2"),
             (b"{not a command", b"dws-new", 0),
             raw(CreateSnapshotRequested(cluster_name="dws-two", snapshot_name="two-a"), "k3"),
             raw(DeleteSnapshotRequested(cluster_name="dws-two", snapshot_name="nothing"), "k4"),
             raw(new, "k1")]
    outcomes = await intake.receive_many(batch)
    assert outcomes == ["accepted", "accepted", "dead-lettered", "accepted", "rejected", "duplicate"]
    assert dead.records == [b"{not a command"]
    rejections = [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(1, 100)
                  if n.topic.endswith("CommandRejected")]
    assert [(r.command_id, r.code) for r in rejections] == [("k4", "unknown_snapshot")]
    await intake._workflow.wait_idle()  # (no drivers here: each accepted snapshot fails at once)
    assert app.get_snapshot("new-a").cluster_name == "dws-new" and app.get_snapshot("two-a").cluster_name == "dws-two"
