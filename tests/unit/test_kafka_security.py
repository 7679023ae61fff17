"""The standard KAFKA_* security variables, as every Kafka client of the service reads them
(events.kafka): the options each combination gives, the errors a bad one gives, and the
password kept out of every repr and log line."""

import logging
import re
import ssl
from pathlib import Path

import certifi
import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from events.kafka import KafkaSecurity, KafkaSettingsError

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cr3t-Passw0rd-that-must-not-leak"


def sasl(protocol="SASL_PLAINTEXT", mechanism="SCRAM-SHA-512", **more) -> dict:
    return {"KAFKA_SECURITY_PROTOCOL": protocol, "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": "snapshots-service", "KAFKA_SASL_PASSWORD": PASSWORD, **more}


def options(environ: dict) -> dict:
    return KafkaSecurity.from_environ(environ).client_options()


def test_without_any_variable_a_client_speaks_plaintext_with_no_credentials():
    assert options({}) == {"security_protocol": "PLAINTEXT"}
    assert KafkaSecurity.from_environ({}).faust_credentials() is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_gives_aiokafka_the_mechanism_the_user_and_the_password(mechanism):
    assert options(sasl(mechanism=mechanism)) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
        "sasl_plain_username": "snapshots-service", "sasl_plain_password": PASSWORD}


def test_sasl_ssl_adds_a_verifying_tls_context_that_trusts_the_ca_file():
    given = options(sasl("SASL_SSL", KAFKA_SSL_CAFILE=certifi.where()))
    context = given.pop("ssl_context")
    assert given == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                     "sasl_plain_username": "snapshots-service", "sasl_plain_password": PASSWORD}
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 100  # certifi's bundle, loaded


def test_ssl_alone_gives_a_tls_context_and_no_sasl_and_without_a_ca_file_the_systems_cas():
    given = options({"KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert set(given) == {"security_protocol", "ssl_context"} and given["security_protocol"] == "SSL"
    assert given["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_values_are_read_whatever_their_case_and_empty_variables_count_as_unset():
    assert options(sasl("sasl_plaintext", "scram-sha-256"))["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options({"KAFKA_SECURITY_PROTOCOL": "", "KAFKA_SASL_PASSWORD": ""}) == {
        "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("environ", [sasl(), sasl("SASL_SSL"), {"KAFKA_SECURITY_PROTOCOL": "SSL"}])
def test_faust_gets_the_very_options_every_other_client_gets(environ):
    security = KafkaSecurity.from_environ(environ)
    through_faust = dict(credentials_to_aiokafka_auth(security.faust_credentials()))
    direct = security.client_options()
    assert {k: v for k, v in through_faust.items() if k != "ssl_context" and v is not None} == \
        {k: v for k, v in direct.items() if k != "ssl_context"}
    assert (through_faust.get("ssl_context") is None) == (direct.get("ssl_context") is None)


def test_the_faust_credentials_are_fausts_own_kinds():
    assert isinstance(KafkaSecurity.from_environ(sasl()).faust_credentials(), faust.SASLCredentials)
    ssl_only = KafkaSecurity.from_environ({"KAFKA_SECURITY_PROTOCOL": "SSL"}).faust_credentials()
    assert isinstance(ssl_only, faust.SSLCredentials)


@pytest.mark.parametrize("environ, named", [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL"},
     "KAFKA_SECURITY_PROTOCOL='SASL' is not one of PLAINTEXT, SASL_PLAINTEXT, SASL_SSL, SSL"),
    (sasl(mechanism="GSSAPI"), "KAFKA_SASL_MECHANISM='GSSAPI' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    (sasl(KAFKA_SASL_MECHANISM=""), "KAFKA_SASL_MECHANISM must be set when KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"),
    (sasl(KAFKA_SASL_USERNAME=""), "KAFKA_SASL_USERNAME must be set when KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"),
    (sasl("SASL_SSL", KAFKA_SASL_PASSWORD=""), "KAFKA_SASL_PASSWORD must be set when KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
])
def test_a_bad_or_missing_value_is_refused_with_an_error_naming_the_variable(environ, named):
    with pytest.raises(KafkaSettingsError, match=re.escape(named)):
        KafkaSecurity.from_environ(environ)


def test_a_password_without_a_sasl_protocol_is_refused_rather_than_silently_unused():
    environ = {"KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD": PASSWORD}
    with pytest.raises(KafkaSettingsError, match="KAFKA_SASL_USERNAME is set, but "
                                                 "KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL"):
        KafkaSecurity.from_environ(environ)


def test_a_ca_file_without_tls_or_that_does_not_exist_is_refused_naming_the_variable(tmp_path):
    with pytest.raises(KafkaSettingsError, match="KAFKA_SSL_CAFILE is set, but .*=SASL_PLAINTEXT does not use TLS"):
        KafkaSecurity.from_environ(sasl(KAFKA_SSL_CAFILE=certifi.where()))
    with pytest.raises(KafkaSettingsError, match="KAFKA_SSL_CAFILE=.*: no such file"):
        KafkaSecurity.from_environ(sasl("SASL_SSL", KAFKA_SSL_CAFILE=str(tmp_path / "ca.pem")))
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(KafkaSettingsError, match="KAFKA_SSL_CAFILE=.*bad.pem"):
        options({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tmp_path / "bad.pem")})


def test_the_password_appears_in_no_repr_and_no_log_line_of_the_options(caplog):
    security = KafkaSecurity.from_environ(sasl("SASL_SSL"))
    given = security.client_options()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("kafka options %s %r, security %s, faust %s",
                                       given, given, security, security.faust_credentials())
    shown = [repr(given), str(given), repr(security), str(security), caplog.text,
             repr(security.faust_credentials()), repr(given["sasl_plain_password"])]
    assert not [text for text in shown if PASSWORD in text]
    assert given["sasl_plain_password"] == PASSWORD  # still the real password for aiokafka
    assert "snapshots-service" in caplog.text


def test_no_kafka_client_is_built_anywhere_but_in_events_kafka():
    # Every client must go through events.kafka, or one of them would miss the security settings.
    construction = re.compile(r"\bAIOKafka(Producer|Consumer|AdminClient|Client)\s*\(")
    builders = [path.relative_to(ROOT).as_posix()
                for folder in ("events", "services", "bench")
                for path in (ROOT / folder).rglob("*.py") if construction.search(path.read_text())]
    assert builders == ["events/kafka.py"]


def test_the_faust_apps_of_the_service_and_the_projection_log_in_with_the_variables(monkeypatch, tmp_path):
    from services.snapshots.settings import Settings
    from services.snapshots.worker import _faust_app

    for name, value in sasl("SASL_PLAINTEXT", "SCRAM-SHA-256").items():
        monkeypatch.setenv(name, value)
    settings = Settings(data_dir=tmp_path)
    for app_id in (settings.service_id, settings.service_id + "-projection"):
        credentials = _faust_app(settings, app_id).conf.broker_credentials
        assert credentials_to_aiokafka_auth(credentials) == {
            "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_plain_username": "snapshots-service", "sasl_plain_password": PASSWORD,
            "ssl_context": None}
