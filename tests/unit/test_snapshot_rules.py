"""The seed's rules, at every boundary (SPEC.md, "The seed's rules")."""

import pytest

from services.snapshots.domain import Cluster
from services.snapshots.rules import (ClusterNotReady, InvalidCommand, InvalidDescription,
                                      InvalidSnapshotName, SecretInCommand, SnapshotInProgress,
                                      check_description, check_snapshot_name)


@pytest.mark.parametrize("name", ["abcd", "a" * 64, "Nightly-01", "x_1-2", "Z999"])
def test_accepts_snapshot_names_that_follow_the_seed(name):
    check_snapshot_name(name)


@pytest.mark.parametrize("name, why", [
    ("abc", "3 characters is one too few"),
    ("a" * 65, "65 characters is one too many"),
    ("", "empty"),
    ("1abc", "starts with a digit"),
    ("-abc", "starts with a hyphen"),
    ("_abc", "starts with an underscore"),
    ("abc.d", "dot"),
    ("abc d", "space"),
    ("abcd\n", "trailing newline"),
    ("abc/d", "path separator"),
    ("abc'; DROP TABLE x;--", "SQL fragment"),
    ("ábcd", "non-ASCII letter"),
    ("аbcd", "Cyrillic look-alike a"),
])
def test_rejects_snapshot_names_that_break_the_seed(name, why):
    with pytest.raises(InvalidSnapshotName):
        check_snapshot_name(name)


@pytest.mark.parametrize("description", ["", "x" * 256, "nightly backup, before ETL (v2)"])
def test_accepts_descriptions_of_up_to_256_allowed_characters(description):
    check_description(description)


def test_rejects_a_description_of_257_characters():
    with pytest.raises(InvalidDescription, match="257"):
        check_description("x" * 257)


@pytest.mark.parametrize("character", list("!<>'=&\""))
def test_rejects_each_forbidden_character_in_a_description(character):
    with pytest.raises(InvalidDescription, match="must not contain"):
        check_description(f"before {character} after")


def a_cluster(status="Available") -> Cluster:
    cluster = Cluster.register("dws-prod-1", "sqlite", "/data/prod.sqlite", command_id="c0")
    if status != "Available":
        cluster.report_status(status, command_id="c1")
    return cluster


@pytest.mark.parametrize("status", ["Available", "Read-only", "Low performance"])
def test_a_cluster_that_is_available_read_only_or_low_performance_can_be_locked(status):
    cluster = a_cluster(status)
    cluster.lock("nightly-01", command_id="c2")
    assert (cluster.status, cluster.task_status) == ("Unavailable", "Creating snapshot")


def test_an_unavailable_cluster_cannot_take_a_snapshot():
    with pytest.raises(ClusterNotReady, match="Unavailable"):
        a_cluster("Unavailable").lock("nightly-01", command_id="c2")


def test_a_cluster_takes_one_snapshot_at_a_time():
    cluster = a_cluster()
    cluster.lock("nightly-01", command_id="c2")
    with pytest.raises(SnapshotInProgress):
        cluster.lock("nightly-02", command_id="c3")


def test_a_cluster_creating_a_snapshot_cannot_be_restarted():
    cluster = a_cluster()
    cluster.lock("nightly-01", command_id="c2")
    with pytest.raises(SnapshotInProgress):
        cluster.restart(command_id="c3")


@pytest.mark.parametrize("status", ["Available", "Read-only", "Low performance"])
def test_unlocking_returns_the_cluster_to_the_status_it_had_before(status):
    cluster = a_cluster(status)
    cluster.lock("nightly-01", command_id="c2")
    cluster.make_read_only(command_id="c2")
    assert cluster.status == "Read-only"
    cluster.unlock(command_id="c2")
    assert (cluster.status, cluster.task_status) == (status, None)


def test_cluster_state_is_rebuilt_from_its_events():
    cluster = a_cluster("Low performance")
    cluster.lock("nightly-01", command_id="c2")
    copy = None
    for domain_event in cluster.collect_events():
        copy = domain_event.mutate(copy)
    assert (copy.status, copy.prior_status, copy.snapshot_name) == (
        "Unavailable", "Low performance", "nightly-01")


@pytest.mark.parametrize("target", [
    "postgresql://admin:hunter2@db:5432/warehouse",
    "postgresql://db/warehouse?password=hunter2",
    "host=db password=hunter2",
    "host=db password = hunter2",
    "host=db PASSWORD=hunter2",
])
def test_a_target_with_a_password_is_refused(target):
    with pytest.raises(SecretInCommand):
        Cluster.register("dws-prod-2", "postgres", target, command_id="c0")


@pytest.mark.parametrize("name", ["ab", "1cluster", "../etc", "dws prod", "dws;drop"])
def test_cluster_names_follow_the_same_rule_as_snapshot_names(name):
    with pytest.raises(InvalidCommand):
        Cluster.register(name, "sqlite", "/data/x.sqlite", command_id="c0")


@pytest.mark.parametrize("description", ["line\nbreak", "tab\there", "nul\x00", "bell\x07", "del\x7f",
                                         "c1\x85", "evil\u202egnp.exe", "iso\u2066late"])
def test_a_description_with_control_or_bidi_override_characters_is_invalid(description):
    with pytest.raises(InvalidDescription, match="control or bidirectional"):
        check_description(description)


@pytest.mark.parametrize("description", ["nightly before ETL", "Überprüfung – 月次", "emoji 📦 ok"])
def test_a_description_in_any_script_is_valid(description):
    check_description(description)
