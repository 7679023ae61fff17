"""API tokens: who may call the HTTP API, and with which role.

A token is a random bearer secret shown once, when it is created; the store keeps only its
SHA-256, with the token's name, role, creation and revocation times. Roles are ordered
`viewer` < `operator` < `admin`; use `Role.allows`, not `<`, which would compare the names
as strings.

The table lives in the views' database (an `Engine` passed in: the SQLite file by default,
PostgreSQL when configured) but in a `MetaData` of its own: `snapshotctl replay` drops and
recreates every table of the views' metadata, and must never take the tokens with it.
"""

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum

from sqlalchemy import (Column, DateTime, Engine, Index, Integer, MetaData, String, Table,
                        insert, select, update)
from sqlalchemy.exc import IntegrityError

from services.snapshots.views import create_tables

PREFIX = "dws_"
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TOKEN = 256  # far above a real token's 47 characters; longer input is not even hashed

metadata = MetaData()

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False),  # lower-cased name: names are case-insensitive
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)
# A revoked token's name may be used again, so the name is unique among live tokens only;
# the database enforces it, which also settles two simultaneous creates of one name.
Index("api_tokens_live_key", api_tokens.c.key, unique=True,
      sqlite_where=api_tokens.c.revoked_at.is_(None),
      postgresql_where=api_tokens.c.revoked_at.is_(None))


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    def allows(self, required: "Role") -> bool:
        """Whether this role may do what `required` may: each role includes those below it."""
        ranks = list(Role)
        return ranks.index(self) >= ranks.index(Role(required))


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown of a token: never the token, never its hash."""

    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None = None


class TokenError(ValueError):
    """A token cannot be created as asked; the message says why."""


class TokenStore:
    def __init__(self, engine: Engine):
        self._engine = engine
        create_tables(metadata, engine)

    def create(self, name: str, role: Role | str) -> str:
        """A new token for `name`: the plain token, returned this once and stored nowhere."""
        _check_name(name)
        token = PREFIX + secrets.token_urlsafe(32)
        row = dict(key=name.lower(), name=name, role=_role(role).value, token_hash=_digest(token),
                   created_at=datetime.now(timezone.utc))
        try:
            with self._engine.begin() as connection:
                connection.execute(insert(api_tokens).values(row))
        except IntegrityError:
            raise TokenError(f"a token named {name!r} already exists; revoke it first") from None
        return token

    def list(self) -> list[TokenInfo]:
        """Every token, revoked ones included (with `revoked_at`), oldest first."""
        query = _info_query().order_by(api_tokens.c.created_at, api_tokens.c.id)
        with self._engine.connect() as connection:
            return [_info(row) for row in connection.execute(query).mappings()]

    def revoke(self, name: str) -> bool:
        """True when a live token of that name was revoked, False when there was none."""
        statement = (update(api_tokens).values(revoked_at=datetime.now(timezone.utc))
                     .where(api_tokens.c.key == name.lower(), api_tokens.c.revoked_at.is_(None)))
        with self._engine.begin() as connection:
            return connection.execute(statement).rowcount > 0

    def authenticate(self, token: str) -> TokenInfo | None:
        """The live token's info, or None for an unknown or revoked token.

        Looked up by its hash rather than compared with `hmac.compare_digest`: the lookup's
        timing can only tell an attacker about the SHA-256 of their own guess, and a guess
        whose hash shares a prefix with a stored hash is no closer to the token (that would
        need a preimage), so there is no secret for a timing side channel to leak."""
        if not token.startswith(PREFIX) or len(token) > MAX_TOKEN:
            return None
        query = _info_query().where(api_tokens.c.token_hash == _digest(token),
                                    api_tokens.c.revoked_at.is_(None))
        with self._engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return _info(row) if row else None


def _digest(token: str) -> str:
    # A plain SHA-256 is enough here, unlike for passwords: the token holds 256 random bits,
    # so no dictionary or brute force reaches it, and slow or salted hashes would only cost
    # time on every request. Being unsalted, it can be looked up by an index.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise TokenError(f"token name {name[:80]!r} must be 1 to 64 letters, digits, '-' or '_'")


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise TokenError(f"role {str(role)[:40]!r} is not one of: "
                         f"{', '.join(r.value for r in Role)}") from None


def _info_query():
    return select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.created_at,
                  api_tokens.c.revoked_at)


def _info(row) -> TokenInfo:
    return TokenInfo(row["name"], Role(row["role"]), _utc(row["created_at"]), _utc(row["revoked_at"]))


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:  # SQLite keeps no zone; all is UTC
        return moment.replace(tzinfo=timezone.utc)
    return moment
