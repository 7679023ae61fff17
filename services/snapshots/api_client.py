"""The HTTP client of `snapshotctl`: the API's address and token, a one-line error for every
failure, and following a command's events until its outcome (`GET /commands/{id}`).

The token is `SNAPSHOT_API_TOKEN`, else the file `<data dir>/admin.token` that `snapshotctl
up` writes on first start."""

import time
from collections.abc import Callable

import httpx

from services.snapshots.client import failure_of, settled
from services.snapshots.settings import Settings


class ApiError(Exception):
    """A one-line reason for the user (and the HTTP status, when there was an answer)."""

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.status = status


def token_of(settings: Settings) -> str | None:
    if settings.api_token is not None:
        return settings.api_token.get_secret_value()
    path = settings.data_dir / "admin.token"
    return path.read_text().strip() if path.is_file() else None


class ApiClient:
    def __init__(self, settings: Settings):
        self.base = f"http://{settings.http_host}:{settings.http_port}"
        token = token_of(settings)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = httpx.request(method, self.base + path, headers={**self._headers, **kwargs.pop("headers", {})},
                                     timeout=15, **kwargs)
        except httpx.HTTPError as error:
            raise ApiError(f"cannot reach the API at {self.base}: {error}") from None
        if response.status_code >= 400:
            raise ApiError(f"{response.status_code} from the API: {_reason(response)}", response.status_code)
        return response.json()

    def follow(self, command_id: str, command_type: str, timeout: float,
               show: Callable[[dict], None], on_poll: Callable[[], None] | None = None) -> str | None:
        """Show the command's events as they come; the failure or rejection, or None.
        `on_poll` runs at each poll (the CLI fetches the snapshot's progress there)."""
        shown, deadline = 0, time.monotonic() + timeout
        while time.monotonic() < deadline:
            if on_poll is not None:
                on_poll()
            body = self.call("GET", f"/commands/{command_id}")
            for event in body["events"][shown:]:
                show(event)
            shown = len(body["events"])
            if body["state"] == "rejected":
                return f"rejected ({body['rejection']['code']}): {body['rejection']['reason']}"
            if settled(command_type, [(e["type"], e["data"]) for e in body["events"]]):
                return _failure(body["events"])
            time.sleep(0.3)
        raise ApiError(f"no outcome for command {command_id} within {timeout:g} s")


def _failure(events: list[dict]) -> str | None:
    return next(filter(None, (failure_of(event["type"], event["data"]) for event in events)), None)


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "reason" in body:
        return f"{body.get('code')}: {body['reason']}"
    detail = body.get("detail") if isinstance(body, dict) else body
    return detail.get("reason", str(detail)) if isinstance(detail, dict) else str(detail)
