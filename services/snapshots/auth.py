"""Bearer-token authentication for the HTTP API (SPEC.md, version 2, "HTTP").

`install(api, store)` once, then guard a route (or a router) with `require(role)`:

    auth.install(api, TokenStore(engine))

    @api.get("/snapshots")
    def list_snapshots(actor: TokenInfo = Depends(auth.require(Role.VIEWER))): ...

A request without `Authorization: Bearer <token>`, or with an unknown or revoked token, is
answered 401 `{"code": "unauthenticated", "reason"}`; a token whose role is below the one
required, 403 `{"code": "forbidden", "reason"}`. Every request asks the store, so a revoked
token stops working at once. Reasons never repeat the token.

Without a Bearer header, the console's session cookie is accepted instead when the app
has sessions (`sessions.py`, installed by `console.install`); it acts with the name and
role of the token it was opened with, and its writes need the session's CSRF token.
"""

from collections.abc import Callable

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.snapshots.tokens import Role, TokenInfo, TokenStore

# auto_error=False: a missing or non-Bearer header is answered with our own body, not FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="An API token: snapshotctl token create")


class NotAuthorized(HTTPException):
    """401 or 403 with a SPEC code. An HTTPException, so that an app which forgot `install`
    still refuses (with FastAPI's `{"detail": ...}` body) rather than failing open or 500."""

    def __init__(self, status_code: int, code: str, reason: str):
        headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
        super().__init__(status_code, {"code": code, "reason": reason}, headers)


def install(api: FastAPI, store: TokenStore) -> None:
    """Give `api` the token store `require` asks, and answer refusals as `{code, reason}`."""
    api.state.token_store = store
    api.add_exception_handler(NotAuthorized, _answer)


def require(role: Role | str) -> Callable[..., TokenInfo]:
    """A dependency admitting tokens whose role allows `role`; it returns the caller's token
    info (its `name` is the actor's `authid`)."""
    required = Role(role)

    def authenticated(request: Request,
                      credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> TokenInfo:
        if credentials is None:
            actor = _console_session(request)
            if actor is None:
                raise NotAuthorized(401, "unauthenticated",
                                    "this needs an Authorization: Bearer <token> header")
        else:
            actor = _store(request).authenticate(credentials.credentials)
            if actor is None:
                raise NotAuthorized(401, "unauthenticated", "the bearer token is unknown or revoked")
        if not actor.role.allows(required):
            raise NotAuthorized(403, "forbidden", f"token {actor.name!r} has the role "
                                f"{actor.role}; this needs {required} or above")
        return actor
    return authenticated


def _console_session(request: Request) -> TokenInfo | None:
    """Without a Bearer header: the console's session cookie, if the app has sessions
    (`sessions.SessionStore.actor`: the token's name and role; writes CSRF-checked)."""
    sessions = getattr(request.app.state, "console_sessions", None)
    return sessions.actor(request) if sessions is not None else None


def _store(request: Request) -> TokenStore:
    store = getattr(request.app.state, "token_store", None)
    if store is None:  # a wiring mistake: refuse loudly rather than let anyone in
        raise RuntimeError("no token store: call auth.install(api, store) when building the API")
    return store


async def _answer(_request: Request, refused: NotAuthorized) -> JSONResponse:
    return JSONResponse(refused.detail, refused.status_code, headers=refused.headers)
