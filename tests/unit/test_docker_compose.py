"""docker-compose.yml cannot run here (no Docker engine): check its structure instead, and
the secured bus it sets up: SASL on every listener, a user of its own for each part, ACLs
that let each part do only its job (deploy/kafka-init.sh), and no password in the file."""

import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from events import kafka
from events.kafka import KafkaSecurity
from services.snapshots.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("service", "projection", "api")
INIT_SCRIPT = ROOT / "deploy" / "kafka-init.sh"


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def broker() -> dict:
    return compose()["services"]["kafka"]["environment"]


def username(part: str) -> str:
    return compose()["services"][part]["environment"]["KAFKA_SASL_USERNAME"]


def grants() -> set[tuple[str, str, str, str]]:
    """(principal, operation, resource type, name) of every `grant` line of the init script."""
    return {tuple(line.split()[1:]) for line in INIT_SCRIPT.read_text().splitlines()
            if line.startswith("grant ")}


def test_compose_runs_kafka_in_kraft_mode_from_the_official_image():
    kafka_service = compose()["services"]["kafka"]
    assert kafka_service["image"].startswith("apache/kafka:")
    assert "controller" in kafka_service["environment"]["KAFKA_PROCESS_ROLES"]


def test_compose_runs_postgresql_15():
    assert compose()["services"]["postgres"]["image"] == "postgres:15"


def test_service_projection_and_api_are_built_from_the_dockerfile_and_use_both_backends():
    services = compose()["services"]
    assert (ROOT / "Dockerfile").is_file()
    for part in PARTS:
        assert services[part]["build"] == "."
        assert services[part]["command"] == [part]
        assert services[part]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert services[part]["environment"]["SNAPSHOT_EVENT_STORE"] == "postgres"
        extra = {"minio-init": {"condition": "service_completed_successfully"}} if part == "service" else {}
        assert services[part]["depends_on"] == {"kafka-init": {"condition": "service_completed_successfully"},
                                                "postgres": {"condition": "service_healthy"}, **extra}


def test_no_password_is_written_into_a_dsn():
    for part in PARTS:
        dsn = compose()["services"][part]["environment"]["SNAPSHOT_POSTGRES_DSN"]
        assert ":" not in dsn.split("@")[0].removeprefix("postgresql://")


