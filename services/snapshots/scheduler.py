"""The service's own commands: a policy's slots and retention's expiries. Every
`SNAPSHOT_SCHEDULER_INTERVAL_SECONDS` (a periodic job of `jobs.py`), for the clusters whose
partition this worker owns:

- **Schedules.** For a cluster with a policy, the latest slot at or before now (and not
  before the policy was set) gets a `TakeScheduledSnapshot` whose command id is derived
  from the cluster and the slot (`policies.slot_command_id`). The command goes through
  `SnapshotsApplication.handle` like any other, so its `CommandRecord`, saved in the same
  transaction as its effects, makes every repeat (the next tick, a restarted worker,
  another instance during a rebalance) a no-op: each slot has exactly one outcome, a
  snapshot or a `ScheduledSnapshotSkipped`. Only the latest slot is ever issued: after
  downtime the slots missed before it are not taken.
- **Retention.** A snapshot past its retention (`Snapshot.is_expired`: Automated ones after
  the keep_days in force when they were taken, manual ones after their retention_days)
  gets an `ExpireSnapshot` with an id derived from its name and aggregate version:
  `SnapshotDeleted` (reason `expired`) once (a deleted snapshot cannot be deleted again), then its files are removed by the retried delete job.
- **Leftovers.** A deleted snapshot whose files are still in a repository (a crash before
  its delete job finished: the local directory, an S3 repository, a copy target) has them
  removed again, by the same retried job, at the next pass.

A command that fails (the store away) is simply issued again at the next tick. These
commands carry `authtype=system`, `authid=dws-snapshots-scheduler`."""

import asyncio
import logging
from collections.abc import Callable

from events.vocabulary import name_key
from services.snapshots.application import Outcome, SnapshotsApplication
from services.snapshots.domain import CommandContext
from services.snapshots.handlers import ExpireSnapshot, TakeScheduledSnapshot
from services.snapshots.policies import expiry_command_id, latest_slot, slot_command_id
from services.snapshots.repository import LOCAL
from services.snapshots.threads import ThreadPool
from services.snapshots.workflow import SnapshotWorkflow

log = logging.getLogger(__name__)

SYSTEM = CommandContext(authtype="system", authid="dws-snapshots-scheduler")


class Scheduler:
    def __init__(self, app: SnapshotsApplication, workflow: SnapshotWorkflow, store: ThreadPool):
        self._app = app
        self._workflow = workflow
        self._store = store

    async def tick(self, owns: Callable[[str], int | None]) -> int:
        """One pass; returns how many commands it issued that had an effect."""
        clusters, snapshots = await self._store.run(self._state)
        now = self._app.clock.now()
        issued, deleted = 0, []
        for cluster in clusters:
            partition = owns(cluster.cluster_name)
            if partition is None or cluster.policy is None:
                continue
            slot = latest_slot(cluster.policy.schedule, now)
            if slot < cluster.policy.set_at:
                continue
            issued += await self._issue(slot_command_id(cluster.cluster_name, slot),
                                        TakeScheduledSnapshot(cluster_name=cluster.cluster_name, slot=slot),
                                        partition)
        for snapshot in snapshots:
            partition = owns(snapshot.cluster_name)
            if partition is None:
                continue
            if snapshot.is_expired(now):
                issued += await self._issue(expiry_command_id(snapshot.snapshot_name, snapshot.version),
                                            ExpireSnapshot(cluster_name=snapshot.cluster_name,
                                                           snapshot_name=snapshot.snapshot_name), partition)
            elif snapshot.deleted:
                deleted.append(snapshot)
        if deleted:
            await self._remove_leftovers(deleted)
        return issued

    async def _remove_leftovers(self, deleted: list) -> None:
        """Files of deleted snapshots still in a repository (a crash lost their delete job):
        one listing per repository (the default, local, the copy targets, any a deleted
        snapshot names), then the retried delete job of each snapshot found there."""
        repositories = self._workflow.repositories
        urls = {repositories.default.url, LOCAL, *repositories.copy_targets}
        for snapshot in deleted:
            urls.update([getattr(snapshot, "repository", None) or LOCAL, *getattr(snapshot, "copies", {})])
        for url in sorted(urls):
            try:
                repository = repositories.get(url)
                stored = await asyncio.to_thread(repository.stored_snapshots)
            except Exception as error:  # noqa: BLE001 - the next pass looks again
                log.warning("scheduler: cannot list %s for leftovers of deleted snapshots: %s", url, error)
                continue
            for snapshot in deleted:
                if (name_key(snapshot.cluster_name), name_key(snapshot.snapshot_name)) in stored:
                    log.info("scheduler: removing the leftover files of deleted snapshot %s from %s",
                             snapshot.snapshot_name, url)
                    self._workflow.delete_files(snapshot.cluster_name, snapshot.snapshot_name,
                                                repository=repository.url)

    def _state(self) -> tuple[list, list]:
        return self._app.all_clusters(), self._app.all_snapshots()

    async def _issue(self, command_id: str, command, partition: int) -> int:
        if await self._store.run(self._app.has_seen, command_id):
            return 0
        outcome = await self._store.run(self._app.handle, command_id, command, context=SYSTEM)
        log.info("scheduler: %s %s of %s: %s", type(command).__name__, command_id, command.cluster_name, outcome)
        if outcome != Outcome.ACCEPTED:
            return 0
        self._workflow.on_accepted(command, partition)
        return 1
