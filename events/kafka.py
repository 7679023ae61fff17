"""The Kafka conventions of dws-snapshots, in one place: topic names, record keys and
headers, the broker address, the security settings (the standard KAFKA_* variables),
client construction, topic creation, and which partition a cluster's records land on.
Every producer, consumer and admin client (the service, the projection, the API, the CLI,
an outside client) is built here, so they cannot drift apart."""

import asyncio
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import murmur2

from events.vocabulary import name_key

log = logging.getLogger(__name__)

#: Default topic names (SPEC.md, "Topics"); each can be overridden by a setting.
COMMANDS = "snapshot.commands"
EVENTS = "snapshot.events"
COMMANDS_DLQ = "snapshot.commands.dlq"

#: Header on a DLQ record that carries the error.
DLQ_ERROR_HEADER = "x-snapshot-error"
CONTENT_TYPE = "application/cloudevents+json"
HEADERS = [("content-type", CONTENT_TYPE.encode())]


# --- Security: the standard KAFKA_* variables, read where every client is built -------
# Like libpq reads PG*, every Kafka client of dws-snapshots (and any outside client that
# builds its clients here) takes its security from these variables, so that no part can
# be left talking plaintext while the others authenticate.

PROTOCOL_VARIABLE = "KAFKA_SECURITY_PROTOCOL"
MECHANISM_VARIABLE = "KAFKA_SASL_MECHANISM"
USERNAME_VARIABLE = "KAFKA_SASL_USERNAME"
PASSWORD_VARIABLE = "KAFKA_SASL_PASSWORD"
CAFILE_VARIABLE = "KAFKA_SSL_CAFILE"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSettingsError(ValueError):
    """A KAFKA_* security variable that cannot be used; the message names the variable."""


class Secret(str):
    """A password that is still a `str` for aiokafka, but whose repr is masked, so that a
    dict of client options (or a client that keeps it) never shows it in a log line."""

    def __repr__(self) -> str:
        return "'**********'"


@dataclass(frozen=True)
class KafkaSecurity:
    """The validated security settings of a Kafka client."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    cafile: str | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "KafkaSecurity":
        """Read and check the five variables (an empty one counts as unset)."""
        env = os.environ if environ is None else environ
        values = {name: (env.get(name) or "").strip() or None
                  for name in (PROTOCOL_VARIABLE, MECHANISM_VARIABLE, USERNAME_VARIABLE,
                               CAFILE_VARIABLE)}
        protocol = _one_of(PROTOCOL_VARIABLE, values[PROTOCOL_VARIABLE] or "PLAINTEXT",
                           SECURITY_PROTOCOLS)
        mechanism = values[MECHANISM_VARIABLE] and _one_of(
            MECHANISM_VARIABLE, values[MECHANISM_VARIABLE], SASL_MECHANISMS)
        password = env.get(PASSWORD_VARIABLE) or None  # a password is taken as it is
        security = cls(protocol, mechanism, values[USERNAME_VARIABLE],
                       Secret(password) if password else None, values[CAFILE_VARIABLE])
        security._check()
        return security

    def _check(self) -> None:
        if self.uses_sasl:
            for name, value in ((MECHANISM_VARIABLE, self.mechanism),
                                (USERNAME_VARIABLE, self.username), (PASSWORD_VARIABLE, self.password)):
                if not value:
                    raise KafkaSettingsError(f"{name} must be set when {PROTOCOL_VARIABLE}={self.protocol}")
        else:
            # A password or mechanism given to a client that would not use it most
            # likely means the protocol was forgotten: say so instead of going plaintext.
            _refuse_unused(self.protocol, "SASL", (MECHANISM_VARIABLE, self.mechanism),
                           (USERNAME_VARIABLE, self.username), (PASSWORD_VARIABLE, self.password))
        if not self.uses_tls:
            _refuse_unused(self.protocol, "TLS", (CAFILE_VARIABLE, self.cafile))
        elif self.cafile and not os.path.isfile(self.cafile):
            raise KafkaSettingsError(f"{CAFILE_VARIABLE}={self.cafile}: no such file")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (the system's CAs, or only KAFKA_SSL_CAFILE's), None without TLS."""
        if not self.uses_tls:
            return None
        try:
            return create_ssl_context(cafile=self.cafile)
        except (OSError, ssl.SSLError) as error:
            raise KafkaSettingsError(f"{CAFILE_VARIABLE}={self.cafile}: {error}") from None

    def client_options(self) -> dict:
        """The keyword arguments of AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
        options = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        return options

    def faust_credentials(self):
        """faust's `broker_credentials` for the same settings (None: plaintext)."""
        import faust  # here, not at the top: outside clients of `events` need not have faust

        if self.uses_sasl:
            return faust.SASLCredentials(username=self.username, password=self.password,
                                         mechanism=self.mechanism, ssl_context=self.ssl_context())
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None


def _one_of(variable: str, value: str, allowed: tuple[str, ...]) -> str:
    if value.upper() not in allowed:
        raise KafkaSettingsError(f"{variable}={value!r} is not one of {', '.join(allowed)}")
    return value.upper()


def _refuse_unused(protocol: str, kind: str, *variables: tuple[str, object]) -> None:
    for name, value in variables:
        if value:
            raise KafkaSettingsError(f"{name} is set, but {PROTOCOL_VARIABLE}={protocol} does not "
                                     f"use {kind}; set {PROTOCOL_VARIABLE} too")


def security() -> KafkaSecurity:
    """The security settings of this process, from the environment."""
    return KafkaSecurity.from_environ()


def client_options() -> dict:
    """The aiokafka keyword arguments for this process's security settings."""
    return security().client_options()


def faust_credentials():
    """faust's `broker_credentials` for this process's security settings."""
    return security().faust_credentials()


def record_key(cluster_name: str) -> bytes:
    """The Kafka key of every command and event about a cluster: its name, lower-cased,
    so that every spelling of one cluster lands on one partition, in order."""
    return name_key(cluster_name).encode("utf-8")


def partition_for_key(cluster_name: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a cluster's key."""
    return (murmur2(record_key(cluster_name)) & 0x7FFFFFFF) % partitions


def first_broker(bootstrap_servers: str) -> tuple[str, int]:
    """(host, port) of the first address in a bootstrap list such as `h1:9092,h2:9092`."""
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    return host or "127.0.0.1", int(port)


def new_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    """A producer with this process's security settings."""
    # Tansu has no idempotent producer: acks=all without idempotence (SPEC.md).
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                            enable_idempotence=False, linger_ms=5,
                            request_timeout_ms=15000, retry_backoff_ms=200, **client_options())


def new_consumer(bootstrap_servers: str, **settings) -> AIOKafkaConsumer:
    """A consumer with this process's security settings and the given ones."""
    return AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, **settings, **client_options())


async def ensure_topics(bootstrap_servers: str, partitions: int, names: list[str],
                        attempts: int = 30) -> None:
    """Create the topics that are missing, with `partitions` partitions each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10000,
                                **client_options())
    for attempt in range(attempts):
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name in names if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def partition_count(bootstrap_servers: str, topic: str) -> int:
    """How many partitions the topic really has (from the broker's metadata)."""
    consumer = new_consumer(bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic} has no partitions (does it exist?)")
        return len(partitions)
    finally:
        await consumer.stop()


async def broker_answers(bootstrap_servers: str, timeout_seconds: float) -> None:
    """A metadata request to the broker, on a connection of its own; raises if no answer
    (the API's /health)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers,
                            request_timeout_ms=int(timeout_seconds * 1000), **client_options())
    try:
        await client.bootstrap()
    finally:
        await client.close()
