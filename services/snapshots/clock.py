"""The service's clock: the real UTC time, or, when `SNAPSHOT_TEST_CLOCK_FILE` names a
file, the ISO 8601 time written in it (read at every call), so that tests move time
forward (schedules, expiry) without sleeping. Never set it in production."""

import os
from datetime import datetime, timezone
from pathlib import Path

CLOCK_FILE_VARIABLE = "SNAPSHOT_TEST_CLOCK_FILE"


class Clock:
    def __init__(self, path: Path | str | None = None):
        self._path = Path(path) if path else None

    @classmethod
    def from_environment(cls) -> "Clock":
        return cls(os.environ.get(CLOCK_FILE_VARIABLE) or None)

    def now(self) -> datetime:
        if self._path is None:
            return datetime.now(timezone.utc)
        moment = datetime.fromisoformat(self._path.read_text().strip())
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def set_test_clock(path: Path, moment: datetime) -> None:
    """Write the time a test clock shows (atomically: a reader never sees half of it)."""
    partial = path.with_suffix(".partial")
    partial.write_text(moment.astimezone(timezone.utc).isoformat())
    partial.replace(path)
