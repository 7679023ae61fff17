"""The console (SPEC.md v2, "The console is served at `/`"): the seed's Snapshot Management
page and a Cluster Management page, served by the API process on its own port.

- `GET /console/login` and `POST /console/session` (JSON `{"token"}`): log in with an
  access token; the session is an HttpOnly, SameSite=Strict cookie (`sessions.py`) that
  the pages and their calls to the API use instead of the Bearer header.
- `GET /` (Snapshot Management) and `GET /console/clusters` (Cluster Management): small
  server-rendered pages; plain JavaScript from `/console/assets/` loads the lists from
  the API (`/snapshots`, `/clusters`) and sends the write endpoints' commands.
- `GET /console/events`: server-sent events with the rows that changed (`live.py`); the
  stream ends (`event: ended`) when the session does.
- `POST /console/logout`: ends the session.

No build step, no CDN, no inline script: the pages' Content-Security-Policy allows only
this origin."""

import asyncio
import contextlib
import json
import signal
import threading
import time
from html import escape
from pathlib import Path
from string import Template

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from services.snapshots import auth
from services.snapshots.live import CLOSING, LiveUpdates
from services.snapshots.sessions import COOKIE, CSRF_HEADER, LIFETIME, SessionStore
from services.snapshots.tokens import Role, TokenInfo, TokenStore
from services.snapshots.write_api import Refused

ASSETS = Path(__file__).with_name("console_assets")
ASSET_TYPES = {"console.css": "text/css", "common.js": "text/javascript", "login.js": "text/javascript",
               "snapshots.js": "text/javascript", "snapshot_dialogs.js": "text/javascript",
               "clusters.js": "text/javascript", "favicon.svg": "image/svg+xml"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}
NOTICES = {"ended": "Your session has ended. Log in again.", "out": "You have logged out."}
RECHECK_SECONDS = 2.0  # how often an open event stream checks that its session still lives


class Login(BaseModel):
    token: str = Field(max_length=4096)  # longer ones are refused as unknown


def install(api: FastAPI, engine: Engine, tokens: TokenStore, live: LiveUpdates | None = None) -> None:
    """Serve the console from `api`: sessions for `auth.require`, the pages, the stream."""
    sessions = SessionStore(engine)
    api.state.console_sessions = sessions
    api.include_router(console_routes(sessions, tokens, live))


