"""Cluster targets are checked before anything connects or opens a file: every form of
PostgreSQL target libpq accepts, SQLite paths on real files and symlinks, and the setting
SNAPSHOT_ALLOWED_TARGETS."""

from pathlib import Path

import pytest

from services.snapshots.rules import CommandNotAccepted
from services.snapshots.targets import AllowedTargets, check_target


@pytest.fixture
def data_dir(tmp_path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


@pytest.fixture
def local(data_dir) -> AllowedTargets:
    return AllowedTargets.parse(None, data_dir)


def refusal(driver: str, target: str, allowed: AllowedTargets) -> CommandNotAccepted:
    with pytest.raises(CommandNotAccepted) as refused:
        check_target(driver, target, allowed)
    return refused.value


@pytest.mark.parametrize("target", [
    "postgresql://postgres@127.0.0.1:5432/warehouse",
    "postgres://localhost/warehouse",
    "postgresql://[::1]:5433/warehouse?sslmode=require&application_name=dws",
    "postgresql:///warehouse?host=/var/run/postgresql",
    "postgresql://%2Fvar%2Frun%2Fpostgresql/warehouse",
    "postgresql://",
    "host=127.0.0.1 port=5432 dbname=warehouse user=dws sslmode=prefer connect_timeout=5",
    "dbname=warehouse",
    "host=localhost,127.0.0.1 port=5432,5433 dbname=warehouse",
    "postgresql://localhost:5432,127.0.0.1:5433/warehouse",
])
def test_a_local_postgresql_target_is_accepted_unchanged_by_default(target, local):
    assert check_target("postgres", target, local) == target


@pytest.mark.parametrize("target", [
    "postgresql://u:hunter2@[localhost]/db",
    "postgresql://u:hunter2@localhost/db",
    "postgresql://u@localhost/db?password=hunter2",
    "postgresql://u@localhost/db?pass%77ord=hunter2",
    "postgresql://u:pa%40hunter2@localhost/db",
    "host=localhost password=hunter2",
    "host=localhost password='my hunter2'",
    "  password = hunter2   host=localhost",
    "host=localhost sslpassword=hunter2",
    "postgresql://localhost/db?sslpassword=hunter2",
])
def test_a_password_in_any_form_is_refused_as_a_secret_without_repeating_it(target, local):
    refused = refusal("postgres", target, local)
    assert refused.code == "secret_in_command"
    assert "hunter2" not in refused.reason


@pytest.mark.parametrize("target", [
    "postgresql://u:hunter2@localhost/db?foo=bar",  # unknown URI parameter: libpq refuses it
    "host=localhost password='hunter2",  # unterminated quote
    "host=localhost\x00 password=hunter2",  # libpq would stop reading at the NUL
    "dbname='host=localhost password=hunter2'",  # a connection string as the database name
])
def test_a_password_in_a_target_libpq_would_refuse_is_still_called_a_secret(target, local):
    refused = refusal("postgres", target, local)
    assert (refused.code, "hunter2" in refused.reason) == ("secret_in_command", False)


@pytest.mark.parametrize("target, named", [
    ("service=warehouse", "service"),
    ("postgresql://localhost/db?service=warehouse", "service"),
    ("host=localhost hostaddr=203.0.113.9", "hostaddr"),
    ("host=localhost passfile=/etc/secrets/pgpass", "passfile"),
])
def test_keys_that_reach_around_the_allow_list_are_not_allowed_and_named(target, named, local):
    refused = refusal("postgres", target, local)
    assert refused.code == "target_not_allowed"
    assert f"must not set {named}:" in refused.reason or f"must not name a {named}:" in refused.reason


@pytest.mark.parametrize("target, key", [
    ("host=localhost options='-c default_transaction_read_only=off'", "options"),
    ("host=localhost sslrootcert=/etc/ca.pem", "sslrootcert"),
    ("postgresql://localhost/db?target_session_attrs=any", "target_session_attrs"),
    ("host=localhost krbsrvname=postgres", "krbsrvname"),
])
def test_any_other_libpq_key_is_an_invalid_command_naming_the_key(target, key, local):
    refused = refusal("postgres", target, local)
    assert (refused.code, f"must not set {key};" in refused.reason) == ("invalid_command", True)


@pytest.mark.parametrize("target", [
    "garbage", "postgresql://localhost/db?foo=bar", "host='localhost", "host=localhost\x00",
    "POSTGRESQL://localhost/db", "host=localhost port=abc", "host=localhost port=0",
    "host=localhost port=70000", "host=a,b,c port=1,2", "dbname=postgresql://localhost/other",
    "", "   ", "host=localhost dbname=" + "x" * 5000,
])
def test_a_target_that_does_not_parse_is_an_invalid_command(target, local):
    assert refusal("postgres", target, local).code == "invalid_command"


@pytest.mark.parametrize("target", [
    "postgresql://db.example.com/warehouse",
    "host=localhost,db.example.com port=5432",
    "postgresql://localhost:5432,db.example.com:5432/warehouse",
    "postgresql://localhost/warehouse?host=db.example.com",
    "host=localhost host=db.example.com",
    "host=127.0.0.2",
    "host=127.1",  # resolves to 127.0.0.1, but names are compared as written
])
def test_every_host_libpq_would_try_must_be_allowed(target, local):
    refused = refusal("postgres", target, local)
    assert refused.code == "target_not_allowed"
    assert "is not allowed by SNAPSHOT_ALLOWED_TARGETS" in refused.reason


def test_the_refusal_names_the_server_and_port_that_is_not_allowed(local):
    refused = refusal("postgres", "host=localhost,db.example.com port=5432,6432", local)
    assert refused.reason == ("PostgreSQL server db.example.com:6432 is not allowed by "
                              "SNAPSHOT_ALLOWED_TARGETS")


def test_a_configured_server_is_allowed_on_its_port_only_and_local_ones_no_longer(data_dir):
    allowed = AllowedTargets.parse("/srv/warehouses, db.internal:5432", data_dir)
    assert check_target("postgres", "postgresql://u@DB.Internal/w", allowed)
    assert check_target("postgres", "host=db.internal port=5432", allowed)
    for target in ("host=db.internal port=5433", "postgresql://localhost/w", "dbname=w",
                   "host=/var/run/postgresql"):
        assert refusal("postgres", target, allowed).code == "target_not_allowed"


def test_a_configured_host_without_port_allows_every_port(data_dir):
    allowed = AllowedTargets.parse("db.internal", data_dir)
    assert check_target("postgres", "host=db.internal port=6543", allowed)


def test_allowing_localhost_allows_a_target_without_a_host(data_dir):
    allowed = AllowedTargets.parse("localhost:5432", data_dir)
    assert check_target("postgres", "dbname=warehouse", allowed)
    assert refusal("postgres", "port=5433", allowed).code == "target_not_allowed"


def test_an_ipv6_entry_allows_the_same_address_however_written(data_dir):
    allowed = AllowedTargets.parse("[::1]:5432", data_dir)
    assert check_target("postgres", "postgresql://[::1]/w", allowed)
    assert check_target("postgres", "host=0:0:0:0:0:0:0:1 port=5432", allowed)
    assert refusal("postgres", "postgresql://[::1]:5433/w", allowed).code == "target_not_allowed"


def test_a_socket_directory_must_be_under_a_configured_directory(tmp_path):
    allowed = AllowedTargets.parse(f"{tmp_path}/sockets", tmp_path)
    assert check_target("postgres", f"host={tmp_path}/sockets dbname=w", allowed)
    refused = refusal("postgres", f"host={tmp_path}/elsewhere dbname=w", allowed)
    assert refused.code == "target_not_allowed"


def test_a_star_allows_any_server_but_never_a_password_or_hostaddr(data_dir):
    allowed = AllowedTargets.parse("*", data_dir)
    assert check_target("postgres", "postgresql://db.example.com:6543/w", allowed)
    assert refusal("postgres", "postgresql://u:pw@db.example.com/w", allowed).code == "secret_in_command"
    assert refusal("postgres", "host=a hostaddr=10.0.0.1", allowed).code == "target_not_allowed"


@pytest.mark.parametrize("text", [None, "", " , ,"])
def test_an_empty_setting_means_the_data_directory_and_the_local_server(text, data_dir):
    allowed = AllowedTargets.parse(text, data_dir)
    assert check_target("sqlite", str(data_dir / "w.sqlite"), allowed)
    assert check_target("postgres", "postgresql://localhost/w", allowed)


@pytest.mark.parametrize("text", ["db:abc", "db:0", "db:65536", "[::1]:", "[::1]x", "a b", ":5432"])
def test_a_malformed_setting_entry_is_a_configuration_error_naming_it(text, data_dir):
    with pytest.raises(ValueError, match="SNAPSHOT_ALLOWED_TARGETS"):
        AllowedTargets.parse(text, data_dir)


def test_a_sqlite_file_under_the_data_directory_is_accepted_unchanged(data_dir, local):
    target = str(data_dir / "clusters" / "warehouse.sqlite")
    assert check_target("sqlite", target, local) == target


@pytest.mark.parametrize("outside", ["/etc/passwd", "{tmp}/elsewhere.sqlite",
                                     "{data}/../escape.sqlite", "{data}-evil/w.sqlite", "{data}"])
def test_a_sqlite_file_outside_the_allowed_directories_is_not_allowed(outside, data_dir, local):
    target = outside.format(tmp=data_dir.parent, data=data_dir)
    assert refusal("sqlite", target, local).code == "target_not_allowed"


def test_a_symlink_inside_the_data_directory_pointing_outside_is_not_allowed(data_dir, local):
    (data_dir.parent / "secret.sqlite").write_bytes(b"")
    (data_dir / "link.sqlite").symlink_to(data_dir.parent / "secret.sqlite")
    (data_dir / "linkdir").symlink_to(data_dir.parent)
    assert refusal("sqlite", str(data_dir / "link.sqlite"), local).code == "target_not_allowed"
    assert refusal("sqlite", str(data_dir / "linkdir" / "w.sqlite"), local).code == "target_not_allowed"


def test_a_symlink_from_outside_into_the_data_directory_is_accepted(data_dir, local):
    (data_dir.parent / "shortcut").symlink_to(data_dir)
    assert check_target("sqlite", str(data_dir.parent / "shortcut" / "w.sqlite"), local)


def test_a_relative_sqlite_path_is_resolved_against_the_current_directory(data_dir, local, monkeypatch):
    monkeypatch.chdir(data_dir)
    assert check_target("sqlite", "warehouse.sqlite", local) == "warehouse.sqlite"
    monkeypatch.chdir(data_dir.parent)
    assert refusal("sqlite", "warehouse.sqlite", local).code == "target_not_allowed"


def test_a_sqlite_path_that_cannot_be_resolved_is_an_invalid_command(data_dir, local):
    (data_dir / "loop-a").symlink_to(data_dir / "loop-b")
    (data_dir / "loop-b").symlink_to(data_dir / "loop-a")
    assert refusal("sqlite", str(data_dir / "loop-a" / "w.sqlite"), local).code == "invalid_command"
    assert refusal("sqlite", f"{data_dir}/w\x00.sqlite", local).code == "invalid_command"


def test_a_sqlite_target_with_a_password_is_a_secret(data_dir, local):
    refused = refusal("sqlite", "postgresql://u:hunter2@localhost/w", local)
    assert refused.code == "secret_in_command" and "hunter2" not in refused.reason


def test_an_unknown_driver_is_an_invalid_command(local):
    assert refusal("mysql", "mysql://localhost/w", local).code == "invalid_command"
