"""What the parts count, in the Prometheus format, and how one scrape of the API sees every
part: prometheus-client's multiprocess mode.

Each part (`service`, `projection`, `api`; any number of instances) writes its counters and
histograms to files in one shared directory, `PROMETHEUS_MULTIPROC_DIR` (default
`<data dir>/metrics`; `snapshotctl up` empties it at start and hands it to its children; in
docker-compose it is on the shared volume); the API's `/metrics` adds them up
(`scrape_registry`) beside the gauges it derives from the store and the views
(`state.StateCollector`). The directory must be shared by every part the API should see.

Metrics carry labels only with bounded values (a command type the service does not know
counts as `unknown`), so a hostile producer cannot make a series per message."""

import os
import socket
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

from events.commands import COMMAND_TYPES

ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds to hours: a SQLite snapshot takes milliseconds, a pg_dump of a warehouse hours.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
                    7200, 14400, float("inf"))

COMMANDS = Counter("dws_snapshots_commands", "Commands taken from snapshot.commands, by type "
                   "and outcome (accepted, rejected, duplicate, dead-lettered)",
                   ["type", "outcome"], registry=None)
DEAD_LETTERED = Counter("dws_snapshots_dead_lettered", "Records sent to the DLQ: undecodable, "
                        "or failing after every attempt", ["reason"], registry=None)
WORKFLOW_SECONDS = Histogram("dws_snapshots_workflow_seconds", "Snapshot workflows from start "
                             "(or resumption) to the recorded outcome, by driver and result "
                             "(completed, failed, stale, cancelled, error)", ["driver", "result"],
                             buckets=DURATION_BUCKETS, registry=None)
READ_ONLY_SECONDS = Histogram("dws_snapshots_read_only_seconds", "How long clusters really "
                              "refused writes for a snapshot: from the freeze to the release",
                              ["driver"], buckets=DURATION_BUCKETS, registry=None)
PART_METRICS = (COMMANDS, DEAD_LETTERED, WORKFLOW_SECONDS, READ_ONLY_SECONDS)


def command_handled(command_type: str, outcome: str) -> None:
    known = command_type if command_type in COMMAND_TYPES else "unknown"
    COMMANDS.labels(known, str(outcome)).inc()


def configure(directory: Path, part: str, empty: bool = False) -> Path:
    """Count into files in `directory` from now on (call it before anything is counted);
    `empty`: remove what earlier processes left (`up`, before it starts its parts).
    Children of this process inherit the directory through the environment."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if empty:
        for leftover in directory.glob("*.db"):
            leftover.unlink(missing_ok=True)
    os.environ[ENV] = str(directory)
    # Files are named by process: the pid alone collides when parts run in containers of
    # their own (each one pid 1) on a shared volume. No "_": the collector splits on it.
    host = socket.gethostname().replace("_", "-")
    values.ValueClass = values.MultiProcessValue(lambda: f"{part}-{host}-{os.getpid()}")
    for reason in ("undecodable", "failed"):  # 0 from the start: increase() sees the first one
        DEAD_LETTERED.labels(reason)
    return directory


def scrape_registry(*collectors) -> CollectorRegistry:
    """What `/metrics` shows: every part's counts (from the shared directory when this
    process counts there, else this process's own) and the given collectors."""
    registry = CollectorRegistry(auto_describe=True)
    if directory := os.environ.get(ENV):
        MultiProcessCollector(registry, directory)
    else:
        for metric in PART_METRICS:
            registry.register(metric)
    for collector in collectors:
        registry.register(collector)
    return registry
