"""The snapshot workflow: lock → read-only → copy → complete (or fail) → unlock.

Every step is first recorded in the event store, so the workflow is resumable: on
start-up the worker finds clusters still `Creating snapshot` and runs them again from
where the store says they are. Whatever the driver does, the cluster ends unlocked."""

import asyncio
import logging
from pathlib import Path

from services.snapshots.application import SnapshotsApplication
from services.snapshots.drivers import ClusterDriver, DriverError

log = logging.getLogger(__name__)


class SnapshotWorkflow:
    """Runs one workflow per cluster at a time, in the background of the command agent."""

    def __init__(self, app: SnapshotsApplication, drivers: dict[str, ClusterDriver],
                 repository: Path, timeout_seconds: float):
        self._app = app
        self._drivers = drivers
        self._repository = repository
        self._timeout = timeout_seconds
        self._running: dict[str, asyncio.Task] = {}

    def start(self, cluster_name: str) -> None:
        key = cluster_name.lower()
        if key not in self._running:
            task = asyncio.create_task(self.run(cluster_name), name=f"snapshot:{key}")
            self._running[key] = task
            task.add_done_callback(lambda _: self._running.pop(key, None))

    def resume_interrupted(self) -> int:
        clusters = list(self._app.clusters_creating_snapshots())
        for cluster in clusters:
            log.info("resuming snapshot %s of %s", cluster.snapshot_name, cluster.cluster_name)
            self.start(cluster.cluster_name)
        return len(clusters)

    async def wait_idle(self) -> None:
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def run(self, cluster_name: str) -> None:
        cluster = self._app.get_cluster(cluster_name)
        if not cluster.is_creating_snapshot:
            return
        try:
            files = await self._freeze_and_copy(cluster)
        except Exception as error:  # any failure must still unlock the cluster
            reason = str(error) if isinstance(error, DriverError) else f"{type(error).__name__}: {error}"
            log.warning("snapshot of %s failed: %s", cluster_name, reason)
            self._app.fail_snapshot(cluster_name, reason or type(error).__name__)
            return
        self._app.complete_snapshot(cluster_name, files.size_bytes, files.warning)

    async def _freeze_and_copy(self, cluster):
        driver = self._drivers.get(cluster.driver)
        if driver is None:
            raise DriverError(f"no driver {cluster.driver!r} is configured on this service")
        frozen = await asyncio.to_thread(driver.freeze, cluster.target)
        try:
            if not cluster.read_only:
                self._app.make_read_only(cluster.cluster_name)
            directory = self._repository / cluster.cluster_name.lower() / cluster.snapshot_name.lower()
            copying = asyncio.to_thread(frozen.copy_to, directory)
            try:
                return await asyncio.wait_for(copying, self._timeout)
            except TimeoutError:
                raise DriverError(f"snapshot timed out after {self._timeout:g} s") from None
        finally:
            await asyncio.to_thread(frozen.release)
