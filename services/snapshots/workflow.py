"""The long-running workflows, driven by accepted commands and resumed from the store.

Snapshot: lock → read-only → copy → release → complete (or fail) → unlock. Restore:
Restoring → driver restore → RestoreCompleted + the new cluster registered (or
RestoreFailed). Every step is recorded in the event store before the next, so on
start-up the worker finds clusters still `Creating snapshot` and snapshots still
`Restoring` and runs them again. The driver's freeze is released *before* the outcome is
recorded: a crash in between leaves a workflow that is resumed, never a cluster that the
store calls unlocked but is still frozen. Store calls run in the store's thread pool;
copies and restores in asyncio's default pool."""

import asyncio
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from eventsourcing.persistence import IntegrityError

from events import commands as c
from events.vocabulary import SnapshotStatus, name_key
from services.snapshots.application import SnapshotsApplication
from services.snapshots.drivers import ClusterDriver, DriverError
from services.snapshots.threads import ThreadPool

log = logging.getLogger(__name__)


class SnapshotWorkflow:
    """Runs at most one workflow per cluster (or snapshot) at a time, in the background."""

    def __init__(self, app: SnapshotsApplication, drivers: dict[str, ClusterDriver],
                 repository: Path, timeout_seconds: float, store: ThreadPool | None = None,
                 release_attempts: int = 5):
        self._app = app
        self._store = store or ThreadPool(2, "store")
        self._release_attempts = release_attempts
        self._drivers = drivers
        self._repository = repository
        self._timeout = timeout_seconds
        self._running: dict[str, asyncio.Task] = {}

    def on_accepted(self, command: c.Command) -> None:
        if isinstance(command, c.CreateSnapshotRequested):
            self.start(command.cluster_name)
        elif isinstance(command, c.RestoreSnapshotRequested):
            self._spawn("restore:" + name_key(command.snapshot_name), self.restore(command.snapshot_name))
        elif isinstance(command, c.DeleteSnapshotRequested):
            directory = self.directory_of(command.cluster_name, command.snapshot_name)
            self._spawn("delete:" + name_key(command.snapshot_name),
                        asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True))

    def start(self, cluster_name: str) -> None:
        self._spawn("snapshot:" + name_key(cluster_name), self.run(cluster_name))

    async def resume_interrupted(self, owns: Callable[[str], bool] = lambda cluster_name: True) -> int:
        """Start again every workflow the store shows unfinished, for clusters this
        worker owns; returns how many."""
        clusters, restoring = await self._store.run(self._unfinished, owns)
        for cluster in clusters:
            log.info("resuming snapshot %s of %s", cluster.snapshot_name, cluster.cluster_name)
            self.start(cluster.cluster_name)
        for snapshot in restoring:
            log.info("resuming restore of %s", snapshot.snapshot_name)
            self._spawn("restore:" + name_key(snapshot.snapshot_name), self.restore(snapshot.snapshot_name))
        return len(clusters) + len(restoring)

    def _unfinished(self, owns: Callable[[str], bool]) -> tuple[list, list]:
        return ([c for c in self._app.clusters_creating_snapshots() if owns(c.cluster_name)],
                [s for s in self._app.snapshots_restoring() if owns(s.cluster_name)])

    async def wait_idle(self) -> None:
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def directory_of(self, cluster_name: str, snapshot_name: str) -> Path:
        # Both names passed the domain's name rule, so they are safe path components.
        return self._repository / name_key(cluster_name) / name_key(snapshot_name)

    async def run(self, cluster_name: str) -> None:
        try:
            await self._run(cluster_name)
        except IntegrityError:  # another worker recorded this step first: it owns the workflow now
            log.info("workflow of %s was advanced by another worker", cluster_name)
        except ReleaseFailed as error:
            # Recording an unlock now would be a lie: leave the workflow open; a restarted
            # worker resumes it (freezing again is harmless) and releases.
            log.error("snapshot of %s: %s; left open for a resume", cluster_name, error)

    async def _run(self, cluster_name: str) -> None:
        cluster = await self._store.run(self._app.get_cluster, cluster_name)
        if not cluster.is_creating_snapshot:
            return
        try:
            files = await self._freeze_and_copy(cluster)
        except (IntegrityError, ReleaseFailed):
            raise
        except Exception as error:  # any failure must still unlock the cluster
            reason = _reason(error)
            log.warning("snapshot of %s failed: %s", cluster_name, reason)
            await self._store.run(self._app.fail_snapshot, cluster_name, reason)
            return
        await self._store.run(self._app.complete_snapshot, cluster_name, files.size_bytes,
                              files.warning, files.sha256)

    async def restore(self, snapshot_name: str) -> None:
        snapshot = await self._store.run(self._app.get_snapshot, snapshot_name)
        if snapshot.status != SnapshotStatus.RESTORING:
            return
        source = await self._store.run(self._app.get_cluster, snapshot.cluster_name)
        try:
            driver = self._driver(source.driver)
            target = await asyncio.to_thread(
                driver.restore, self.directory_of(source.cluster_name, snapshot.snapshot_name),
                source.target, snapshot.restore_target, snapshot.sha256)
        except Exception as error:
            log.warning("restore of %s failed: %s", snapshot_name, _reason(error))
            await self._store.run(self._app.fail_restore, snapshot_name, _reason(error))
            return
        await self._store.run(self._app.complete_restore, snapshot_name, source.driver, target)

    def _spawn(self, key: str, work) -> None:
        if key in self._running and not self._running[key].done():
            work.close()
            return
        task = asyncio.create_task(work, name=key)
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))

    def _driver(self, name: str) -> ClusterDriver:
        driver = self._drivers.get(name)
        if driver is None:
            raise DriverError(f"no driver {name!r} is configured on this service")
        return driver

    async def _freeze_and_copy(self, cluster):
        driver = self._driver(cluster.driver)
        frozen = await asyncio.to_thread(driver.freeze, cluster.target)
        try:
            if not cluster.read_only:
                await self._store.run(self._app.make_read_only, cluster.cluster_name)
            copying = asyncio.to_thread(frozen.copy_to, self.directory_of(cluster.cluster_name, cluster.snapshot_name))
            try:
                return await asyncio.wait_for(copying, self._timeout)
            except TimeoutError:
                raise DriverError(f"snapshot timed out after {self._timeout:g} s") from None
        finally:
            await self._release(frozen)

    async def _release(self, frozen) -> None:
        attempts = self._release_attempts
        for attempt in range(1, attempts + 1):
            try:
                return await asyncio.to_thread(frozen.release)
            except Exception as error:  # noqa: BLE001 - retried, then reported
                log.warning("release failed (attempt %d of %d): %s", attempt, attempts, error)
                if attempt < attempts:
                    await asyncio.sleep(0.5 * 2 ** attempt)
        raise ReleaseFailed(f"could not lift read-only after {attempts} attempts")


class ReleaseFailed(Exception):
    """The cluster may still refuse writes; the workflow must not be recorded as unlocked."""


def _reason(error: Exception) -> str:
    if isinstance(error, DriverError):
        return str(error) or "driver error"
    return f"{type(error).__name__}: {error}"
