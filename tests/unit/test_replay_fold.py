"""Replay's fast reader and fold, on their own: the spellings it must share with the
relay (event ids, JSON datetimes) and the event types it must know."""

from datetime import datetime, timedelta, timezone
from uuid import uuid5

import pytest
from hypothesis import given, strategies as st

from events.codec import event_adapter
from events.events import EVENT_TYPES, TELEMETRY_EVENTS, SnapshotCompleted
from services.snapshots.fold import Fold, UnknownToFold
from services.snapshots.log_reader import Published, event_id, json_datetime
from services.snapshots.published import _EVENT_ID_NAMESPACE
from services.snapshots.view_rules import HISTORY_ONLY, RULES


def test_every_published_event_type_says_what_it_does_to_the_views():
    # A new event type needs a rule in view_rules (or a place in HISTORY_ONLY): without
    # one, replay's fold refuses it and replays through the slow road. Telemetry is never
    # stored, so never replayed.
    assert set(EVENT_TYPES) - TELEMETRY_EVENTS == set(RULES) | HISTORY_ONLY


def test_the_fold_refuses_an_event_type_it_has_no_rule_for():
    progress = Published("id-1", "SnapshotProgress", datetime.now(timezone.utc),
                         {"cluster_name": "dws-one", "snapshot_name": "nightly-01"}, "c1", "7", {})
    with pytest.raises(UnknownToFold, match="SnapshotProgress"):
        Fold().apply([progress], 7)


def test_a_second_insert_of_a_key_is_set_aside_like_the_live_projections_failed_insert():
    def registered(n):
        return Published(f"id-{n}", "ClusterRegistered", datetime.now(timezone.utc),
                         {"cluster_name": "DWS-one", "driver": "sqlite", "target": f"/t/{n}",
                          "status": "Available"}, f"c{n}", str(n), {})
    fold = Fold()
    fold.apply([registered(1), registered(2)], 2)
    assert fold.tables["clusters"]["dws-one"]["target"] == "/t/1"
    assert [row["event_id"] for row in fold.history] == ["id-1"]
    assert [(p, t) for p, t, _ in fold.set_aside] == [(2, "ClusterRegistered")]


@given(st.uuids(), st.integers(min_value=1, max_value=10**9))
def test_event_ids_are_the_relays(originator, version):
    assert event_id(str(originator), version) == str(uuid5(_EVENT_ID_NAMESPACE, f"{originator}:{version}"))


@given(st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.sampled_from(
    [None, timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])))
def test_datetimes_are_spelt_as_pydantic_publishes_them(moment):
    published = event_adapter(SnapshotCompleted).dump_python(SnapshotCompleted(
        cluster_name="c", snapshot_name="s", size_bytes=1, started_at=moment, finished_at=moment), mode="json")
    stored = {"_type_": "datetime_iso", "_data_": moment.isoformat()}
    assert json_datetime(stored) == published["started_at"]


def test_an_unexpected_stored_datetime_is_left_to_the_slow_road():
    odd = timezone(timedelta(hours=1, seconds=30))
    for stored in ({"_type_": "datetime_iso", "_data_": datetime(2026, 1, 1, tzinfo=odd).isoformat()},
                   {"_type_": "other", "_data_": "2026-01-01"}, "2026-01-01T00:00:00Z",
                   {"_type_": "datetime_iso", "_data_": "yesterday"}):
        assert json_datetime(stored) is not None and not isinstance(json_datetime(stored), str)
