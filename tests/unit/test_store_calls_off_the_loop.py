"""Blocking event-store calls run in the store's own thread pool: a slow store write does
not stall the worker's event loop (which must keep heartbeating to its consumer group)."""

import asyncio
import threading
import time
from pathlib import Path

from events.codec import command_envelope, encode
from events.commands import RegisterCluster
from services.snapshots.application import Outcome, SnapshotsApplication
from services.snapshots.intake import CommandIntake
from services.snapshots.threads import ThreadPool, Wakeup
from services.snapshots.bootstrap import make_workflow


class SlowStore(SnapshotsApplication):
    """An event store whose writes take half a second (a busy disk, a far database)."""

    def handle(self, command_id, command, attempts=5, payload_sha256=None, context=None):
        self.thread = threading.current_thread().name
        time.sleep(0.5)
        return super().handle(command_id, command, attempts, payload_sha256, context)


async def test_a_slow_store_write_does_not_stall_the_event_loop():
    app = SlowStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    store = ThreadPool(2, "store")

    async def dead_letter(*_):
        raise AssertionError("nothing should be dead-lettered")

    intake = CommandIntake(app, make_workflow(app, {}, Path("/unused"), 1, store), dead_letter, store)
    raw = encode(command_envelope(RegisterCluster(cluster_name="dws-slow", driver="sqlite", target="/x")))
    ticks = 0

    async def heartbeat():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beating = asyncio.create_task(heartbeat())
    try:
        assert await intake.receive(raw) == Outcome.ACCEPTED
    finally:
        beating.cancel()
    assert ticks >= 20, f"the loop ran only {ticks} times during a 0.5 s store write"
    assert app.thread.startswith("store")


async def test_a_save_in_another_thread_wakes_the_waiting_relay_at_once():
    wakeup = Wakeup()
    waiting = asyncio.create_task(wakeup.wait(timeout=30))
    await asyncio.sleep(0.05)  # the relay is waiting now
    started = time.monotonic()
    threading.Thread(target=wakeup.set).start()
    await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 5
