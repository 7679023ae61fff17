"""Policy rules: the schedule syntax, keep_days and retention_days bounds, slots, the names
and command ids derived from them."""

from datetime import datetime, timezone

import pytest

from events.vocabulary import RejectionCode
from services.snapshots.policies import (automated_snapshot_name, check_policy, check_retention,
                                         expiry_command_id, interval_seconds, latest_slot,
                                         slot_command_id)
from services.snapshots.rules import CommandNotAccepted, check_snapshot_name

UTC = timezone.utc


@pytest.mark.parametrize("schedule", ["0 3 * * *", "*/15 * * * *", "30 1 * * 1-5", "0 0 1 * *",
                                      "rate(1 minute)", "rate(5 minutes)", "rate(1 hour)",
                                      "rate(12 hours)", "rate(1 day)", "rate(7 days)"])
def test_valid_schedules_are_accepted(schedule):
    check_policy(schedule, 7)


@pytest.mark.parametrize("schedule", ["", "bad", "0 3 * *", "0 0 3 * * *", "61 * * * *", "@daily",
                                      "0 0 30 2 *", "rate(0 minutes)", "rate(5 weeks)", "rate(-1 hours)",
                                      "rate(5minutes)", "rate(1.5 hours)", "cron(0 3 * * ? *)",
                                      "rate(1 hour) ", "0 3 * * * ; rm -rf /"])
def test_invalid_schedules_are_rejected_invalid_policy(schedule):
    with pytest.raises(CommandNotAccepted) as refused:
        check_policy(schedule, 7)
    assert refused.value.code == RejectionCode.INVALID_POLICY


@pytest.mark.parametrize("keep_days", [0, -1, 32, 365])
def test_keep_days_outside_1_to_31_is_rejected_invalid_policy(keep_days):
    with pytest.raises(CommandNotAccepted) as refused:
        check_policy("rate(1 day)", keep_days)
    assert refused.value.code == RejectionCode.INVALID_POLICY
    check_policy("rate(1 day)", 1)
    check_policy("rate(1 day)", 31)


@pytest.mark.parametrize("days", [-1, 1, 3653])
def test_retention_days_minus_one_or_1_to_3653(days):
    check_retention(days)


@pytest.mark.parametrize("days", [0, -2, 3654])
def test_other_retention_days_are_invalid_command(days):
    with pytest.raises(CommandNotAccepted) as refused:
        check_retention(days)
    assert refused.value.code == RejectionCode.INVALID_COMMAND


def test_the_latest_slot_of_a_cron_schedule_is_the_last_minute_at_or_before_now():
    assert latest_slot("0 3 * * *", datetime(2026, 5, 2, 3, 0, 0, tzinfo=UTC)) == datetime(2026, 5, 2, 3, 0, tzinfo=UTC)
    assert latest_slot("0 3 * * *", datetime(2026, 5, 2, 3, 0, 59, tzinfo=UTC)) == datetime(2026, 5, 2, 3, 0, tzinfo=UTC)
    assert latest_slot("0 3 * * *", datetime(2026, 5, 2, 2, 59, 59, tzinfo=UTC)) == datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    assert interval_seconds("0 3 * * *", datetime(2026, 5, 2, 4, tzinfo=UTC)) == 86400


def test_a_rate_counts_its_slots_from_the_epoch():
    assert latest_slot("rate(6 hours)", datetime(2026, 5, 2, 17, 59, tzinfo=UTC)) == datetime(2026, 5, 2, 12, tzinfo=UTC)
    assert latest_slot("rate(1 hour)", datetime(2026, 5, 2, 11, 0, 0, tzinfo=UTC)) == datetime(2026, 5, 2, 11, tzinfo=UTC)
    assert latest_slot("rate(15 minutes)", datetime(2026, 5, 2, 11, 44, 59, tzinfo=UTC)) == datetime(2026, 5, 2, 11, 30, tzinfo=UTC)
    assert interval_seconds("rate(2 days)", datetime(2026, 5, 2, tzinfo=UTC)) == 172800


def test_an_automated_name_is_auto_46_characters_of_the_cluster_and_the_slot_minute():
    slot = datetime(2026, 5, 2, 3, 4, tzinfo=UTC)
    assert automated_snapshot_name("dws-prod-1", slot) == "auto-dws-prod-1-202605020304"
    longest = automated_snapshot_name("c" * 64, slot)
    assert longest == "auto-" + "c" * 46 + "-202605020304" and len(longest) == 64
    check_snapshot_name(longest)


def test_command_ids_are_the_same_for_one_slot_and_differ_between_slots_and_clusters():
    slot = datetime(2026, 5, 2, 3, 0, tzinfo=UTC)
    assert slot_command_id("dws-prod-1", slot) == slot_command_id("DWS-Prod-1", slot.astimezone(timezone.max))
    assert slot_command_id("dws-prod-1", slot) != slot_command_id("dws-prod-2", slot)
    assert slot_command_id("dws-prod-1", slot) != slot_command_id("dws-prod-1", slot.replace(minute=1))
    assert expiry_command_id("Nightly-01", 3) == expiry_command_id("nightly-01", 3) != slot_command_id("nightly-01", slot)
    assert expiry_command_id("nightly-01", 3) != expiry_command_id("nightly-01", 5)
