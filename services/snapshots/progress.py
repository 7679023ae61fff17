"""The progress of a running copy, published as telemetry.

A driver calls `progress(bytes_done, bytes_total)` from its copy thread (SQLite after each
backup step, from its page counts; PostgreSQL at each poll of `pg_dump`, from the dump's
size against `pg_database_size`); the last call of a copy that succeeds is
`bytes_done == bytes_total`. `ProgressMeter` turns those calls into the data of a
`SnapshotProgress` event, at most one per `SNAPSHOT_PROGRESS_INTERVAL_SECONDS` (the final
100 % one always); `ProgressPublisher` sends each one straight to the events topic, keyed by
the cluster like every event, correlated to the create command and carrying its actor and
trace attributes.

Progress is telemetry, not history: it is not stored in the event store (so not in
`/history`, not replayed, not re-published), it is sent without waiting for the broker,
and one that fails to send is dropped (logged at DEBUG). The next one replaces it."""

import asyncio
import logging
import time
from collections.abc import Callable

from events.codec import encode, event_data
from events.envelope import Envelope
from events.events import SnapshotProgress
from events.kafka import HEADERS, record_key

log = logging.getLogger(__name__)

Report = Callable[[int, int | None], None]


class ProgressMeter:
    """The figures of one copy: rate from its start, ETA from that rate and the estimate."""

    def __init__(self, interval_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._interval = interval_seconds
        self._clock = clock
        self._started = clock()
        self._last: float | None = None

    def measure(self, done: int, total: int | None) -> dict | None:
        """The event's figures for this call, or None when it is too soon after the last."""
        now = self._clock()
        final = total is not None and done == total
        if not final and self._last is not None and now - self._last < self._interval:
            return None
        self._last = now
        elapsed = now - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        if total is None:
            percent, eta = None, None
        elif final:
            percent, eta = 100.0, 0.0
        else:  # an estimate may be passed: never show 100 % before the copy is done
            total = max(total, done)
            percent = min(99.9, round(100.0 * done / total, 1)) if total else 0.0
            eta = round((total - done) / rate, 1) if rate > 0 else None
        return {"bytes_done": done, "bytes_total": total, "percent": percent,
                "bytes_per_second": round(rate, 1), "eta_seconds": eta}


class ProgressPublisher:
    """Sends `SnapshotProgress` events to the events topic through the service's producer."""

    def __init__(self, producer, topic: str, source: str, interval_seconds: float):
        self._producer = producer  # relay.SharedProducer: one producer per process
        self._topic = topic
        self._source = source
        self.interval_seconds = interval_seconds
        self._sending: set[asyncio.Task] = set()

    def reporter(self, cluster_name: str, snapshot_name: str, correlation_id: str,
                 context: dict) -> Report:
        """The `progress` callback of one copy; called from the copy thread, never raises."""
        loop, meter = asyncio.get_running_loop(), ProgressMeter(self.interval_seconds)

        def report(done: int, total: int | None) -> None:
            try:
                figures = meter.measure(done, total)
                if figures is None:
                    return
                data = event_data(SnapshotProgress, {"cluster_name": cluster_name,
                                                     "snapshot_name": snapshot_name, **figures})
                envelope = Envelope(type="SnapshotProgress", source=self._source, subject=cluster_name,
                                    data=data, correlationid=correlation_id, **context)
                loop.call_soon_threadsafe(self._send, envelope)
            except Exception as error:  # noqa: BLE001 - telemetry never stops a copy
                log.debug("progress of %s not reported: %s", snapshot_name, error)
        return report

    def _send(self, envelope: Envelope) -> None:
        task = asyncio.ensure_future(self._publish(envelope))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish(self, envelope: Envelope) -> None:
        try:
            producer = await self._producer.get()
            await producer.send(self._topic, encode(envelope), key=record_key(envelope.subject),
                                headers=HEADERS)
        except Exception as error:  # noqa: BLE001 - telemetry: dropped, the next one follows
            log.debug("progress event not sent: %s", error)
