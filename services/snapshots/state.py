"""What the store and the views say about how the service is doing, read by the API for
`/health` and `/metrics`: how far the relay and the projection are behind the store, the
clusters by status, which are locked for a snapshot (since when), and when each last had a
successful snapshot. Derived from the truth at each request, not counted by a process,
so they are right whichever instance did the work and after any restart."""

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

from prometheus_client.metrics_core import GaugeMetricFamily
from sqlalchemy import Engine, func, select

from events.vocabulary import ClusterStatus, TaskStatus
from services.snapshots.application import SnapshotsApplication
from services.snapshots.policies import interval_seconds
from services.snapshots.projection import POSITION
from services.snapshots.relay import Relay
from services.snapshots.views import LIVE

log = logging.getLogger(__name__)


class StorePositions:
    """The end of the store's notification log and the relay's tracked position in it. The
    store is opened at first use (and again after a failure), so that the API starts and
    answers `/health` while the store is away."""

    def __init__(self, open_store: Callable[[], SnapshotsApplication]):
        self._open_store = open_store
        self._store = None
        self._lock = threading.Lock()

    def _opened(self) -> tuple[SnapshotsApplication, object]:
        with self._lock:
            if self._store is None:
                app = self._open_store()
                self._store = (app, app.factory.tracking_recorder())
            return self._store

    def read(self) -> tuple[int, int]:
        """(the last notification id in the store, the relay's position)."""
        app, tracking = self._opened()
        return (app.recorder.max_notification_id() or 0,
                tracking.max_tracking_id(Relay.tracking_name) or 0)


def projection_position(engine: Engine) -> int:
    table = LIVE.position
    with engine.connect() as connection:
        return connection.execute(select(table.c.position).where(table.c.name == POSITION)).scalar() or 0


def clusters_by_status(engine: Engine) -> dict[str, int]:
    clusters = LIVE.clusters
    counts = dict.fromkeys(ClusterStatus, 0)  # every status, 0 included: alerts see a series
    with engine.connect() as connection:
        counts.update(connection.execute(select(clusters.c.status, func.count()).group_by(clusters.c.status)).all())
    return counts


def locked_since(engine: Engine) -> list[tuple[str, datetime]]:
    """Clusters locked for a snapshot now, and the time of their lock (`ClusterLocked`)."""
    clusters, history = LIVE.clusters, LIVE.history
    since = (select(func.max(history.c.time))
             .where(history.c.cluster_key == clusters.c.key, history.c.type == "ClusterLocked")
             .scalar_subquery())
    query = select(clusters.c.name, since).where(clusters.c.task_status == TaskStatus.CREATING_SNAPSHOT)
    with engine.connect() as connection:
        return [(name, moment) for name, moment in connection.execute(query) if moment is not None]


def last_successes(engine: Engine) -> list[tuple[str, datetime]]:
    """Each cluster's last `SnapshotCompleted`, from the history (which keeps it when the
    snapshot is deleted)."""
    clusters, history = LIVE.clusters, LIVE.history
    last = (select(history.c.cluster_key, func.max(history.c.time).label("time"))
            .where(history.c.type == "SnapshotCompleted").group_by(history.c.cluster_key).subquery())
    query = select(clusters.c.name, last.c.time).join(last, last.c.cluster_key == clusters.c.key)
    with engine.connect() as connection:
        return list(connection.execute(query).all())


def policy_intervals(engine: Engine, now: datetime | None = None) -> list[tuple[str, float]]:
    """Each cluster with a policy, and the time between its policy's slots (for a cron
    schedule: from the latest slot to the next)."""
    clusters = LIVE.clusters
    now = now or datetime.now(timezone.utc)
    with engine.connect() as connection:
        rows = connection.execute(select(clusters.c.name, clusters.c.policy)
                                  .where(clusters.c.policy.is_not(None))).all()
    return [(name, interval_seconds(policy["schedule"], now)) for name, policy in rows if policy]


def epoch_seconds(moment: datetime) -> float:
    if moment.tzinfo is None:  # SQLite keeps no zone; everything is stored in UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


class StateCollector:
    """The state-derived gauges of `/metrics`. A source that does not answer leaves its
    gauges out of that scrape (and is logged); `/health` names it."""

    def __init__(self, store: StorePositions, views: Engine, snapshot_timeout_seconds: float):
        self._store = store
        self._views = views
        self._timeout = snapshot_timeout_seconds

    def describe(self) -> list:
        return []  # nothing fixed to check at registration: do not query the stores then

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # The setting, so that an alert on a cluster frozen too long follows it (deploy/).
        yield GaugeMetricFamily("dws_snapshots_snapshot_timeout_seconds", "SNAPSHOT_SNAPSHOT_"
                                "TIMEOUT_SECONDS: a copy running longer fails the snapshot",
                                value=self._timeout)
        for gauges in (self._lags, self._clusters):
            try:
                yield from list(gauges())
            except Exception as error:  # noqa: BLE001 - a scrape shows what it can
                log.warning("metrics: %s left out: %s", gauges.__name__.strip("_"), error)

    def _lags(self) -> Iterator[GaugeMetricFamily]:
        store_max, relay = self._store.read()
        projection = projection_position(self._views)
        yield GaugeMetricFamily("dws_snapshots_relay_lag_events", "Events stored but not yet "
                                "published: the store's last notification id minus the relay's "
                                "position", value=max(0, store_max - relay))
        yield GaugeMetricFamily("dws_snapshots_projection_lag_events", "Events stored but not yet "
                                "in the views: the store's last notification id minus the "
                                "projection's position", value=max(0, store_max - projection))

    def _clusters(self) -> Iterator[GaugeMetricFamily]:
        by_status = GaugeMetricFamily("dws_snapshots_clusters", "Registered clusters by status",
                                      labels=["status"])
        for status, count in clusters_by_status(self._views).items():
            by_status.add_metric([str(status)], count)
        return iter((by_status,
                     _by_cluster("dws_snapshots_frozen_since_timestamp_seconds", "Clusters locked "
                                 "for a snapshot now: when they were locked", locked_since(self._views)),
                     _by_cluster("dws_snapshots_last_success_timestamp_seconds", "When each "
                                 "cluster's last successful snapshot completed", last_successes(self._views)),
                     _values_by_cluster("dws_snapshots_policy_interval_seconds", "The time between "
                                        "the slots of each cluster's snapshot policy",
                                        policy_intervals(self._views))))


def _by_cluster(name: str, documentation: str, moments: list[tuple[str, datetime]]) -> GaugeMetricFamily:
    return _values_by_cluster(name, documentation, [(cluster, epoch_seconds(moment)) for cluster, moment in moments])


def _values_by_cluster(name: str, documentation: str, values: list[tuple[str, float]]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["cluster"])
    for cluster, value in values:
        gauge.add_metric([cluster], value)
    return gauge
