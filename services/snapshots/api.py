"""The HTTP API (SPEC.md, "HTTP query API" and v2 "HTTP"): queries served from the views,
writes published as commands (`write_api.py`). Every endpoint but `/health`, `/health/live`
and `/metrics` needs `Authorization: Bearer <token>` (`auth.py`; 401/403 `{code, reason}`).
Run with `snapshotctl api` (or `snapshotctl up`)."""

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from events.vocabulary import ClusterStatus, RejectionCode, SnapshotStatus, SnapshotType
from services.snapshots import auth, console, views
from services.snapshots.live import LiveUpdates
from services.snapshots.targets import AllowedTargets
from services.snapshots.tokens import Role, TokenStore
from services.snapshots.write_api import Refused, command_routes


def create_api(engine: Engine, tokens: TokenStore, send, allowed: AllowedTargets, *,
               operations: APIRouter | None = None, live_updates: LiveUpdates | None = None) -> FastAPI:
    """`send(envelope)`: the async callable that publishes a command (see bootstrap);
    `operations`: `/health` and `/metrics` (`health.py`), open to all; `live_updates`: the
    console's live updates (none: pages are not updated live)."""
    api = FastAPI(title="dws-snapshots", version="2")
    auth.install(api, tokens)
    api.add_exception_handler(Refused, _refused)
    api.add_exception_handler(RequestValidationError, _invalid)
    viewer = [Depends(auth.require(Role.VIEWER))]

    @api.get("/health/live")
    def live() -> dict:
        return {"status": "ok"}

    @api.get("/snapshots", dependencies=viewer)
    def list_snapshots(cluster: str | None = Query(None, max_length=256),
                       status: SnapshotStatus | None = None,
                       limit: int = Query(100, ge=1, le=1000),
                       offset: int = Query(0, ge=0),
                       type: str | None = Query(None, max_length=64),
                       since: str | None = Query(None, max_length=64),
                       until: str | None = Query(None, max_length=64),
                       q: str | None = Query(None, max_length=64),
                       sort: str = Query("-started", max_length=16)) -> dict:
        search = list_filters(type, since, until, q, sort)
        items, count = views.list_snapshots(engine, cluster, status, limit, offset, **search)
        return {"snapshots": items, "count": count}

    @api.get("/snapshots/{name}", dependencies=viewer)
    def get_snapshot(name: str) -> dict:
        return _found(views.get_snapshot(engine, name), f"snapshot {name!r} not found")

    @api.get("/snapshots/{name}/history", dependencies=viewer)
    def snapshot_history(name: str) -> dict:
        events = views.snapshot_history(engine, name)
        if not events:
            raise HTTPException(404, f"snapshot {name!r} not found")
        return {"events": events}

    @api.get("/clusters", dependencies=viewer)
    def list_clusters(status: ClusterStatus | None = None) -> dict:
        return {"clusters": views.list_clusters(engine, status)}

    @api.get("/clusters/{name}", dependencies=viewer)
    def get_cluster(name: str) -> dict:
        return _found(views.get_cluster(engine, name), f"cluster {name!r} not found")

    @api.get("/clusters/{name}/history", dependencies=viewer)
    def cluster_history(name: str, limit: int = Query(1000, ge=1, le=10000)) -> dict:
        if views.get_cluster(engine, name) is None:
            raise HTTPException(404, f"cluster {name!r} not found")
        return {"events": views.cluster_history(engine, name, limit)}

    api.include_router(command_routes(engine, send, allowed))
    if operations is not None:
        api.include_router(operations)
    console.install(api, engine, tokens, live_updates)  # the console at `/` (console.py)
    return api


SORTS = {"-started": False, "started": True}


def list_filters(snapshot_type: str | None, since: str | None, until: str | None, q: str | None,
                 sort: str) -> dict:
    """The list's filters and order, checked: 400 `invalid_query` names the bad one."""
    if snapshot_type is not None and snapshot_type not in set(SnapshotType):
        raise Refused(400, "invalid_query", f"type must be one of {', '.join(SnapshotType)}, not {snapshot_type[:64]!r}")
    if sort not in SORTS:
        raise Refused(400, "invalid_query", f"sort must be started or -started, not {sort[:16]!r}")
    bounds = {name: _moment(name, value) for name, value in (("since", since), ("until", until))}
    if bounds["since"] and bounds["until"] and bounds["since"] > bounds["until"]:
        raise Refused(400, "invalid_query", "since is after until")
    return {"snapshot_type": snapshot_type, **bounds, "name_contains": q, "oldest_first": SORTS[sort]}


def _moment(name: str, value: str | None) -> datetime | None:
    """An ISO 8601 date or time; without a zone it is UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Refused(400, "invalid_query", f"{name} must be an ISO 8601 date or time, "
                                            f"e.g. 2026-11-25T08:00:00Z, not {value[:64]!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _found(item: dict | None, reason: str) -> dict:
    if item is None:
        raise HTTPException(404, reason)
    return item


async def _refused(_request: Request, refused: Refused) -> JSONResponse:
    return JSONResponse(refused.detail, refused.status_code)


async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ())) or "request"
    reason = f"{where}: {first.get('msg', 'invalid')}"[:500]
    return JSONResponse({"code": RejectionCode.INVALID_COMMAND, "reason": reason}, 422)
