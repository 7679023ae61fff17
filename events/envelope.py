"""The CloudEvents 1.0 structured-mode envelope that wraps every message on Kafka."""

import uuid
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Envelope(BaseModel):
    """One CloudEvent. `correlationid` and `sequence` are set on events only. The
    extension attributes `authtype`/`authid` (CloudEvents *authcontext*: who issued the
    command) and `traceparent`/`tracestate` (W3C trace context) go from a command to every
    event it causes."""

    model_config = ConfigDict(extra="allow")

    specversion: str = Field("1.0", pattern=r"^1\.0$")
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=256)
    type: str = Field(min_length=1, max_length=128)
    source: str = Field("snapshotctl", min_length=1, max_length=256)
    time: datetime = Field(default_factory=utc_now)
    subject: str | None = Field(None, max_length=256)
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)
    correlationid: str | None = Field(None, max_length=256)
    sequence: str | None = Field(None, pattern=r"^[0-9]+$")
    authtype: str | None = Field(None, max_length=64)
    authid: str | None = Field(None, max_length=256)
    traceparent: str | None = Field(None, max_length=128)
    tracestate: str | None = Field(None, max_length=512)
