"""The console's sessions: an HttpOnly, SameSite=Strict cookie instead of the Bearer header.

Logging in with an access token creates a session bound to that token: the session has
the token's name and role, and it lives only as long as the token does (every request
joins the session to the live token, so revoking the token ends its sessions at once).
The cookie holds a random session id; the store keeps its SHA-256, the token's SHA-256
(the same digest `tokens.py` keeps), a CSRF token and the expiry. Writes made with the
cookie must carry the session's CSRF token in the `X-CSRF-Token` header.

The table lives beside the tokens, in a `MetaData` of its own, so that a replay of the
views never drops it."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from fastapi import Request
from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, delete, insert, select

from services.snapshots.auth import NotAuthorized
from services.snapshots.tokens import Role, TokenInfo, api_tokens
from services.snapshots.tokens import _digest as token_digest  # the one digest of a token
from services.snapshots.views import create_tables

COOKIE = "dws_console_session"
CSRF_HEADER = "X-CSRF-Token"
LIFETIME = timedelta(hours=12)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

metadata = MetaData()
console_sessions = Table(
    "console_sessions", metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Session:
    """A live session: who it acts as, and the CSRF token its writes must carry."""

    actor: TokenInfo
    csrf: str


class SessionStore:
    def __init__(self, engine: Engine, lifetime: timedelta = LIFETIME):
        self._engine = engine
        self._lifetime = lifetime
        create_tables(metadata, engine)

    def create(self, token: str) -> str:
        """A new session for an (already authenticated) token; returns the session id,
        which only the cookie keeps. Expired sessions are removed on the way."""
        session_id, now = secrets.token_urlsafe(32), datetime.now(timezone.utc)
        with self._engine.begin() as tx:
            tx.execute(delete(console_sessions).where(console_sessions.c.expires_at < now))
            tx.execute(insert(console_sessions).values(
                id_hash=_hash(session_id), token_hash=token_digest(token), csrf=secrets.token_urlsafe(32),
                created_at=now, expires_at=now + self._lifetime))
        return session_id

    def find(self, session_id: str | None) -> Session | None:
        """The session, if it exists, has not expired and its token is not revoked."""
        if not session_id or len(session_id) > 128:
            return None
        query = (select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.created_at,
                        console_sessions.c.csrf, console_sessions.c.expires_at)
                 .join_from(console_sessions, api_tokens,
                            api_tokens.c.token_hash == console_sessions.c.token_hash)
                 .where(console_sessions.c.id_hash == _hash(session_id), api_tokens.c.revoked_at.is_(None)))
        with self._engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        if row is None or _utc(row["expires_at"]) <= datetime.now(timezone.utc):
            return None
        return Session(TokenInfo(row["name"], Role(row["role"]), _utc(row["created_at"])), row["csrf"])

    def end(self, session_id: str | None) -> None:
        if session_id:
            with self._engine.begin() as tx:
                tx.execute(delete(console_sessions).where(console_sessions.c.id_hash == _hash(session_id)))

    def of(self, request: Request) -> Session | None:
        """The session of a request's cookie."""
        return self.find(request.cookies.get(COOKIE))

    def actor(self, request: Request) -> TokenInfo | None:
        """Who a request acts as through its cookie (None: no live session). A write
        without the session's CSRF token is refused: a page of another site cannot
        read that token, so it cannot act with the user's cookie."""
        session = self.of(request)
        if session is None:
            return None
        if request.method not in SAFE_METHODS and not hmac.compare_digest(
                request.headers.get(CSRF_HEADER, "").encode(), session.csrf.encode()):
            raise NotAuthorized(403, "forbidden", f"a console write needs its session's {CSRF_HEADER} header")
        return session.actor


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
