"""Group commit: saves that arrive together, from several store threads, are written in
one event-store transaction.

A transaction's cost is mostly its commit (an fsync of SQLite's WAL, a PostgreSQL round
trip and WAL flush), not its rows: a workflow writes three times, so committing each save
alone caps the service at a few hundred saves a second whatever the CPU does. Here a
save joins a queue; the thread that holds the writer's lock takes everything queued (up
to `max_saves`) and writes it as one `insert_events` call, i.e. one transaction; the
others find their result when they get the lock.

Each save keeps its own outcome. If the shared transaction fails with an IntegrityError
(a save conflicted: optimistic concurrency, a command id taken), nothing of it was
stored, and every save of the batch is written again alone, so the conflicting one gets
its IntegrityError (its caller decides again on fresh state) and the others are stored.
Any other error (the store away) is every save's error: each caller retries as it would
have. Saves with tracking or extra arguments are never batched."""

import threading
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError

#: (domain events, **kwargs) -> recordings, one per event, in order (EventStore.put).
Put = Callable[..., list]


class _Save:
    def __init__(self, events: Sequence[Any]):
        self.events = list(events)
        self.done = False
        self.recordings: list = []
        self.error: BaseException | None = None

    def settle(self, recordings: list | None = None, error: BaseException | None = None) -> None:
        self.recordings, self.error, self.done = recordings or [], error, True

    def result(self) -> list:
        if self.error is not None:
            raise self.error
        return self.recordings


class GroupCommit:
    def __init__(self, put: Put, max_saves: int = 200):
        self._put = put
        self._max_saves = max_saves
        self._writer = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Save] = []
        #: Transactions written and saves they held, over the object's life (tests, bench).
        self.transactions = 0
        self.saves = 0

    def record(self, events: Sequence[Any], **kwargs) -> list:
        """Store `events` (one save); returns their recordings or raises its error."""
        if kwargs.get("tracking") is not None or any(v is not None for k, v in kwargs.items() if k != "tracking"):
            with self._writer:
                return self._write_one(_Save(events), **kwargs).result()
        save = _Save(events)
        with self._queue_lock:
            self._queue.append(save)
        while not save.done:
            with self._writer:
                if save.done:
                    break
                with self._queue_lock:
                    batch, self._queue = self._queue[:self._max_saves], self._queue[self._max_saves:]
                self.write(batch)
        return save.result()

    def write(self, batch: list[_Save]) -> None:
        """Write saves in one transaction; on a conflict, each alone. Settles every one."""
        if len(batch) == 1:
            self._write_one(batch[0])
            return
        try:
            recordings = self._put([event for save in batch for event in save.events])
        except IntegrityError:
            for save in batch:  # nothing was stored: find the save that conflicted
                self._write_one(save)
            return
        except BaseException as error:  # noqa: BLE001 - the store is away: every save's error
            for save in batch:
                save.settle(error=error)
            return
        self._count(len(batch))
        start = 0
        for save in batch:
            save.settle(recordings[start:start + len(save.events)])
            start += len(save.events)

    def _write_one(self, save: _Save, **kwargs) -> _Save:
        try:
            save.settle(self._put(save.events, **kwargs))
            self._count(1)
        except BaseException as error:  # noqa: BLE001 - handed to its caller
            save.settle(error=error)
        return save

    def _count(self, saves: int) -> None:
        self.transactions += 1
        self.saves += saves
