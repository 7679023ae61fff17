"""The long-running workflows, driven by accepted commands and resumed from the store.

Snapshot: lock → freeze → read-only → copy → release → complete (or fail) → unlock.
Restore: Restoring → driver restore → RestoreCompleted + the new cluster registered (or
RestoreFailed). Every step is recorded in the event store before the next, so the owner
of a cluster's partition finds clusters still `Creating snapshot` and snapshots still
`Restoring` (at start-up, and through the reconciler) and runs them again.

What makes it safe:
- whatever happens after `ClusterLocked` (a freeze that fails, a copy that fails, a
  cancel), the unlock is recorded only after an idempotent release has succeeded
  (`Freezer.release`, retried until done);
- every step is fenced to the snapshot that started it: a stale workflow (its partition
  moved, the instance was paused) cannot complete, fail or unfreeze the next snapshot;
- each attempt copies into a directory of its own; only the attempt recorded in
  `SnapshotCompleted` is the snapshot, so two attempts never write the same files;
- the workflows of a revoked partition are cancelled: the copy stops (pg_dump killed,
  the SQLite backup stopped between steps), the cluster is released, nothing is recorded,
  and the partition's new owner resumes them;
- a cancel requested by a user (`CancelSnapshotRequested`, recorded first) stops the copy
  the same way, then the cluster is released, the snapshot's files removed, and
  `SnapshotCancelled` + `ClusterUnlocked` recorded together; a workflow resumed after a
  crash finds the request in the store and finishes the cancel without copying.

While it copies, the driver's progress goes out as `SnapshotProgress` telemetry
(`progress.py`).

Store calls run in the store's thread pool; freezes and copies in the Freezer's pools."""

import asyncio
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from eventsourcing.persistence import IntegrityError

from events import commands as c
from events.vocabulary import SnapshotStatus, name_key
from services.snapshots.domain import snapshot_id
from services.snapshots import logs, metrics
from services.snapshots.application import SnapshotsApplication
from services.snapshots.drivers import DriverError
from services.snapshots.drivers.base import CopyCancelled
from services.snapshots.domain import command_record_id
from services.snapshots.freezing import Freezer
from services.snapshots.handlers import ExpireSnapshot, TakeScheduledSnapshot
from services.snapshots.repository import Repositories, SnapshotKey, copy_snapshot, normalized_url
from services.snapshots.progress import ProgressPublisher
from services.snapshots.published import context_of
from services.snapshots.threads import ThreadPool

log = logging.getLogger(__name__)

#: The outcome of a copy stopped by a user's cancel (a str outcome is a failure's reason).
CANCELLED = object()


