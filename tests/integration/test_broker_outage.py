"""Broker outage: the relay keeps its position while the broker is away, resumes from it
when a broker answers again, and `replay --republish` refills a topic that the embedded
broker lost on restart (it keeps nothing on disk)."""

import asyncio

import pytest
from aiokafka.errors import KafkaError

from services.snapshots import bootstrap, replay
from services.snapshots.broker import EmbeddedBroker
from services.snapshots.relay import Relay, SharedProducer
from services.snapshots.settings import Settings
from events.kafka import ensure_topics
from tests.integration.test_relay_and_projection import read_topic, take_snapshot


async def test_the_relay_resumes_after_an_outage_and_republish_recovers_history(tmp_path):
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    settings = Settings(data_dir=tmp_path, kafka_bootstrap_servers=broker.bootstrap_servers,
                        events_topic="outage.events")
    try:
        await ensure_topics(settings.kafka_bootstrap_servers, 3, [settings.events_topic])
        app = await take_snapshot(settings, "before-outage", "cmd-1")
        relay = Relay(app, SharedProducer(settings.kafka_bootstrap_servers), settings.events_topic, "test")
        while await relay.publish_pending():
            pass
        position = relay.position()

        broker.stop()
        await take_snapshot(settings, "during-outage", "cmd-2")
        outage = Relay(app, SharedProducer(settings.kafka_bootstrap_servers), settings.events_topic, "test")
        with pytest.raises((KafkaError, OSError, asyncio.TimeoutError)):
            await asyncio.wait_for(outage.publish_pending(), 30)
        assert outage.position() == position  # nothing was marked published

        broker.start()  # same port, empty: the embedded broker keeps nothing
        await ensure_topics(settings.kafka_bootstrap_servers, 3, [settings.events_topic])
        resumed = Relay(app, SharedProducer(settings.kafka_bootstrap_servers), settings.events_topic, "test")
        while await resumed.publish_pending():
            pass
        after_restart = await read_topic(settings, 5)
        assert [e.type for e in after_restart] == ["ClusterLocked", "SnapshotStarted", "ClusterReadOnly",
                                                   "SnapshotCompleted", "ClusterUnlocked"]
        assert {e.correlationid for e in after_restart} == {"cmd-2"}

        parts = bootstrap.build_replay(settings)
        sent = await replay.republish(parts, settings.kafka_bootstrap_servers, settings.events_topic, "test")
        history = {e.id for e in replay.stored_envelopes(parts, "test")}
        topic = await read_topic(settings, 5 + sent)
        assert {e.id for e in topic} == history and sent == len(history)
    finally:
        broker.stop()


def test_the_embedded_broker_dies_with_the_process_that_started_it(tmp_path):
    import subprocess
    import sys
    import time

    from services.snapshots.broker import free_port, is_listening

    port = free_port()
    starter = subprocess.Popen([sys.executable, "-c",
                                "import time; from services.snapshots.broker import EmbeddedBroker; "
                                f"EmbeddedBroker(port={port}).start(); print('up', flush=True); time.sleep(60)"],
                               stdout=subprocess.PIPE, text=True)
    assert starter.stdout.readline().strip() == "up"
    assert is_listening(f"127.0.0.1:{port}")
    starter.kill()  # SIGKILL: no cleanup code runs in the starter
    starter.wait()
    deadline = time.monotonic() + 10
    while is_listening(f"127.0.0.1:{port}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not is_listening(f"127.0.0.1:{port}"), "an orphaned broker still holds the port"
