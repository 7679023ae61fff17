"""Snapshot policies: the schedule syntax, its slots, and the names and command ids the
service derives from them. Pure functions over `croniter` and the standard library; the
aggregates keep the policy (`Cluster.policy`), the scheduler (`scheduler.py`) fires it.

- `schedule`: a 5-field cron expression in UTC (`0 3 * * *`) or `rate(N unit)` with unit
  `minute[s]`, `hour[s]` or `day[s]`; a rate's slots are the multiples of its interval
  counted from 1970-01-01T00:00Z (`rate(6 hours)`: 00:00, 06:00, 12:00, 18:00 UTC).
- `keep_days`: 1-31 (as DWS).
- A slot is a minute; the snapshot of a slot is `auto-<first 46 characters of the cluster
  name>-<yyyymmddhhmm>` and the command that takes it has an id derived from the cluster
  and the slot, so every instance, restart or retry issues the same command."""

import re
from datetime import datetime, timedelta, timezone
from uuid import NAMESPACE_URL, uuid5

from croniter import croniter

from events.vocabulary import name_key
from services.snapshots.rules import InvalidCommand, InvalidPolicy

KEEP_DAYS = range(1, 32)
RETENTION_DAYS = range(1, 3654)  # or -1: forever
_RATE = re.compile(r"rate\((\d{1,6}) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_IDS = uuid5(NAMESPACE_URL, "urn:dws-snapshots:service-commands")


def check_policy(schedule: str, keep_days: int) -> None:
    """Raise `InvalidPolicy` unless the schedule parses and keep_days is 1-31."""
    if keep_days not in KEEP_DAYS:
        raise InvalidPolicy(f"keep_days must be 1 to 31, not {keep_days}")
    if _RATE.fullmatch(schedule):
        if _rate_seconds(schedule) <= 0:
            raise InvalidPolicy(f"schedule {schedule[:80]!r}: a rate needs N of at least 1")
        return
    if len(schedule.split()) != 5 or not croniter.is_valid(schedule):
        raise InvalidPolicy(f"schedule {schedule[:80]!r} is neither a 5-field cron expression (UTC) "
                            "nor rate(N minute[s]|hour[s]|day[s])")
    try:
        latest_slot(schedule, datetime(2030, 1, 1, tzinfo=timezone.utc))
    except Exception:  # noqa: BLE001 - croniter's errors for a date that never comes (Feb 30)
        raise InvalidPolicy(f"schedule {schedule[:80]!r} never fires") from None


def check_retention(retention_days: int) -> None:
    if retention_days != -1 and retention_days not in RETENTION_DAYS:
        raise InvalidCommand(f"retention_days must be -1 (forever) or 1 to 3653, not {retention_days}")


def latest_slot(schedule: str, now: datetime) -> datetime:
    """The most recent slot at or before `now` (UTC, whole minutes)."""
    if _RATE.fullmatch(schedule):
        interval = _rate_seconds(schedule)
        elapsed = int((now - _EPOCH).total_seconds())
        return _EPOCH + timedelta(seconds=elapsed - elapsed % interval)
    base = now.astimezone(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=1)
    return croniter(schedule, base).get_prev(datetime).astimezone(timezone.utc)


def interval_seconds(schedule: str, now: datetime) -> float:
    """How long from the latest slot to the next one (for a rate: its interval)."""
    if _RATE.fullmatch(schedule):
        return float(_rate_seconds(schedule))
    slot = latest_slot(schedule, now)
    return (croniter(schedule, slot).get_next(datetime) - slot).total_seconds()


def automated_snapshot_name(cluster_name: str, slot: datetime) -> str:
    """`auto-<first 46 characters of the cluster name>-<yyyymmddhhmm>`: 64 at most."""
    return f"auto-{cluster_name[:46]}-{slot.astimezone(timezone.utc):%Y%m%d%H%M}"


def slot_command_id(cluster_name: str, slot: datetime) -> str:
    """The id of the command that takes this slot's snapshot: the same everywhere."""
    return str(uuid5(_IDS, f"slot:{name_key(cluster_name)}:{slot.astimezone(timezone.utc):%Y-%m-%dT%H:%M}"))


def expiry_command_id(snapshot_name: str, version: int) -> str:
    """The id of the command that deletes an expired snapshot, as of the snapshot's
    aggregate version: every instance derives the same id from the same state, and a
    command refused because the snapshot changed under it (a restore began) is not the one
    issued once it has settled again. (Snapshot names are never reused.)"""
    return str(uuid5(_IDS, f"expire:{name_key(snapshot_name)}:{version}"))


def _rate_seconds(schedule: str) -> int:
    count, unit = _RATE.fullmatch(schedule).groups()
    return int(count) * _UNIT_SECONDS[unit.rstrip("s")]
