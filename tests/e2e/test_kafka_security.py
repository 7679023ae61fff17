"""The KAFKA_* security variables, as a user meets them: `snapshotctl` parts stopped by a
bad one with one line naming it, `up` refusing to answer a secured bus with its open
embedded broker, and a part that cannot log in keeping the password out of its output."""

import os

import pytest

from services.snapshots.broker import free_port, is_listening
from tests.e2e.system import snapshotctl

PASSWORD = "Part-Password-7d41-never-printed"
SCRAM = {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
         "KAFKA_SASL_USERNAME": "snapshots-service", "KAFKA_SASL_PASSWORD": PASSWORD}


def environment(tmp_path, bootstrap: str, **kafka: str) -> dict:
    plain = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    return {**plain, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SNAPSHOT_DATA_DIR": str(tmp_path),
            "SNAPSHOT_HTTP_PORT": str(free_port()), **kafka}


@pytest.mark.parametrize("part", ["service", "projection", "api"])
def test_a_part_with_an_unknown_security_protocol_stops_with_one_line_naming_the_variable(tmp_path, broker, part):
    env = environment(tmp_path, broker.bootstrap_servers, KAFKA_SECURITY_PROTOCOL="SASL")
    done = snapshotctl(part, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "snapshotctl: KAFKA_SECURITY_PROTOCOL='SASL' is not one of PLAINTEXT, SASL_PLAINTEXT, SASL_SSL, SSL"]


def test_up_does_not_start_the_open_embedded_broker_when_the_bus_is_meant_to_be_secured(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    done = snapshotctl("up", env=environment(tmp_path, address, **SCRAM), timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"snapshotctl: nothing answers at {address}, and the embedded broker speaks only PLAINTEXT "
        "(KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT): start your Kafka first")
    assert not is_listening(address)
    assert not (tmp_path / "up.pid").exists()


def test_a_service_that_cannot_log_in_says_why_and_never_prints_its_password(tmp_path, broker):
    done = snapshotctl("service", env=environment(tmp_path, broker.bootstrap_servers, **SCRAM), timeout=90)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "UnsupportedSaslMechanism" in output  # it asked the broker for SCRAM
    assert PASSWORD not in output