class SnapshotWorkflow:
    """Runs at most one workflow per cluster (or snapshot) at a time, in the background."""

    def __init__(self, app: SnapshotsApplication, freezer: Freezer, repository: Repositories | Path,
                 store: ThreadPool, progress: ProgressPublisher | None = None):
        self._app = app
        #: Where copies report progress (None: not reported).
        self.progress = progress
        #: The cancel event of each running snapshot copy, by cluster key.
        self._cancels: dict[str, threading.Event] = {}
        self.freezer = freezer
        # A Path: the local repository in that directory (tests, older callers).
        self.repositories = (repository if isinstance(repository, Repositories)
                             else Repositories.local_only(Path(repository)))
        self._store = store
        self._running: dict[str, asyncio.Task] = {}
        self._partition_of: dict[str, int | None] = {}

    def on_accepted(self, command: c.Command, partition: int | None = None) -> None:
        if isinstance(command, (c.CreateSnapshotRequested, TakeScheduledSnapshot)):
            self.start(command.cluster_name, partition)
        elif isinstance(command, c.RestoreSnapshotRequested):
            self._spawn("restore:" + name_key(command.snapshot_name), self.restore(command.snapshot_name),
                        partition)
        elif isinstance(command, (c.DeleteSnapshotRequested, ExpireSnapshot)):
            self.delete_files(command.cluster_name, command.snapshot_name)
        elif isinstance(command, c.CopySnapshotRequested):
            self.start_copy(command.snapshot_name, normalized_url(command.target_repository), partition)
        elif isinstance(command, c.CancelSnapshotRequested):
            self.cancel(command.cluster_name, partition)

    def start_copy(self, snapshot_name: str, target: str, partition: int | None = None) -> None:
        self._spawn(f"copy:{name_key(snapshot_name)}:{target}", self.copy(snapshot_name, target), partition)

    def cancel(self, cluster_name: str, partition: int | None = None) -> None:
        """Stop the running copy of the cluster's snapshot (its workflow then records the
        cancel); with no workflow running here (after a crash), start one: it finds the
        cancel in the store and finishes it."""
        if (event := self._cancels.get(name_key(cluster_name))) is not None:
            event.set()
        self.start(cluster_name, partition)

    def start(self, cluster_name: str, partition: int | None = None) -> None:
        self._spawn("snapshot:" + name_key(cluster_name), self.run(cluster_name), partition)

    def is_running(self, cluster_name: str) -> bool:
        task = self._running.get("snapshot:" + name_key(cluster_name))
        return task is not None and not task.done()

    async def resume_interrupted(self, owns: Callable[[str], int | None]) -> int:
        """Start again every workflow the store shows unfinished, for clusters this worker
        owns (`owns(name)` gives the owning partition, or None); returns how many."""
        clusters, restoring = await self._store.run(self._unfinished)
        self.freezer.jobs.retry_until_done("abort-orphaned-uploads", self.abort_orphaned_uploads)
        self.freezer.jobs.retry_until_done("sweep-staging", self.sweep_staging)
        resumed = 0
        for cluster in clusters:
            if (partition := owns(cluster.cluster_name)) is not None and not self.is_running(cluster.cluster_name):
                log.info("resuming snapshot %s of %s", cluster.snapshot_name, cluster.cluster_name)
                self.start(cluster.cluster_name, partition)
                resumed += 1
        for snapshot in await self._store.run(lambda: list(self._app.snapshots_copying())):
            if (partition := owns(snapshot.cluster_name)) is not None:
                for target in snapshot.copying:
                    log.info("resuming the copy of %s to %s", snapshot.snapshot_name, target)
                    self.start_copy(snapshot.snapshot_name, target, partition)
                    resumed += 1
        for snapshot in restoring:
            if (partition := owns(snapshot.cluster_name)) is not None:
                log.info("resuming restore of %s", snapshot.snapshot_name)
                self._spawn("restore:" + name_key(snapshot.snapshot_name), self.restore(snapshot.snapshot_name),
                            partition)
                resumed += 1
        return resumed

    def cancel_partitions(self, partitions: set[int]) -> int:
        """Cancel the workflows started for these partitions (they were revoked)."""
        cancelled = [key for key, task in self._running.items()
                     if self._partition_of.get(key) in partitions and not task.done()]
        for key in cancelled:
            log.info("cancelling %s: its partition was revoked", key)
            self._running[key].cancel()
        return len(cancelled)

    async def wait_idle(self) -> None:
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def snapshot_directory(self, cluster_name: str, snapshot_name: str) -> Path:
        """The snapshot's directory (every attempt) in the local repository."""
        return self.repositories.get("local").directory(SnapshotKey(cluster_name, snapshot_name))

    def directory_of(self, cluster_name: str, snapshot_name: str, attempt: str | None = None) -> Path:
        """Where an attempt's files are written in the default repository (snapshots
        completed before attempts existed have theirs in the snapshot's directory itself)."""
        return self.repositories.default.directory(SnapshotKey(cluster_name, snapshot_name, attempt))

    def delete_files(self, cluster_name: str, snapshot_name: str, attempt: str | None = None,
                     repository: str | None = None) -> None:
        """Remove an attempt's files (no attempt: the snapshot's, from the repository its
        completion names, and every copy), retried until done."""
        key = SnapshotKey(cluster_name, snapshot_name, attempt)

        async def delete() -> None:
            urls = [repository] if repository else await self._store.run(self._repositories_of, key)
            for url in urls:
                await asyncio.to_thread(self.repositories.get(url).delete, key)
        self.freezer.jobs.retry_until_done(f"delete:{repository or ''}:{key.path}", delete)

    def _repositories_of(self, key: SnapshotKey) -> list[str]:
        snapshot = self._app.find(snapshot_id(key.snapshot_name))
        if snapshot is None:
            return [self.repositories.default.url]
        urls = [getattr(snapshot, "repository", None) or "local", *getattr(snapshot, "copies", {})]
        if snapshot.status in (SnapshotStatus.FAILED, SnapshotStatus.CANCELLED):  # files a crash kept
            urls.append(self.repositories.default.url)
        return list(dict.fromkeys(urls))

    async def abort_orphaned_uploads(self) -> None:
        """Abort unfinished uploads whose snapshot no workflow is writing (their writer
        died); a resumed workflow aborts those of its snapshot's earlier attempts itself."""
        for repository in {self.repositories.default, *map(self.repositories.get, self.repositories.copy_targets)}:
            if aborted := await asyncio.to_thread(repository.abort_uploads, self._writers):
                log.info("aborted %d unfinished uploads in %s", aborted, repository.url)

    async def sweep_staging(self) -> None:
        """Remove what processes that died left in the staging directory (staging.py)."""
        await asyncio.to_thread(self.repositories.staging.sweep)

    def _writers(self) -> set[tuple[str, str]]:
        """The snapshots being written: created, or copied to another repository."""
        return ({(name_key(c.cluster_name), name_key(c.snapshot_name)) for c in self._app.clusters_creating_snapshots()}
                | {(name_key(s.cluster_name), name_key(s.snapshot_name)) for s in self._app.snapshots_copying()})

    async def copy(self, snapshot_name: str, target: str) -> None:
        """Copy a snapshot's files to another repository, verified there by sha256 before
        its manifest is written; SnapshotCopied or SnapshotCopyFailed (its files removed)."""
        snapshot = await self._store.run(self._app.get_snapshot, snapshot_name)
        if target not in snapshot.copying:
            return
        key, cancel = SnapshotKey(snapshot.cluster_name, snapshot.snapshot_name, snapshot.attempt), threading.Event()
        command_id = snapshot.copies[target]  # the outcome is recorded only for this copy
        source, destination = self.repositories.get(snapshot.repository), self.repositories.get(target)
        try:
            size = await asyncio.to_thread(copy_snapshot, source, destination, key, snapshot.sha256, cancel)
        except asyncio.CancelledError:  # the partition was revoked: its new owner resumes the copy
            cancel.set()
            raise
        except Exception as error:  # noqa: BLE001 - reported as SnapshotCopyFailed
            log.warning("copy of %s to %s failed: %s", snapshot_name, target, _reason(error))
            if await self._store.run(self._app.fail_copy, snapshot_name, target, _reason(error), command_id):
                self.delete_files(snapshot.cluster_name, snapshot.snapshot_name, snapshot.attempt, target)
            return
        if not await self._store.run(self._app.complete_copy, snapshot_name, target, size, command_id):
            log.info("copy of %s to %s is stale: its outcome was recorded by another worker", snapshot_name, target)

    async def run(self, cluster_name: str) -> None:
        cluster = await self._store.run(self._app.get_cluster, cluster_name)
        if not cluster.is_creating_snapshot:
            return
        started, result = time.monotonic(), "error"
        with logs.bound(cluster=cluster.cluster_name, snapshot=cluster.snapshot_name):
            try:
                result = await self._run(cluster)
            except IntegrityError:  # another worker recorded this step first: it owns the workflow now
                result = "stale"
            except asyncio.CancelledError:  # its partition was revoked: the new owner resumes it
                result = "cancelled"
                raise
            finally:
                self._cancels.pop(name_key(cluster.cluster_name), None)
                seconds = time.monotonic() - started
                metrics.WORKFLOW_SECONDS.labels(cluster.driver, result).observe(seconds)
                log.info("snapshot %s of %s: %s after %.3f s", cluster.snapshot_name,
                         cluster.cluster_name, result, seconds)

    async def _run(self, cluster) -> str:
        """The workflow of the snapshot the cluster is locked for; returns how it ended."""
        cluster_name, snapshot_name, attempt = cluster.cluster_name, cluster.snapshot_name, uuid.uuid4().hex[:12]
        try:
            driver = self.freezer.driver(cluster.driver)
        except DriverError as error:  # nothing was frozen: record the failure at once
            await self._store.run(self._app.fail_snapshot, cluster_name, snapshot_name, str(error))
            return "failed"
        if cluster.unlocked:
            return await self._end_interrupted_online(driver, cluster)
        frozen, frozen_at, cancel, released = None, None, threading.Event(), asyncio.Event()
        self._cancels[name_key(cluster_name)] = cancel  # before the read: no cancel falls between
        snapshot = await self._store.run(self._app.get_snapshot, snapshot_name)
        try:
            if snapshot.cancel_command_id is not None:  # cancelled before a crash: copy nothing
                raise CopyCancelled("cancelled before the copy")
            frozen = await self.freezer.freeze(driver, cluster.target)
            frozen_at = time.monotonic()
            if not cluster.read_only:
                await self._store.run(self._app.make_read_only, cluster_name, snapshot_name)
            key, repository = SnapshotKey(cluster_name, snapshot_name, attempt), self.repositories.default
            source, directory = repository.source(frozen, key), repository.directory(key)
            progress = await self._reporter(cluster_name, snapshot)
            if cluster.online:
                outcome = await self._copy_online(driver, cluster, source, frozen, frozen_at, directory,
                                                  cancel, released, progress)
            else:
                outcome = await self.freezer.copy(source, directory, cancel, progress=progress)
        except (asyncio.CancelledError, IntegrityError):
            cancel.set()
            await self._release(driver, cluster.target, frozen, None if released.is_set() else frozen_at)
            raise
        except Exception as error:  # noqa: BLE001 - any failure must still unlock the cluster
            outcome = _reason(error)
            log.warning("snapshot %s of %s failed: %s", snapshot_name, cluster_name, outcome)
        if await self._store.run(self._app.creating_another, cluster_name, snapshot_name):
            # A stale workflow: the freeze now belongs to the next snapshot's workflow.
            log.warning("snapshot %s of %s is stale: another snapshot runs; leaving its freeze",
                        snapshot_name, cluster_name)
            await asyncio.shield(self.freezer.abandon(frozen))
            self.delete_files(cluster_name, snapshot_name, attempt, self.repositories.default.url)
            return "stale"
        # The read-only time is counted once: at the online copy's release, if it came.
        await self._release(driver, cluster.target, frozen, None if released.is_set() else frozen_at)
        if cluster.online:  # online: ClusterUnlocked always comes before the outcome
            await self._store.run(self._app.unlock_online, cluster_name, snapshot_name)
        if await self._store.run(self._app.cancel_requested, snapshot_name):
            outcome = CANCELLED  # even a copy that finished: the user asked before the outcome
        return await self._record(cluster_name, snapshot_name, attempt, outcome)

    async def _copy_online(self, driver, cluster, source, frozen, frozen_at: float, directory: Path,
                           cancel: threading.Event, released: asyncio.Event, progress=None):
        """An online copy: once the driver has pinned the copy's data, release the freeze (and
        set `released`) and record ClusterUnlocked while the copy goes on; the copy's outcome."""
        if not hasattr(source, "copy_online"):
            raise DriverError(f"this driver cannot take an online snapshot into {self.repositories.default.url}")
        loop, pinned = asyncio.get_running_loop(), asyncio.Event()
        copy = asyncio.ensure_future(self.freezer.copy(
            source, directory, cancel, lambda: loop.call_soon_threadsafe(pinned.set), progress))
        waiter = asyncio.ensure_future(pinned.wait())
        try:
            await asyncio.wait([copy, waiter], return_when=asyncio.FIRST_COMPLETED)
            if pinned.is_set():
                await self._release(driver, cluster.target, frozen, frozen_at, clean_up=False)
                released.set()
                await self._store.run(self._app.unlock_online, cluster.cluster_name, cluster.snapshot_name)
                log.info("snapshot %s of %s: unlocked after %.3f s; the copy goes on",
                         cluster.snapshot_name, cluster.cluster_name, time.monotonic() - frozen_at)
            return await copy
        except BaseException:
            cancel.set()
            copy.cancel()
            await asyncio.wait([copy])
            raise
        finally:
            waiter.cancel()

    async def _end_interrupted_online(self, driver, cluster) -> str:
        """An online copy stopped after the unlock (a crash, a partition moved): the database
        has changed since ClusterReadOnly, so the snapshot cannot be taken again; it fails,
        and every attempt's files are removed."""
        reason = ("the online copy was interrupted after the cluster was unlocked (the worker "
                  "stopped or its partition moved); the data of that moment cannot be copied "
                  "again: take a new snapshot")
        await self._release(driver, cluster.target, None, None)  # the freeze's traces, if any
        failed = await self._store.run(self._app.fail_snapshot, cluster.cluster_name,
                                       cluster.snapshot_name, reason)
        if failed:
            self.delete_files(cluster.cluster_name, cluster.snapshot_name)
        return "failed" if failed else "stale"

    async def _reporter(self, cluster_name: str, snapshot):
        """The copy's progress callback, with the create command's correlation and context."""
        if self.progress is None:
            return None
        try:
            context = await self._store.run(self._context_of, snapshot.command_id)
        except Exception as error:  # noqa: BLE001 - telemetry never fails a snapshot
            log.warning("no progress for %s: its command's context is unreadable: %s", snapshot.snapshot_name, error)
            return None
        return self.progress.reporter(cluster_name, snapshot.snapshot_name, snapshot.command_id, context)

    def _context_of(self, command_id: str) -> dict:
        record = self._app.find(command_record_id(command_id))
        return context_of(record) if record is not None else {"authtype": "unauthenticated"}

    async def _cancelled(self, cluster_name: str, snapshot_name: str) -> str:
        """The copy stopped and the cluster released: remove every file of the snapshot, then
        record `SnapshotCancelled` and `ClusterUnlocked` (fenced, so at most once)."""
        directory = self.snapshot_directory(cluster_name, snapshot_name)
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)
        if directory.exists():  # a file still open elsewhere: retried in the background
            self.delete_files(cluster_name, snapshot_name, repository="local")
        if self.repositories.default.url != "local":  # what an upload left: removed in the background
            self.delete_files(cluster_name, snapshot_name, repository=self.repositories.default.url)
        recorded = await self._store.run(self._app.cancel_snapshot, cluster_name, snapshot_name,
                                         "cancelled on request")
        return "cancelled_by_request" if recorded else "stale"

    async def _release(self, driver, target: str, frozen, frozen_at: float | None,
                       clean_up: bool = True) -> None:
        """Release (retried until done), then count how long the cluster refused writes."""
        await asyncio.shield(self.freezer.release(driver, target, frozen, clean_up))
        if frozen_at is not None:
            metrics.READ_ONLY_SECONDS.labels(driver.name).observe(time.monotonic() - frozen_at)

    async def _record(self, cluster_name: str, snapshot_name: str, attempt: str, outcome) -> str:
        try:
            return await self._record_outcome(cluster_name, snapshot_name, attempt, outcome)
        except IntegrityError:  # a cancel was accepted while this outcome was being saved
            if not await self._store.run(self._app.cancel_requested, snapshot_name):
                raise
            return await self._cancelled(cluster_name, snapshot_name)

    async def _record_outcome(self, cluster_name: str, snapshot_name: str, attempt: str, outcome) -> str:
        if outcome is CANCELLED:
            return await self._cancelled(cluster_name, snapshot_name)
        if isinstance(outcome, str):
            failed = await self._store.run(self._app.fail_snapshot, cluster_name, snapshot_name, outcome)
            self.delete_files(cluster_name, snapshot_name, attempt, self.repositories.default.url)
            return "failed" if failed else "stale"
        recorded = False
        try:
            recorded = await self._store.run(self._app.complete_snapshot, cluster_name, snapshot_name,
                                             outcome.size_bytes, outcome.warning, outcome.sha256, attempt,
                                             self.repositories.default.url)
        finally:
            if not recorded:  # a stale attempt: its files are nobody's snapshot
                log.info("attempt %s of snapshot %s was not recorded; removing its files", attempt, snapshot_name)
                self.delete_files(cluster_name, snapshot_name, attempt, self.repositories.default.url)
        return "completed" if recorded else "stale"

    async def restore(self, snapshot_name: str) -> None:
        snapshot = await self._store.run(self._app.get_snapshot, snapshot_name)
        if snapshot.status != SnapshotStatus.RESTORING:
            return
        source = await self._store.run(self._app.get_cluster, snapshot.cluster_name)
        key = SnapshotKey(source.cluster_name, snapshot.snapshot_name, snapshot.attempt)

        def restore(driver) -> str:  # from the repository the snapshot was written to
            with self.repositories.get(snapshot.repository).fetched(key) as directory:
                return driver.restore(directory, source.target, snapshot.restore_target, snapshot.sha256)
        try:
            driver = self.freezer.driver(source.driver)
            target = await asyncio.to_thread(restore, driver)
        except Exception as error:  # noqa: BLE001 - reported as RestoreFailed
            log.warning("restore of %s failed: %s", snapshot_name, _reason(error))
            await self._store.run(self._app.fail_restore, snapshot_name, _reason(error))
            return
        await self._store.run(self._app.complete_restore, snapshot_name, source.driver, target)

    def _unfinished(self) -> tuple[list, list]:
        return list(self._app.clusters_creating_snapshots()), list(self._app.snapshots_restoring())

    def _spawn(self, key: str, work, partition: int | None) -> None:
        if key in self._running and not self._running[key].done():
            work.close()
            return
        task = asyncio.create_task(work, name=key)
        self._running[key] = task
        self._partition_of[key] = partition
        task.add_done_callback(lambda done: self._forget(key, done))

    def _forget(self, key: str, task: asyncio.Task) -> None:
        if self._running.get(key) is task:
            del self._running[key]
            self._partition_of.pop(key, None)


def _reason(error: Exception) -> str:
    if isinstance(error, DriverError):
        return str(error) or "driver error"
    return f"{type(error).__name__}: {error}"
