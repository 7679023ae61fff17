"""Shared real parts: one embedded Tansu broker for the session, PostgreSQL databases."""

import uuid

import psycopg
import pytest

from services.snapshots.broker import EmbeddedBroker

POSTGRES = dict(host="127.0.0.1", port=5432, user="postgres")


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    with EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "tansu.log") as running:
        yield running


@pytest.fixture
def postgres_database():
    """A new, empty PostgreSQL database on the local server; dropped afterwards."""
    name = f"dws_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_dsn(database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{database}"


# Private PostgreSQL servers for fault tests (tests/pg_server.py): a test may stop, crash
# and restart its own server without touching the shared one on 127.0.0.1:5432.
from tests.pg_server import PostgresTemplate, PrivateServer  # noqa: E402


@pytest.fixture(scope="session")
def private_postgres_template():
    """One initdb'd data directory for the session; every private server copies it."""
    with PostgresTemplate() as template:
        yield template


@pytest.fixture
def private_postgres(private_postgres_template):
    """A PostgreSQL server of this test's own (PrivateServer), running; stopped and its
    directory removed after the test, whether it passed or not."""
    with PrivateServer(private_postgres_template) as server:
        yield server


@pytest.fixture(scope="session")
def private_postgres_session(private_postgres_template):
    """One private server shared by the session, for tests that need a server of their own
    but no faults. A test that stops it must start() it again before it ends."""
    with PrivateServer(private_postgres_template) as server:
        yield server


from tests.s3_server import S3Server  # noqa: E402


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One S3-compatible server (moto) for the session; each test makes its own buckets."""
    with S3Server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        yield server


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The AWS SDK's variables pointing at the test server, for in-process clients."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server.env
