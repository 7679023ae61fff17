"""Live updates for the console: the API process follows `snapshot.events` itself, with a
consumer outside any group (`client.EventFollower`), and tells every open page which
snapshot and cluster rows changed.

The topic only says *what* changed; the rows sent are read from the views, after the
projection has applied the event (its position in the store's notification log has
reached the event's `sequence`), so a page shows exactly what `GET /snapshots` would.
Events that arrive together are read together: one read per changed name, not per event.

Messages are `(kind, data)`: `("snapshot", row)`, `("snapshot-gone", {"name"})`,
`("cluster", row)`, and `("resync", {})` when a page may have missed something (the
follower restarted, or the page fell behind) and should load its lists again;
`("closing", {})` when the process is stopping."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from sqlalchemy import Engine, select

from events.envelope import Envelope
from services.snapshots import views
from services.snapshots.projection import POSITION

log = logging.getLogger(__name__)

Message = tuple[str, dict]
RESYNC: Message = ("resync", {})
CLOSING: Message = ("closing", {})  # the process is stopping: streams end (pages reconnect)


class LiveUpdates:
    """`running()` around the app's life; `subscription()` per open page."""

    def __init__(self, engine: Engine, new_follower: Callable, view_wait_seconds: float = 10.0,
                 queue_size: int = 1000):
        self._engine = engine
        self._new_follower = new_follower  # () -> an EventFollower, not yet started
        self._view_wait = view_wait_seconds
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue] = set()
        self._arrived: asyncio.Queue[Envelope] = asyncio.Queue()
        self._closing = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["LiveUpdates"]:
        tasks = [asyncio.create_task(self._follow(), name="console-follow"),
                 asyncio.create_task(self._announce(), name="console-announce")]
        try:
            yield self
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def subscription(self) -> AsyncIterator[asyncio.Queue]:
        queue: asyncio.Queue[Message] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        if self._closing:
            queue.put_nowait(CLOSING)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def close_streams(self) -> None:
        """Tell every stream to end: the server is stopping (and waits for open responses)."""
        self._closing = True
        self._tell_everyone(CLOSING)

    async def _follow(self, backoff: float = 1.0) -> None:
        """Read the topic for ever; after a failure, start again from its end (and tell
        the pages to load their lists again, since they may have missed something)."""
        while True:
            try:
                async with self._new_follower() as follower:
                    self._tell_everyone(RESYNC)
                    async for envelope in follower.events():
                        self._arrived.put_nowait(envelope)
            except Exception as error:  # a broker away, a topic not there yet: try again
                log.warning("console live updates: following the events topic failed (%s); retrying", error)
            await asyncio.sleep(backoff)

    async def _announce(self) -> None:
        while True:
            batch = [await self._arrived.get()]
            while not self._arrived.empty():
                batch.append(self._arrived.get_nowait())
            if not self._subscribers:  # no page open: nothing to read (a new page loads its lists)
                continue
            try:
                messages = await asyncio.to_thread(self.messages_for, batch)
            except Exception:  # a view database hiccup must not end live updates
                log.exception("console live updates: reading the views failed")
                messages = [RESYNC]
            for message in messages:
                self._tell_everyone(message)

    def _tell_everyone(self, message: Message) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # that page fell behind: it reloads instead
                _drain(queue)
                queue.put_nowait(RESYNC)

    def messages_for(self, batch: list[Envelope]) -> list[Message]:
        """The rows the batch changed, read once the views have applied it."""
        self._wait_for_views(max(_sequence(e) for e in batch))
        snapshots, clusters = _names(batch)
        messages = [self._snapshot(name) for name in snapshots]
        messages += [("cluster", row) for name in clusters
                     if (row := views.get_cluster(self._engine, name)) is not None]
        return messages

    def _snapshot(self, name: str) -> Message:
        row = views.get_snapshot(self._engine, name)
        return ("snapshot", row) if row is not None else ("snapshot-gone", {"name": name})

    def _wait_for_views(self, sequence: int) -> None:
        deadline = time.monotonic() + self._view_wait
        while view_position(self._engine) < sequence and time.monotonic() < deadline:
            time.sleep(0.05)


def view_position(engine: Engine) -> int:
    """How far the projection has applied the store's notification log."""
    table = views.LIVE.position
    with engine.connect() as connection:
        return connection.execute(select(table.c.position).where(table.c.name == POSITION)).scalar() or 0


def _names(batch: list[Envelope]) -> tuple[list[str], list[str]]:
    """The snapshot and cluster names a batch of events concerns, each once, in order."""
    snapshots, clusters = {}, {}
    for envelope in batch:
        data = envelope.data if isinstance(envelope.data, dict) else {}
        for field, names in (("snapshot_name", snapshots), ("cluster_name", clusters),
                             ("target_cluster_name", clusters)):
            if isinstance(data.get(field), str):
                names.setdefault(data[field].lower(), data[field])
    return list(snapshots.values()), list(clusters.values())


def _sequence(envelope: Envelope) -> int:
    try:
        return int(envelope.sequence or 0)
    except ValueError:
        return 0


def _drain(queue: asyncio.Queue) -> None:
    while not queue.empty():
        queue.get_nowait()
