"""A stored event the relay cannot translate is set aside (logged, recorded, on /health)
and stepped over; the events after it are still published. Real broker, real stores."""

from fastapi.testclient import TestClient

from events.commands import ReportClusterStatus
from events.kafka import ensure_topics
from services.snapshots import bootstrap
from services.snapshots.relay import Relay, SharedProducer
from services.snapshots.set_aside import SetAsideLog
from tests.integration.test_relay_and_projection import read_topic, settings, take_snapshot  # noqa: F401


def store_an_event_that_fits_no_published_type(app) -> None:
    """What a future mapping bug would store: a status the published language lacks."""
    cluster = app.get_cluster("dws-one")
    cluster.report_status("Melting", "cmd-bad")
    app.save(cluster)


async def test_an_untranslatable_event_is_set_aside_and_the_rest_is_published(settings):  # noqa: F811
    await ensure_topics(settings.kafka_bootstrap_servers, 3, [settings.events_topic])
    app = await take_snapshot(settings, "nightly-01", "cmd-1")
    store_an_event_that_fits_no_published_type(app)
    app.handle("cmd-2", ReportClusterStatus(cluster_name="dws-one", status="Read-only"))
    log = SetAsideLog(bootstrap.make_view_engine(settings))
    producer = SharedProducer(settings.kafka_bootstrap_servers)
    relay = Relay(app, producer, settings.events_topic, "test", log)
    while await relay.publish_pending():
        pass
    await producer.stop()

    published = await read_topic(settings, 7)
    assert [e.type for e in published][-2:] == ["ClusterUnlocked", "ClusterStatusChanged"]
    assert published[-1].correlationid == "cmd-2"
    assert relay.position() == app.recorder.max_notification_id()
    [entry] = log.latest()
    assert entry["part"] == "relay" and "ClusterStatusChanged" in entry["error"]
    health = TestClient(bootstrap.build_api(settings)).get("/health").json()
    assert health["set_aside"]["count"] == 1