def console_routes(sessions: SessionStore, tokens: TokenStore, live: LiveUpdates | None) -> APIRouter:
    router = APIRouter(lifespan=_following(live), include_in_schema=False)
    _page_routes(router, sessions)
    _session_routes(router, sessions, tokens)

    @router.get("/console/events", dependencies=[Depends(auth.require(Role.VIEWER))])
    def events(request: Request) -> StreamingResponse:
        return StreamingResponse(_stream(request, sessions, tokens, live), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @router.get("/console/assets/{name}")
    def asset(name: str) -> Response:
        if name not in ASSET_TYPES:
            raise Refused(404, "not_found", "no such asset")
        return FileResponse(ASSETS / name, media_type=ASSET_TYPES[name], headers=HEADERS)

    return router


def _page_routes(router: APIRouter, sessions: SessionStore) -> None:
    """The two pages (to the login page without a session) and the login page."""
    @router.get("/")
    def snapshot_management(request: Request) -> Response:
        return _page(request, sessions, "Snapshot Management", "snapshots")

    @router.get("/console/clusters")
    def cluster_management(request: Request) -> Response:
        return _page(request, sessions, "Cluster Management", "clusters")

    @router.get("/console/login")
    def login_page(request: Request, notice: str = "") -> Response:
        if sessions.of(request) is not None:
            return RedirectResponse("/", 303)
        return _html(_render("login.html", notice=escape(NOTICES.get(notice, ""))))


def _session_routes(router: APIRouter, sessions: SessionStore, tokens: TokenStore) -> None:
    """Log in (a token for a cookie), who am I, log out."""
    @router.post("/console/session", status_code=204, dependencies=[Depends(_same_origin_json)])
    def log_in(body: Login, request: Request, response: Response) -> None:
        if tokens.authenticate(body.token) is None:
            raise Refused(401, "unauthenticated", "This access token is unknown or has been revoked.")
        sessions.end(request.cookies.get(COOKIE))  # a session this browser had before
        response.set_cookie(COOKIE, sessions.create(body.token), max_age=int(LIFETIME.total_seconds()),
                            path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")

    @router.get("/console/session")
    def who(actor: TokenInfo = Depends(auth.require(Role.VIEWER))) -> dict:
        return {"name": actor.name, "role": actor.role.value}

    @router.post("/console/logout", status_code=204)
    def log_out(request: Request, response: Response) -> None:
        if sessions.actor(request) is not None:  # refuses a write without the CSRF token
            sessions.end(request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def _page(request: Request, sessions: SessionStore, title: str, name: str) -> Response:
    session = sessions.of(request)
    if session is None:
        return RedirectResponse("/console/login", 303)
    actor, writer = session.actor, session.actor.role.allows(Role.OPERATOR)
    main = _render(f"{name}.html", create=_render("create_button.html") if writer else "",
                   dialogs=_render("snapshot_dialogs.html") if writer else "")
    here = {"snapshots": "", "clusters": ""} | {name: ' aria-current="page"'}
    scripts = (["snapshot_dialogs"] if writer and name == "snapshots" else []) + [name]
    scripts = "\n".join(f'<script src="/console/assets/{s}.js" defer></script>' for s in scripts)
    return _html(_render("page.html", title=escape(title), main=main, scripts=scripts, user=escape(actor.name),
                         role=escape(actor.role.value), csrf=escape(session.csrf),
                         here_snapshots=here["snapshots"], here_clusters=here["clusters"],
                         csrf_header=CSRF_HEADER))


def _render(template: str, **values: str) -> str:
    return Template((ASSETS / template).read_text(encoding="utf-8")).substitute(values)


def _html(content: str) -> HTMLResponse:
    return HTMLResponse(content, headers=HEADERS)


def _same_origin_json(request: Request) -> None:
    """Logging in is a JSON call from the login page: a form of another site can send
    neither JSON nor this origin."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Refused(415, "invalid_command", "log in with a JSON body {\"token\": ...}")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise Refused(403, "forbidden", "logging in is allowed from the console's own pages only")


async def _stream(request: Request, sessions: SessionStore, tokens: TokenStore, live: LiveUpdates | None):
    """`ready`, then the live messages; a comment line every RECHECK_SECONDS keeps the
    connection open, and the session is checked again each time (`ended` when it is over)."""
    async with _subscription(live) as queue:
        yield _event("ready", {})
        checked = time.monotonic()
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), RECHECK_SECONDS)
            except TimeoutError:
                message = None
            if message == CLOSING:
                return
            if time.monotonic() - checked >= RECHECK_SECONDS:
                if not await asyncio.to_thread(_still_allowed, request, sessions, tokens):
                    yield _event("ended", {})
                    return
                checked = time.monotonic()
            yield _event(*message) if message else ": still here\n\n"


def _still_allowed(request: Request, sessions: SessionStore, tokens: TokenStore) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return tokens.authenticate(token.strip()) is not None
    return sessions.of(request) is not None


def _event(kind: str, data: dict) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@contextlib.asynccontextmanager
async def _subscription(live: LiveUpdates | None):
    if live is None:  # an API without a broker (tests of the HTTP layer): heartbeats only
        yield asyncio.Queue()
    else:
        async with live.subscription() as queue:
            yield queue


def _following(live: LiveUpdates | None):
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        if live is None:
            yield
        else:
            async with live.running():
                with _streams_end_on_exit_signals(live):
                    yield
    return lifespan


@contextlib.contextmanager
def _streams_end_on_exit_signals(live: LiveUpdates):
    """A server stops after its open responses; event streams never end by themselves. So
    on SIGTERM or SIGINT the streams are ended first, then the server's own handler runs
    (uvicorn's, installed before the app starts). Only where a handler is installed."""
    loop, previous = asyncio.get_running_loop(), {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: handler for sig in (signal.SIGTERM, signal.SIGINT)
                    if callable(handler := signal.getsignal(sig))}

    def ending(sig, frame) -> None:
        loop.call_soon_threadsafe(live.close_streams)
        previous[sig](sig, frame)

    for sig in previous:
        signal.signal(sig, ending)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
