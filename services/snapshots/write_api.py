"""The HTTP write endpoints (SPEC.md v2, "HTTP"): each publishes one command on
`snapshot.commands`, stamped with the caller as its actor, and answers
`202 {"command_id"}` with `Location: /commands/{id}`; `GET /commands/{id}` tells its state.

An `Idempotency-Key` header becomes the command id: the same key with the same payload gets
the same answer; with a different payload, 409 `command_id_reused` at once. Validation the
API can do itself (names, description, targets) answers 422 `{code, reason}` with the codes
of `CommandRejected`; the service checks everything again when the command arrives."""

import hashlib
import json
import uuid

from fastapi import APIRouter, Depends, Header, HTTPException, Response
from pydantic import BaseModel, Field
from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, func, insert, select
from sqlalchemy.exc import IntegrityError

from events import commands as c
from events.codec import command_envelope
from events.vocabulary import DriverName, RejectionCode, SnapshotType
from services.snapshots import auth, views
from services.snapshots.policies import check_policy, check_retention
from services.snapshots.repository import check_repository_url
from services.snapshots.rules import (CommandNotAccepted, check_cluster_name, check_description,
                                      check_snapshot_name)
from services.snapshots.targets import AllowedTargets, check_target
from services.snapshots.tokens import Role, TokenInfo

