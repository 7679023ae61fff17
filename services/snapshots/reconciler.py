"""The reconciler: finds clusters whose owner is this worker and that are locked with no
workflow running here, or frozen with no snapshot being created, and finishes them —
resumes the workflow, or lifts the freeze and removes its traces. It runs every
`SNAPSHOT_RECONCILE_INTERVAL_SECONDS` as a background job, so a freeze left behind by
anything (a crash between steps, a release that failed for a while) does not outlive it."""

import logging
from collections.abc import Callable

from services.snapshots.application import SnapshotsApplication
from services.snapshots.freezing import Freezer
from services.snapshots.threads import ThreadPool
from services.snapshots.workflow import SnapshotWorkflow

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, app: SnapshotsApplication, workflow: SnapshotWorkflow, freezer: Freezer,
                 store: ThreadPool):
        self._app = app
        self._workflow = workflow
        self._freezer = freezer
        self._store = store

    async def reconcile(self, owns: Callable[[str], int | None]) -> int:
        """One pass over the clusters this worker owns; returns how many it acted on."""
        acted = 0
        for cluster in await self._store.run(self._app.all_clusters):
            partition = owns(cluster.cluster_name)
            if partition is None:
                continue
            if cluster.is_creating_snapshot:
                acted += self._resume_if_idle(cluster, partition)
            else:
                acted += await self._thaw_if_frozen(cluster)
        return acted

    def _resume_if_idle(self, cluster, partition: int) -> int:
        if self._workflow.is_running(cluster.cluster_name):
            return 0
        log.warning("reconciler: %s is locked for %s with no workflow running; resuming it",
                    cluster.cluster_name, cluster.snapshot_name)
        self._workflow.start(cluster.cluster_name, partition)
        return 1

    async def _thaw_if_frozen(self, cluster) -> int:
        driver = self._freezer.drivers.get(cluster.driver)
        if driver is None:
            return 0
        try:
            frozen = await self._freezer.is_frozen(driver, cluster.target)
        except Exception as error:  # noqa: BLE001 - an unreachable cluster is tried next pass
            log.warning("reconciler: cannot check %s: %s", cluster.cluster_name, error)
            return 0
        if not frozen:
            self._freezer.clean_up_later(driver, cluster.target)  # traces of a crash, if any
            return 0
        log.warning("reconciler: %s refuses writes but no snapshot is being created; thawing it",
                    cluster.cluster_name)
        await self._freezer.release(driver, cluster.target, None)
        return 1
