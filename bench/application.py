"""The write side alone, in one process: `SnapshotsApplication` driven through the calls a
workflow makes (handle, make_read_only, creating_another, complete_snapshot) and the relay's
translation of what was stored, with no Kafka, faust, projection or driver. The ceiling
the whole system can reach on a store, and the quick loop for profiling it:

    .venv/bin/python -m bench.application --store sqlite --workflows 2000
    .venv/bin/py-spy record -o profile.svg -- .venv/bin/python -m bench.application --store sqlite
"""

import argparse
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from events import commands as c
from services.snapshots import bootstrap
from services.snapshots.relay import translate
from services.snapshots.settings import Settings


def run(settings: Settings, workflows: int, clusters: int = 200, threads: int = 1, group: bool = True) -> dict:
    """`threads`: workflows of different clusters at once, as the service's store threads
    run them; `group=False` writes each save in its own transaction (no group commit)."""
    app = bootstrap.make_application(settings)
    if not group:
        app.group_commit._max_saves = 1
    names = [f"ceil-{i:03d}" for i in range(clusters)]
    for name in names:
        app.handle(str(uuid.uuid4()), c.RegisterCluster(cluster_name=name, driver="sqlite", target=f"/bench/{name}"))
    position = app.recorder.max_notification_id() or 0
    run_id = uuid.uuid4().hex[:4]
    def workflow(i: int) -> None:
        name, snapshot = names[i % clusters], f"a{run_id}-{i:06d}"
        app.handle(str(uuid.uuid4()), c.CreateSnapshotRequested(cluster_name=name, snapshot_name=snapshot))
        app.make_read_only(name, snapshot)
        app.creating_another(name, snapshot)
        app.complete_snapshot(name, snapshot, 0, None, "", "attempt")

    def lane(lane: int) -> None:  # one lane per thread, each its own clusters, in order
        for i in range(workflows):
            if (i % clusters) % threads == lane:
                workflow(i)
    transactions = app.group_commit.transactions
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lane, range(threads)))
    workflow_seconds = time.perf_counter() - started
    transactions = app.group_commit.transactions - transactions
    relayed, started = 0, time.perf_counter()
    for batch in app.notifications(position + 1):
        relayed += len(list(translate(app, batch, "bench")))
    relay_seconds = time.perf_counter() - started
    return {"workflows": workflows, "threads": threads, "group_commit": group,
            "workflows_per_s": workflows / workflow_seconds, "writes_per_transaction": 3 * workflows / transactions,
            "relayed_events": relayed, "relay_events_per_s": relayed / relay_seconds}


def store_settings(store: str, directory: Path, dsn: str | None = None) -> Settings:
    if store == "postgres":
        return Settings(event_store="postgres", data_dir=directory, postgres_dsn=dsn, allowed_targets="*")
    return Settings(event_store=store, data_dir=directory, allowed_targets="*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="sqlite", choices=["popo", "sqlite", "postgres"])
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-group-commit", action="store_true")
    parser.add_argument("--dsn", default=None, help="PostgreSQL event store (an empty database)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(args.store, run(store_settings(args.store, Path(tmp), args.dsn), args.workflows,
                              threads=args.threads, group=not args.no_group_commit))


if __name__ == "__main__":
    main()
