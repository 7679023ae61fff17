"""The KAFKA_* security variables reach every real Kafka client. The embedded broker speaks
only PLAINTEXT, so a client told to log in with SCRAM asks it for SASL and is turned away
("unsupported SASL mechanism"): proof that the settings reached the wire. Its password is
in no log line, at any level. (That the same clients work without the variables, the rest
of the suite shows.)"""

import logging

import pytest
from aiokafka.errors import KafkaError

from events.commands import RegisterCluster
from events.kafka import ensure_topics, new_consumer, partition_count
from services.snapshots.client import EventFollower, publish_command
from services.snapshots.relay import SharedProducer

PASSWORD = "Kafka-Password-1f9c-never-in-a-log"
TOPIC = "kafkasec.plain"


async def cli_producer(bootstrap: str):
    await publish_command(bootstrap, TOPIC, RegisterCluster(cluster_name="kafkasec", driver="sqlite",
                                                            target="/nowhere.sqlite"))


async def follower(bootstrap: str):
    await EventFollower(bootstrap, TOPIC).start()


async def shared_producer(bootstrap: str):
    # the relay's, the DLQ's and the API's command producer
    await SharedProducer(bootstrap).get()


async def topic_creation(bootstrap: str):
    await ensure_topics(bootstrap, 1, [TOPIC], attempts=1)


async def counting_partitions(bootstrap: str):
    await partition_count(bootstrap, TOPIC)


async def plain_consumer(bootstrap: str):
    await new_consumer(bootstrap, group_id=None).start()


@pytest.fixture
def scram_settings(monkeypatch):
    for name, value in {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                        "KAFKA_SASL_USERNAME": "snapshots-cli", "KAFKA_SASL_PASSWORD": PASSWORD}.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("client", [cli_producer, follower, shared_producer, topic_creation,
                                    counting_partitions, plain_consumer], ids=lambda c: c.__name__)
async def test_a_client_given_scram_settings_asks_the_broker_for_sasl_and_never_logs_the_password(
        broker, scram_settings, caplog, client):
    with caplog.at_level(logging.DEBUG), pytest.raises(KafkaError):
        await client(broker.bootstrap_servers)
    assert "UnsupportedSaslMechanism" in caplog.text
    assert PASSWORD not in caplog.text
