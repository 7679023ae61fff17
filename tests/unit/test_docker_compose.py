"""docker-compose.yml cannot run here (no Docker engine): check its structure instead."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_kafka_in_kraft_mode_from_the_official_image():
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]


def test_compose_runs_postgresql_15():
    assert compose()["services"]["postgres"]["image"] == "postgres:15"


def test_service_projection_and_api_are_built_from_the_dockerfile_and_use_both_backends():
    services = compose()["services"]
    assert (ROOT / "Dockerfile").is_file()
    for part in ("service", "projection", "api"):
        assert services[part]["build"] == "."
        assert services[part]["command"] == [part]
        assert services[part]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert services[part]["environment"]["SNAPSHOT_EVENT_STORE"] == "postgres"
        assert set(services[part]["depends_on"]) == {"kafka", "postgres"}


def test_no_password_is_written_into_a_dsn():
    for part in ("service", "projection", "api"):
        dsn = compose()["services"][part]["environment"]["SNAPSHOT_POSTGRES_DSN"]
        assert ":" not in dsn.split("@")[0].removeprefix("postgresql://")
