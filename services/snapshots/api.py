"""The HTTP query API (SPEC.md, "HTTP query API"), served from the views.
Run with `snapshotctl api` (or `snapshotctl up`)."""

from fastapi import FastAPI, HTTPException, Query
from sqlalchemy import Engine

from events.vocabulary import ClusterStatus, SnapshotStatus
from services.snapshots import views
from services.snapshots.set_aside import SetAsideLog


def create_api(engine: Engine, set_aside: SetAsideLog) -> FastAPI:
    api = FastAPI(title="dws-snapshots", version="1")

    @api.get("/health")
    def health() -> dict:
        views.list_clusters(engine)  # proves the view database answers
        return {"status": "ok",
                "set_aside": {"count": set_aside.count(), "latest": set_aside.latest(5)}}

    @api.get("/snapshots")
    def list_snapshots(cluster: str | None = Query(None, max_length=256),
                       status: SnapshotStatus | None = None,
                       limit: int = Query(100, ge=1, le=1000),
                       offset: int = Query(0, ge=0)) -> dict:
        items, count = views.list_snapshots(engine, cluster, status, limit, offset)
        return {"snapshots": items, "count": count}

    @api.get("/snapshots/{name}")
    def get_snapshot(name: str) -> dict:
        return _found(views.get_snapshot(engine, name), f"snapshot {name!r} not found")

    @api.get("/snapshots/{name}/history")
    def snapshot_history(name: str) -> dict:
        events = views.snapshot_history(engine, name)
        if not events:
            raise HTTPException(404, f"snapshot {name!r} not found")
        return {"events": events}

    @api.get("/clusters")
    def list_clusters(status: ClusterStatus | None = None) -> dict:
        return {"clusters": views.list_clusters(engine, status)}

    @api.get("/clusters/{name}")
    def get_cluster(name: str) -> dict:
        return _found(views.get_cluster(engine, name), f"cluster {name!r} not found")

    return api


def _found(item: dict | None, reason: str) -> dict:
    if item is None:
        raise HTTPException(404, reason)
    return item
