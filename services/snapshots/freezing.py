"""The mechanics of a freeze, shared by the workflow and the reconciler: freeze, a copy
that can be cancelled, a release that is retried until done, and the cleanup after it.

Each kind of blocking call has a thread pool of its own, so that none waits behind
another: copies (`SNAPSHOT_COPY_THREADS`) run for minutes or hours; freezes, releases and
cleanups (the control pool) are short and must never queue behind a copy, or a finished
cluster would stay read-only while other clusters are dumped."""

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from services.snapshots.drivers import ClusterDriver, DriverError, FrozenCluster, SnapshotFiles
from services.snapshots.drivers.base import CopyCancelled, Progress
from services.snapshots.jobs import Jobs
from services.snapshots.threads import ThreadPool

log = logging.getLogger(__name__)

#: How long past its timeout a copy that ignores its cancel event is waited for.
COPY_GRACE_SECONDS = 60.0


class Freezer:
    def __init__(self, drivers: dict[str, ClusterDriver], copies: ThreadPool, control: ThreadPool,
                 jobs: Jobs, timeout_seconds: float, release_backoff: tuple[float, float] = (0.5, 30.0)):
        self._drivers = drivers
        self._copies = copies
        self._control = control
        self.jobs = jobs
        self._timeout = timeout_seconds
        self._release_backoff = release_backoff

    def driver(self, name: str) -> ClusterDriver:
        driver = self._drivers.get(name)
        if driver is None:
            raise DriverError(f"no driver {name!r} is configured on this service")
        return driver

    @property
    def drivers(self) -> dict[str, ClusterDriver]:
        return self._drivers

    async def freeze(self, driver: ClusterDriver, target: str) -> FrozenCluster:
        return await self._control.run(driver.freeze, target)

    async def is_frozen(self, driver: ClusterDriver, target: str) -> bool:
        return await self._control.run(driver.is_frozen, target)

    async def copy(self, frozen: FrozenCluster, directory: Path, cancel: threading.Event,
                   pinned: Callable[[], None] | None = None, progress: Progress | None = None) -> SnapshotFiles:
        """The copy, stopped through `cancel` when this task is cancelled or when it has run
        for the timeout (counted from its start in a copy thread, not from the queue).
        With `pinned`, an online copy (`postgres`): called from the copy thread once the
        copy's data is fixed and the freeze may be released. `progress` gets the driver's
        reports (`progress.py`)."""
        loop, started, timed_out = asyncio.get_running_loop(), asyncio.Event(), threading.Event()

        def copy() -> SnapshotFiles:
            loop.call_soon_threadsafe(started.set)
            timer = threading.Timer(self._timeout, lambda: (timed_out.set(), cancel.set()))
            timer.start()
            try:
                if pinned is not None:
                    return frozen.copy_online(directory, cancel, pinned, progress)
                return frozen.copy_to(directory, cancel, progress)
            finally:
                timer.cancel()

        future = asyncio.ensure_future(self._copies.run(copy))
        try:
            await asyncio.wait([future, asyncio.ensure_future(started.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            return await asyncio.wait_for(asyncio.shield(future), self._timeout + COPY_GRACE_SECONDS)
        except asyncio.CancelledError:
            cancel.set()  # the copy stops at its next step; wait for it to let go
            await asyncio.wait([future], timeout=COPY_GRACE_SECONDS)
            raise
        except (CopyCancelled, TimeoutError) as error:
            cancel.set()
            if timed_out.is_set() or isinstance(error, TimeoutError):
                raise DriverError(f"snapshot timed out after {self._timeout:g} s") from None
            raise

    async def release(self, driver: ClusterDriver, target: str, frozen: FrozenCluster | None,
                      clean_up: bool = True) -> None:
        """Let writes through again, retried with backoff for as long as it takes: the
        caller records the unlock only after this returns. Idempotent: `thaw(target)` lifts
        whatever froze the cluster, this attempt's freeze or an earlier one's. Without
        `clean_up` the driver's traces stay (an online copy is still running)."""
        if frozen is not None:
            try:
                await self._control.run(frozen.release)
            except Exception as error:  # noqa: BLE001 - thaw(target) below does it again
                log.warning("release of %s failed: %s; thawing by target", target, error)
        delay, attempt = self._release_backoff[0], 1
        while True:
            try:
                await self._control.run(driver.thaw, target)
                break
            except Exception as error:  # noqa: BLE001 - never give up: the cluster may be frozen
                log.warning("thaw of %s failed (attempt %d), retrying in %.1f s: %s",
                            target, attempt, delay, error)
            await asyncio.sleep(delay)
            delay, attempt = min(delay * 2, self._release_backoff[1]), attempt + 1
        if clean_up:
            self.clean_up_later(driver, target)

    async def abandon(self, frozen: FrozenCluster | None) -> None:
        """Let go of this attempt's handle without lifting the freeze (it is another
        workflow's now): the handle's connection is closed."""
        if frozen is not None:
            await self._control.run(frozen.close)

    def clean_up_later(self, driver: ClusterDriver, target: str) -> None:
        """Remove the driver's traces (triggers, a schema) in the background: they may wait
        for running queries, and the cluster is writable meanwhile."""
        async def cleanup() -> None:
            await self._control.run(driver.cleanup, target)
        self.jobs.retry_until_done(f"cleanup:{driver.name}:{target}", cleanup)
