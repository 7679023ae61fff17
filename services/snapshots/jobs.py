"""Background jobs of the service worker, retried until done: the one mechanism for work
that must eventually happen even if it fails for a while — lifting a freeze, removing a
driver's traces, deleting snapshot files, the reconciler (and later schedules and expiry).

A job is an async callable that returns when done and raises when it must be tried again.
Each job has a name; a job already pending under that name is not added twice. Failures
are logged with the job's name and retried with capped exponential backoff, for as long
as it takes: nothing here gives up. What must survive a crash is found again from the
event store by whoever starts the jobs (the reconciler does that for freezes)."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class Jobs:
    def __init__(self, first_delay: float = 0.5, max_delay: float = 60.0):
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._pending: dict[str, asyncio.Task] = {}

    def retry_until_done(self, name: str, job: Job) -> asyncio.Task:
        """Run `job` now and again after each failure until it succeeds."""
        if name in self._pending and not self._pending[name].done():
            return self._pending[name]
        task = asyncio.create_task(self._retry(name, job), name=name)
        self._pending[name] = task
        task.add_done_callback(lambda _: self._forget(name, task))
        return task

    def every(self, name: str, interval: float, job: Job) -> asyncio.Task:
        """Run `job` every `interval` seconds; a failure is logged and the next run comes."""
        task = asyncio.create_task(self._periodically(name, interval, job), name=name)
        self._pending["every:" + name] = task
        return task

    async def wait_idle(self) -> None:
        """Until every retried job is done (periodic ones never are: not waited for)."""
        while busy := [t for n, t in self._pending.items() if not t.done() and not n.startswith("every:")]:
            await asyncio.gather(*busy, return_exceptions=True)

    async def stop(self) -> None:
        for task in self._pending.values():
            task.cancel()
        await asyncio.gather(*self._pending.values(), return_exceptions=True)
        self._pending.clear()

    async def _retry(self, name: str, job: Job) -> None:
        delay, attempt = self._first_delay, 1
        while True:
            try:
                await job()
                if attempt > 1:
                    log.info("job %s done after %d attempts", name, attempt)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - retried until done, by design
                log.warning("job %s failed (attempt %d), retrying in %.1f s: %s",
                            name, attempt, delay, error)
            await asyncio.sleep(delay)
            delay, attempt = min(delay * 2, self._max_delay), attempt + 1

    async def _periodically(self, name: str, interval: float, job: Job) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the next run tries again
                log.exception("periodic job %s failed", name)

    def _forget(self, name: str, task: asyncio.Task) -> None:
        if self._pending.get(name) is task:
            del self._pending[name]
