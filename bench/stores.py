"""Event-store figures: raw eventsourcing saves (the baseline of the control plane) and
replay of the read model from 100k / 1M stored events (the fold: fast reader, rows folded
in memory, written once in bulk) against a raw read of the notification log (eventsourcing's
`select_notifications`, nothing decoded) in the same run."""

import os
import resource
import time
from datetime import datetime, timezone

from eventsourcing.domain import Aggregate, event

from bench.report import Report
from services.snapshots import bootstrap
from services.snapshots import replay as replay_jobs
from services.snapshots.domain import Cluster, CommandRecord, Snapshot
from services.snapshots.settings import Settings


class Counter(Aggregate):
    """A trivial aggregate for the raw-save baseline."""

    @event("Counted")
    def count(self, n: int) -> None:
        self.n = n


def raw_saves(report: Report, settings: Settings, store: str, events: int) -> None:
    app = bootstrap.make_application(settings)
    counter = Counter()
    app.save(counter)
    started = time.perf_counter()
    for n in range(events):
        counter.count(n)
        app.save(counter)
    elapsed = time.perf_counter() - started
    report.add(f"raw_eventsourcing_saves[{store}]", events=events, seconds=elapsed, events_per_s=events / elapsed)


def fill(settings: Settings, events: int, clusters: int = 200, per_save: int = 200) -> int:
    """Store complete snapshot workflows (6 events each) until `events` are stored."""
    app = bootstrap.make_application(settings)
    fleet = [Cluster.register(f"replay-{i:03d}", "sqlite", f"/bench/{i}", "r") for i in range(clusters)]
    app.save(*fleet)
    stored, workflow = clusters, 0
    now = datetime.now(timezone.utc)
    while stored < events:
        batch = []
        for _ in range(per_save):
            cluster, command_id = fleet[workflow % clusters], f"c{workflow}"
            record = CommandRecord(command_id=command_id, command_type="CreateSnapshotRequested",
                                   cluster_name=cluster.cluster_name)
            cluster.lock(f"s{workflow:08d}", command_id)
            snapshot = Snapshot.start(cluster.cluster_name, f"s{workflow:08d}", "", now, command_id)
            cluster.make_read_only(command_id)
            snapshot.complete(1024, "", now, None)
            cluster.unlock(command_id)
            batch += [record, snapshot]
            workflow += 1
        app.save(*batch, *fleet)
        stored += per_save * 6
    return app.recorder.max_notification_id()


def replay(report: Report, settings: Settings, store: str, events: int) -> None:
    stored = fill(settings, events)
    app = bootstrap.make_application(settings)
    started, read, start = time.perf_counter(), 0, 1
    while batch := app.recorder.select_notifications(start, 2000):
        read += len(batch)
        start = batch[-1].id + 1
    raw = time.perf_counter() - started
    parts = bootstrap.build_replay(settings)
    started = time.perf_counter()
    applied = replay_jobs.fold_views(parts, settings.service_id)  # the fold's road, no fallback
    elapsed = time.perf_counter() - started
    report.add(f"replay[{store}]/{events:,}", stored_events=stored, published_events_applied=applied,
               seconds=elapsed, events_per_s=stored / elapsed, raw_log_read_events_per_s=read / raw,
               ratio_to_raw=(stored / elapsed) / (read / raw), load_average=os.getloadavg()[0],
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
