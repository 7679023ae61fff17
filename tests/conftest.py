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
