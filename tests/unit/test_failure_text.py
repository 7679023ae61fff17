"""What `snapshotctl ... --wait` prints when a command ends unsuccessfully, whichever way it
followed the command (the API's /commands/{id} or the bus)."""

from services.snapshots.api_client import _failure
from services.snapshots.client import failure_of


def test_each_failure_event_is_named_with_its_reason_and_other_events_are_not_failures():
    assert failure_of("SnapshotFailed", {"reason": "disk full"}) == "snapshot failed: disk full"
    assert failure_of("RestoreFailed", {"reason": "exists"}) == "restore failed: exists"
    assert failure_of("SnapshotCopyFailed", {"reason": "S3: denied"}) == "copy failed: S3: denied"
    assert failure_of("SnapshotCompleted", {"size_bytes": 1}) is None


def test_the_api_path_reports_the_failure_among_the_commands_events():
    events = [{"type": "ClusterLocked", "data": {}}, {"type": "SnapshotCopyFailed", "data": {"reason": "S3: denied"}}]
    assert _failure(events) == "copy failed: S3: denied"
    assert _failure(events[:1]) is None