metadata = MetaData()
api_commands = Table(  # the API's memory of idempotency keys (its own metadata: replay keeps it)
    "api_commands", metadata,
    Column("command_id", String(256), primary_key=True),
    Column("payload_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


class NewSnapshot(BaseModel):
    cluster_name: str = Field(min_length=1, max_length=256)
    snapshot_name: str = Field(min_length=1, max_length=256)
    description: str = Field("", max_length=4096)
    retention_days: int = Field(-1, ge=-(2**31), le=2**31)
    online: bool = False


class NewPolicy(BaseModel):
    schedule: str = Field(min_length=1, max_length=256)
    keep_days: int = Field(ge=-(2**31), le=2**31)


class NewRestore(BaseModel):
    target_cluster_name: str = Field(min_length=1, max_length=256)


class NewCopy(BaseModel):
    target_repository: str = Field(min_length=1, max_length=1024)


class NewCluster(BaseModel):
    cluster_name: str = Field(min_length=1, max_length=256)
    driver: DriverName
    target: str = Field(min_length=1, max_length=4096)


class Refused(HTTPException):
    def __init__(self, status: int, code: str, reason: str):
        super().__init__(status, {"code": code, "reason": reason})


def command_routes(engine: Engine, send, allowed: AllowedTargets) -> APIRouter:
    """`send(envelope)` publishes a command envelope (an async callable)."""
    views.create_tables(metadata, engine)
    router = APIRouter()

    async def publish(command: c.Command, actor: TokenInfo, key: str | None, response: Response) -> dict:
        command_id = _remember(engine, key or str(uuid.uuid4()), command)
        envelope = command_envelope(command, source="dws-snapshots-api", id=command_id,
                                    authtype="app_user", authid=actor.name)
        await send(envelope)
        response.headers["Location"] = f"/commands/{command_id}"
        return {"command_id": command_id}

    @router.post("/snapshots", status_code=202)
    async def create_snapshot(body: NewSnapshot, response: Response,
                              actor: TokenInfo = Depends(auth.require(Role.OPERATOR)),
                              idempotency_key: str | None = Header(None, max_length=256)) -> dict:
        _check(lambda: (check_cluster_name(body.cluster_name), check_snapshot_name(body.snapshot_name),
                        check_description(body.description), check_retention(body.retention_days)))
        return await publish(c.CreateSnapshotRequested(**body.model_dump()), actor, idempotency_key, response)

    @router.delete("/snapshots/{name}", status_code=202)
    async def delete_snapshot(name: str, response: Response,
                              actor: TokenInfo = Depends(auth.require(Role.OPERATOR)),
                              idempotency_key: str | None = Header(None, max_length=256)) -> dict:
        snapshot = _snapshot(engine, name)
        if snapshot["snapshot_type"] == SnapshotType.AUTOMATED:
            raise Refused(422, RejectionCode.SNAPSHOT_AUTOMATED, f"snapshot {snapshot['name']!r} is Automated: "
                          "its policy's retention deletes it")
        command = c.DeleteSnapshotRequested(cluster_name=snapshot["cluster_name"], snapshot_name=snapshot["name"])
        return await publish(command, actor, idempotency_key, response)

    @router.post("/snapshots/{name}/restore", status_code=202)
    async def restore_snapshot(name: str, body: NewRestore, response: Response,
                               actor: TokenInfo = Depends(auth.require(Role.OPERATOR)),
                               idempotency_key: str | None = Header(None, max_length=256)) -> dict:
        snapshot = _snapshot(engine, name)
        _check(lambda: check_cluster_name(body.target_cluster_name))
        command = c.RestoreSnapshotRequested(cluster_name=snapshot["cluster_name"], snapshot_name=snapshot["name"],
                                             target_cluster_name=body.target_cluster_name)
        return await publish(command, actor, idempotency_key, response)

    @router.post("/snapshots/{name}/copy", status_code=202)
    async def copy_snapshot(name: str, body: NewCopy, response: Response,
                            actor: TokenInfo = Depends(auth.require(Role.OPERATOR)),
                            idempotency_key: str | None = Header(None, max_length=256)) -> dict:
        _check(lambda: check_repository_url(body.target_repository))  # no key reaches the bus
        snapshot = _snapshot(engine, name)  # the service checks the copy targets (target_not_allowed)
        command = c.CopySnapshotRequested(cluster_name=snapshot["cluster_name"], snapshot_name=snapshot["name"],
                                          target_repository=body.target_repository)
        return await publish(command, actor, idempotency_key, response)

    @router.post("/snapshots/{name}/cancel", status_code=202)
    async def cancel_snapshot(name: str, response: Response,
                              actor: TokenInfo = Depends(auth.require(Role.OPERATOR)),
                              idempotency_key: str | None = Header(None, max_length=256)) -> dict:
        snapshot = _snapshot(engine, name)
        command = c.CancelSnapshotRequested(cluster_name=snapshot["cluster_name"], snapshot_name=snapshot["name"])
        return await publish(command, actor, idempotency_key, response)

    @router.post("/clusters", status_code=202)
    async def register_cluster(body: NewCluster, response: Response,
                               actor: TokenInfo = Depends(auth.require(Role.ADMIN)),
                               idempotency_key: str | None = Header(None, max_length=256)) -> dict:
        _check(lambda: (check_cluster_name(body.cluster_name),
                        check_target(body.driver, body.target, allowed)))
        return await publish(c.RegisterCluster(**body.model_dump()), actor, idempotency_key, response)

    @router.put("/clusters/{name}/policy", status_code=202)
    async def set_policy(name: str, body: NewPolicy, response: Response,
                         actor: TokenInfo = Depends(auth.require(Role.OPERATOR)),
                         idempotency_key: str | None = Header(None, max_length=256)) -> dict:
        _check(lambda: check_policy(body.schedule, body.keep_days))
        command = c.SetSnapshotPolicy(cluster_name=_cluster(engine, name)["name"], **body.model_dump())
        return await publish(command, actor, idempotency_key, response)

    @router.delete("/clusters/{name}/policy", status_code=202)
    async def remove_policy(name: str, response: Response,
                            actor: TokenInfo = Depends(auth.require(Role.OPERATOR)),
                            idempotency_key: str | None = Header(None, max_length=256)) -> dict:
        command = c.RemoveSnapshotPolicy(cluster_name=_cluster(engine, name)["name"])
        return await publish(command, actor, idempotency_key, response)

    @router.get("/commands/{command_id}", dependencies=[Depends(auth.require(Role.VIEWER))])
    def command_state(command_id: str) -> dict:
        events = views.command_events(engine, command_id)
        if not events and not _known(engine, command_id):
            raise Refused(404, "unknown_command", f"no command {command_id[:80]!r} is known")
        rejection = next((e["data"] for e in events if e["type"] == "CommandRejected"), None)
        state = "rejected" if rejection else "accepted" if events else "pending"
        return {"command_id": command_id, "state": state, "events": events,
                "rejection": rejection and {"code": rejection["code"], "reason": rejection["reason"]}}

    return router


def _check(rules) -> None:
    try:
        rules()
    except CommandNotAccepted as refusal:
        raise Refused(422, str(refusal.code), refusal.reason) from None


def _snapshot(engine: Engine, name: str) -> dict:
    snapshot = views.get_snapshot(engine, name)
    if snapshot is None:
        raise Refused(404, "unknown_snapshot", f"snapshot {name[:80]!r} not found")
    return snapshot


def _cluster(engine: Engine, name: str) -> dict:
    cluster = views.get_cluster(engine, name)
    if cluster is None:
        raise Refused(404, "unknown_cluster", f"cluster {name[:80]!r} not found")
    return cluster


def _payload_hash(command: c.Command) -> str:
    canonical = json.dumps({"type": type(command).__name__, "data": command.model_dump(mode="json")},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _remember(engine: Engine, key: str, command: c.Command) -> str:
    """The key as command id; 409 when it was used before with another payload."""
    digest = _payload_hash(command)
    try:
        with engine.begin() as tx:
            tx.execute(insert(api_commands).values(command_id=key, payload_sha256=digest))
    except IntegrityError:
        with engine.connect() as connection:
            known = connection.execute(select(api_commands.c.payload_sha256)
                                       .where(api_commands.c.command_id == key)).scalar()
        if known != digest:
            raise Refused(409, "command_id_reused",
                          "this Idempotency-Key was used before with a different request") from None
    return key


def _known(engine: Engine, command_id: str) -> bool:
    with engine.connect() as connection:
        return connection.execute(select(api_commands.c.command_id)
                                  .where(api_commands.c.command_id == command_id)).first() is not None