def test_every_listener_of_the_broker_takes_only_clients_that_logged_in_with_sasl():
    listeners = {entry.split("://")[0] for entry in broker()["KAFKA_LISTENERS"].split(",")}
    protocols = dict(pair.split(":") for pair in broker()["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert listeners == set(protocols) == {"CLIENTS", "CONTROLLER", "INTERNAL"}
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}


def test_the_parts_listener_takes_scram_sha_512_and_is_the_one_the_parts_are_given():
    assert broker()["KAFKA_LISTENER_NAME_CLIENTS_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert "CLIENTS://kafka:9092" in broker()["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert broker()["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"


def test_the_broker_authorizes_by_acls_allows_nothing_without_one_and_has_admin_alone_as_super_user():
    assert broker()["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert broker()["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert broker()["KAFKA_SUPER_USERS"] == "User:admin"
    assert broker()["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_the_brokers_jaas_file_with_the_admin_password_is_a_compose_secret():
    jaas = re.fullmatch(r"-Djava.security.auth.login.config=/run/secrets/([\w-]+)", broker()["KAFKA_OPTS"])
    assert jaas and jaas[1] in compose()["services"]["kafka"]["secrets"]
    assert compose()["secrets"][jaas[1]]["file"].startswith("secrets/")


@pytest.mark.parametrize("part", PARTS)
def test_each_part_logs_in_with_scram_as_a_user_of_its_own_with_the_password_from_its_env_file(part):
    environment = compose()["services"][part]["environment"]
    assert environment["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert environment["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert username(part) == f"snapshots-{part}"
    assert "KAFKA_SASL_PASSWORD" not in environment
    assert compose()["services"][part]["env_file"] == f"secrets/{part}.env"
    # what the part's own code makes of it, with the password its env_file adds
    given = {k: str(v) for k, v in environment.items()} | {"KAFKA_SASL_PASSWORD": "from-the-env-file"}
    assert KafkaSecurity.from_environ(given).client_options()["sasl_plain_username"] == username(part)


def test_no_password_is_written_in_the_compose_file_and_the_secrets_folder_is_not_committed():
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            assert "PASSWORD" not in key or key.endswith("_FILE"), (name, key, value)
    assert {entry["file"].split("/")[0] for entry in compose()["secrets"].values()} == {"secrets"}
    assert "secrets/" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_init_container_runs_once_as_admin_after_the_broker_is_healthy():
    init = compose()["services"]["kafka-init"]
    assert init["image"] == compose()["services"]["kafka"]["image"]
    assert init["restart"] == "no" and init["command"] == ["/bin/bash", "/deploy/kafka-init.sh"]
    assert init["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert "kafka-admin-client" in init["secrets"]


def test_only_the_api_and_the_service_may_write_commands_and_only_the_service_events_and_dead_letters():
    writes = {(who, name) for who, operation, kind, name in grants() if operation == "Write"}
    assert writes == {(username("api"), kafka.COMMANDS), (username("service"), kafka.COMMANDS),
                      (username("service"), kafka.EVENTS), (username("service"), kafka.COMMANDS_DLQ)}


def test_the_projection_reads_the_events_and_each_worker_reads_its_own_consumer_group():
    reads = {(who, kind, name) for who, operation, kind, name in grants() if operation == "Read"}
    service_id = Settings().service_id
    assert (username("projection"), "topic", kafka.EVENTS) in reads
    assert (username("service"), "topic", kafka.COMMANDS) in reads
    assert {(who, name) for who, kind, name in reads if kind == "group"} == {
        (username("service"), service_id), (username("projection"), f"{service_id}-projection")}
    assert not [grant for grant in grants() if grant[0] == username("api") and grant[1] != "Write"]


def test_no_grant_is_a_wildcard_a_prefix_or_all_operations_and_every_one_is_for_a_parts_user():
    script = INIT_SCRIPT.read_text()
    assert "--resource-pattern-type" not in script and "--allow-host" not in script
    for principal, operation, kind, name in grants():
        assert principal in {username(part) for part in PARTS}
        assert operation in {"Read", "Write", "Describe", "Create"}
        assert kind in {"topic", "group"} and "*" not in name
    topics = {name for _, _, kind, name in grants() if kind == "topic"}
    leader_topics = {f"{Settings().service_id}{suffix}-__assignor-__leader" for suffix in ("", "-projection")}
    assert topics == {kafka.COMMANDS, kafka.EVENTS, kafka.COMMANDS_DLQ} | leader_topics


def test_the_init_script_creates_each_parts_user_and_never_puts_a_password_on_a_command_line():
    script = INIT_SCRIPT.read_text()
    created = {tuple(line.split()[1:]) for line in script.splitlines() if line.startswith("user ")}
    assert created == {(username(part), part) for part in PARTS}
    assert "--add-config-file" in script and not re.search(r"--add-config\s", script)
    assert {f"{part}-env" for part in PARTS} <= set(compose()["services"]["kafka-init"]["secrets"])


def test_the_secrets_script_writes_every_secret_compose_reads_with_new_distinct_passwords(tmp_path):
    folder = tmp_path / "secrets"
    subprocess.run(["bash", str(ROOT / "deploy" / "kafka-secrets.sh"), str(folder)], check=True,
                   capture_output=True)
    wanted = {Path(e["file"]).name for e in compose()["secrets"].values()}
    assert wanted | {f"{part}.env" for part in PARTS} == {path.name for path in folder.iterdir()}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    env_files = [(folder / f"{part}.env").read_text() for part in PARTS]
    kafka_passwords = {re.search(r"^KAFKA_SASL_PASSWORD=(\w{32,})$", text, re.MULTILINE)[1] for text in env_files}
    assert len(kafka_passwords) == len(PARTS)
    admin = re.search(r'user_admin="(\w+)"', (folder / "kafka_server_jaas.conf").read_text())[1]
    assert f'password="{admin}"' in (folder / "kafka-admin.properties").read_text()
    again = subprocess.run(["bash", str(ROOT / "deploy" / "kafka-secrets.sh"), str(folder)], check=False,
                           capture_output=True)
    assert again.returncode == 1 and b"is not empty" in again.stderr


MINIO_INIT = ROOT / "deploy" / "minio-init.sh"


def test_snapshots_go_to_minio_through_the_aws_sdks_own_variables_and_never_a_secret_in_the_file():
    services = compose()["services"]
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")
    environment = services["service"]["environment"]
    assert environment["SNAPSHOT_REPOSITORY"] == "s3://dws-snapshots/snapshots"
    assert environment["AWS_ENDPOINT_URL_S3"] == "http://minio:9000"
    assert environment["SNAPSHOT_S3_ADDRESSING_STYLE"] == "path"  # no bucket subdomains on `minio`
    for name, service in services.items():
        assert not {"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "MINIO_ROOT_PASSWORD"} & set(
            service.get("environment") or {}), name


def test_the_service_reads_the_composed_repository_settings(monkeypatch):
    from services.snapshots.repository import Repositories

    for name, value in compose()["services"]["service"]["environment"].items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-env-file")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-env-file")
    repositories = Repositories.from_settings(Settings())
    assert repositories.default.url == "s3://dws-snapshots/snapshots"
    assert repositories.default.bucket == "dws-snapshots" and repositories.default.prefix == "snapshots"
    assert repositories.default.client.meta.endpoint_url == "http://minio:9000"


def test_minio_and_its_init_container_read_the_root_password_from_a_compose_secret():
    services = compose()["services"]
    minio, init = services["minio"], services["minio-init"]
    assert minio["environment"]["MINIO_ROOT_PASSWORD_FILE"] == "minio-root-password"
    assert "minio-root-password" in minio["secrets"] and "minio-root-password" in init["secrets"]
    assert compose()["secrets"]["minio-root-password"]["file"] == "secrets/minio-root-password"
    assert init["depends_on"] == {"minio": {"condition": "service_healthy"}} and init["restart"] == "no"
    assert init["entrypoint"] == ["/bin/sh", "/deploy/minio-init.sh"]
    assert "service-env" in init["secrets"]


def test_the_minio_init_script_makes_the_repositorys_bucket_and_a_user_allowed_only_that_bucket():
    script = MINIO_INIT.read_text()
    bucket = compose()["services"]["service"]["environment"]["SNAPSHOT_REPOSITORY"][5:].split("/")[0]
    assert f"mc mb --ignore-existing local/{bucket}" in script
    assert f'"arn:aws:s3:::{bucket}"' in script and f'"arn:aws:s3:::{bucket}/*"' in script
    assert '"*"' not in script and "s3:*" not in script
    assert 'mc admin user add local "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"' in script
    assert "/run/secrets/minio-root-password" in script


def test_the_secrets_script_gives_the_service_alone_its_minio_keys(tmp_path):
    folder = tmp_path / "secrets"
    subprocess.run(["bash", str(ROOT / "deploy" / "kafka-secrets.sh"), str(folder)], check=True,
                   capture_output=True)
    assert re.search(r"^AWS_SECRET_ACCESS_KEY=\w{32,}$", (folder / "service.env").read_text(), re.MULTILINE)
    assert "AWS_" not in (folder / "projection.env").read_text() + (folder / "api.env").read_text()
    assert len((folder / "minio-root-password").read_text()) >= 32
