"""The words of the published language, each defined once: statuses, types, drivers,
rejection codes, and the rule that names are case-insensitive.

Standard library only, so that the domain can use the same words as the wire without
depending on pydantic or Kafka. Every enum is a `StrEnum`: its members are the strings
that appear on the wire and in the event store."""

from enum import StrEnum


class ClusterStatus(StrEnum):
    AVAILABLE = "Available"
    READ_ONLY = "Read-only"
    LOW_PERFORMANCE = "Low performance"
    UNAVAILABLE = "Unavailable"


#: The seed: "a snapshot may be taken only of a cluster whose status is Available,
#: Read-only or Low performance".
SNAPSHOT_ALLOWED_STATUSES = (ClusterStatus.AVAILABLE, ClusterStatus.READ_ONLY,
                             ClusterStatus.LOW_PERFORMANCE)


class TaskStatus(StrEnum):
    CREATING_SNAPSHOT = "Creating snapshot"


class SnapshotStatus(StrEnum):
    CREATING = "Creating"
    AVAILABLE = "Available"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    RESTORING = "Restoring"


class SnapshotType(StrEnum):
    MANUAL = "Manual"
    AUTOMATED = "Automated"


class DriverName(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


class RejectionCode(StrEnum):
    INVALID_SNAPSHOT_NAME = "invalid_snapshot_name"
    INVALID_DESCRIPTION = "invalid_description"
    DUPLICATE_SNAPSHOT_NAME = "duplicate_snapshot_name"
    UNKNOWN_CLUSTER = "unknown_cluster"
    CLUSTER_NOT_READY = "cluster_not_ready"
    SNAPSHOT_IN_PROGRESS = "snapshot_in_progress"
    SECRET_IN_COMMAND = "secret_in_command"
    UNKNOWN_SNAPSHOT = "unknown_snapshot"
    SNAPSHOT_NOT_AVAILABLE = "snapshot_not_available"
    SNAPSHOT_BUSY = "snapshot_busy"
    DUPLICATE_CLUSTER_NAME = "duplicate_cluster_name"
    INVALID_COMMAND = "invalid_command"
    UNKNOWN_COMMAND_TYPE = "unknown_command_type"
    TARGET_NOT_ALLOWED = "target_not_allowed"
    #: The command id was used before for a different payload; the first outcome stands.
    COMMAND_ID_REUSED = "command_id_reused"
    #: Handling failed deterministically (a bug); the command also went to the DLQ.
    INTERNAL_ERROR = "internal_error"
    #: A cancel of a snapshot that is not Creating (or whose cancel was already requested).
    SNAPSHOT_NOT_CREATING = "snapshot_not_creating"
    #: A policy's schedule or keep_days is invalid, or the cluster has no policy to remove.
    INVALID_POLICY = "invalid_policy"
    #: An Automated snapshot is deleted by its policy's retention only, not by hand.
    SNAPSHOT_AUTOMATED = "snapshot_automated"


class DeletionReason(StrEnum):
    """Why a snapshot was deleted (`SnapshotDeleted.reason`)."""

    REQUESTED = "requested"
    EXPIRED = "expired"


def name_key(name: str) -> str:
    """The one spelling of a cluster or snapshot name used as an identity: names are
    case-insensitive (SPEC.md), so `Nightly-01` and `nightly-01` are one name. Kafka keys,
    aggregate ids, view keys and file names all go through here."""
    return name.lower()
