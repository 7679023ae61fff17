"""Commands accepted on `snapshot.commands` (SPEC.md, "Commands").

These models check shape only (types, required fields, sizes). The seed's business rules
(snapshot name, description, cluster status) belong to the domain, which rejects with
their own codes."""

from pydantic import BaseModel, ConfigDict, Field

from events.vocabulary import ClusterStatus, DriverName

# Generous upper bounds so an oversized field is `invalid_command`, while anything a
# domain rule could judge (e.g. a 65-character snapshot name) still reaches the domain.
_NAME = Field(min_length=1, max_length=256)


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
    cluster_name: str = _NAME


class RegisterCluster(Command):
    driver: DriverName
    target: str = Field(min_length=1, max_length=4096)


class ReportClusterStatus(Command):
    status: ClusterStatus


class CreateSnapshotRequested(Command):
    snapshot_name: str = _NAME
    description: str = Field("", max_length=4096)
    #: Days to keep the snapshot: -1 forever (the default) or 1-3653 (the domain checks:
    #: `invalid_command` otherwise).
    retention_days: int = Field(-1, ge=-(2**31), le=2**31)
    #: PostgreSQL clusters only: read-only until the dump's snapshot is taken, not for the whole copy.
    online: bool = False


class RestartClusterRequested(Command):
    pass


class DeleteSnapshotRequested(Command):
    snapshot_name: str = _NAME


class RestoreSnapshotRequested(Command):
    snapshot_name: str = _NAME
    target_cluster_name: str = _NAME


class SetSnapshotPolicy(Command):
    #: A 5-field cron expression (UTC) or `rate(N minute[s]|hour[s]|day[s])`; checked by
    #: the domain (`invalid_policy`).
    schedule: str = Field(min_length=1, max_length=256)
    keep_days: int = Field(ge=-(2**31), le=2**31)


class RemoveSnapshotPolicy(Command):
    pass


class CopySnapshotRequested(Command):
    snapshot_name: str = _NAME
    #: A repository URL listed in the service's SNAPSHOT_COPY_TARGETS (else target_not_allowed).
    target_repository: str = Field(min_length=1, max_length=1024)


class CancelSnapshotRequested(Command):
    snapshot_name: str = _NAME


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.__name__: cls
    for cls in (
        RegisterCluster,
        ReportClusterStatus,
        CreateSnapshotRequested,
        RestartClusterRequested,
        DeleteSnapshotRequested,
        RestoreSnapshotRequested,
        SetSnapshotPolicy,
        RemoveSnapshotPolicy,
        CopySnapshotRequested,
        CancelSnapshotRequested,
    )
}
