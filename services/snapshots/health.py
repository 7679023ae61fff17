"""`/health` that means something, and `/metrics`; both open, without a token.

`GET /health` answers 200 only when the event store, the broker and the views answer (each
within `SNAPSHOT_HEALTH_TIMEOUT_SECONDS`) and the relay and the projection are at most
`SNAPSHOT_HEALTH_MAX_LAG_EVENTS` behind the store; else 503. Either way the body is
`{status, parts, set_aside}`: `status` is `ok` or `failing`, `parts` gives each part's
`status` (`ok`, `failing`, or `unknown` when what it depends on did not answer) with the
`reason` or the `lag_events`. `/health/live` (in `api.py`) only says the process answers."""

import asyncio
import logging
from dataclasses import dataclass

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine

from events.kafka import broker_answers
from services.snapshots.set_aside import SetAsideLog
from services.snapshots.state import StorePositions, projection_position
from services.snapshots.threads import ThreadPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_lag_events: int
    timeout_seconds: float


class HealthCheck:
    def __init__(self, store: StorePositions, views: Engine, set_aside: SetAsideLog,
                 bootstrap_servers: str, limits: Limits):
        self._store = store
        self._views = views
        self._set_aside = set_aside
        self._bootstrap_servers = bootstrap_servers
        self._limits = limits
        # Checks block (a store that hangs); a pool of their own keeps them off every other's.
        self._threads = ThreadPool(4, "health")

    async def __call__(self) -> tuple[bool, dict]:
        positions, projection, broker, set_aside = await asyncio.gather(
            self._within(self._threads.run(self._store.read)),
            self._within(self._threads.run(projection_position, self._views)),
            self._within(broker_answers(self._bootstrap_servers, self._limits.timeout_seconds)),
            self._within(self._threads.run(self._set_aside_summary)))
        store_max, relay = (positions, positions) if isinstance(positions, Exception) else positions
        parts = {"store": _answered(positions, "store"), "broker": _answered(broker, "broker"),
                 "views": _answered(projection, "views"),
                 "relay": self._lag(store_max, relay), "projection": self._lag(store_max, projection)}
        healthy = all(part["status"] == "ok" for part in parts.values())
        return healthy, {"status": "ok" if healthy else "failing", "parts": parts,
                         "set_aside": None if isinstance(set_aside, Exception) else set_aside}

    async def _within(self, work) -> object:
        """The answer of `work`, or the exception that stood for it (a timeout included)."""
        try:
            return await asyncio.wait_for(work, self._limits.timeout_seconds)
        except TimeoutError:
            return TimeoutError(f"no answer within {self._limits.timeout_seconds:g} s")
        except Exception as error:  # noqa: BLE001 - a failing part is reported, not raised
            return error

    def _lag(self, store_max: int | Exception, position: int | Exception) -> dict:
        if isinstance(store_max, Exception) or isinstance(position, Exception):
            return {"status": "unknown", "reason": "the store or the views did not answer"}
        lag = max(0, store_max - position)
        return {"status": "ok" if lag <= self._limits.max_lag_events else "failing", "lag_events": lag}

    def _set_aside_summary(self) -> dict:
        return {"count": self._set_aside.count(), "latest": self._set_aside.latest(5)}


def _answered(answer, part: str) -> dict:
    """A part's entry. The body is for anyone (no token): the reason names what went wrong
    but not where (no host, port or database); the log has the whole error."""
    if not isinstance(answer, Exception):
        return {"status": "ok"}
    log.warning("health: the %s is failing: %s", part, str(answer) or type(answer).__name__)
    reason = str(answer) if isinstance(answer, TimeoutError) else type(answer).__name__
    return {"status": "failing", "reason": reason}


def operation_routes(check: HealthCheck, registry: CollectorRegistry) -> APIRouter:
    """`/health` and `/metrics`, for the API (no token: probes and Prometheus call them)."""
    router = APIRouter()

    @router.get("/health")
    async def health() -> JSONResponse:
        healthy, body = await check()
        return JSONResponse(body, 200 if healthy else 503)

    @router.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
