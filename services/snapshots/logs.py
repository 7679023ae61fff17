"""Log lines you can follow: one format for every part, and the command each line is about.

`configure(settings, part)` once per process (faust's worker and uvicorn are handed the same
configuration: `dict_config()`). Lines are JSON objects, one a line, when stderr is not a
terminal (`SNAPSHOT_LOG_FORMAT=auto`, the default), or text for a person at a terminal.

Every line carries what is known of the command it is about: `command_id`,
`correlation_id`, `cluster`, `snapshot` (bound with `bound(...)` around the work, kept in
a context variable, so a workflow task and the store threads it calls inherit it), and a
line about a batch carries `command_ids`. So `grep <command id>` finds the command's whole
path: intake, workflow, relay, projection."""

import contextlib
import contextvars
import json
import logging
import logging.config
import sys
import threading
from datetime import datetime, timezone

#: The fields a line may carry beside its message, in the order they are written.
FIELDS = ("command_id", "correlation_id", "cluster", "snapshot", "command_ids")
_context: contextvars.ContextVar[dict] = contextvars.ContextVar("dws_snapshots_log_context", default={})
_active: tuple[str, str] | None = None  # (format, part) as configured


@contextlib.contextmanager
def bound(**fields):
    """Within the block (and in tasks and store calls started from it), lines carry these
    fields; None values are left out."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def batch_fields(envelopes) -> dict:
    """The `extra` of a line about a batch of events: the commands that caused them (their
    `correlationid`), each once, in order."""
    return {"command_ids": list(dict.fromkeys(e.correlationid for e in envelopes if e.correlationid))}


class ContextFilter(logging.Filter):
    """Puts the bound fields and the part's name on every record (a record's own `extra`
    fields win: a batch line names its own commands)."""

    def __init__(self, part: str = ""):
        super().__init__()
        self.part = part

    def filter(self, record: logging.LogRecord) -> bool:
        record.part = self.part
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, part, logger, message, the
    command fields that are known, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname, "part": getattr(record, "part", ""),
                "logger": record.name, "message": record.getMessage()}
        line.update({key: getattr(record, key) for key in FIELDS if getattr(record, key, None) is not None})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # ASCII only: a control or bidi character in a message cannot reach a terminal raw
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """For a terminal: `time LEVEL part logger: message [field=value ...]`."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(part)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        known = [f"{key}={_text(getattr(record, key))}" for key in FIELDS
                 if getattr(record, key, None) is not None]
        if not known:
            return text
        head, newline, rest = text.partition("\n")  # after the message, before a traceback
        return f"{head} [{' '.join(known)}]{newline}{rest}"


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def use_json(log_format: str, stream=None) -> bool:
    """`json`, `text`, or `auto`: JSON unless the stream is a terminal."""
    if log_format != "auto":
        return log_format == "json"
    stream = stream or sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


def dict_config(log_format: str, part: str, level: str = "INFO") -> dict:
    """The logging configuration of a part, for `logging.config.dictConfig` (and for faust's
    worker, which applies its own configuration at start unless handed this one)."""
    formatter = JsonFormatter if use_json(log_format) else TextFormatter
    return {"version": 1, "disable_existing_loggers": False,
            "filters": {"context": {"()": ContextFilter, "part": part}},
            "formatters": {"line": {"()": formatter}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                    "formatter": "line", "filters": ["context"]}},
            "root": {"level": level, "handlers": ["stderr"]}}


def configure(log_format: str, part: str) -> None:
    """Apply the part's logging configuration to this process."""
    global _active
    _active = (log_format, part)
    logging.config.dictConfig(dict_config(log_format, part))
    logging.captureWarnings(True)  # warnings become lines of the same format
    # An exception nothing caught, in a thread or the main one: a line too, not raw text.
    threading.excepthook = _log_thread_exception
    sys.excepthook = lambda kind, value, trace: logging.getLogger("main").critical(
        "uncaught exception", exc_info=(kind, value, trace))


def _log_thread_exception(hook) -> None:
    if issubclass(hook.exc_type, SystemExit):
        return  # as the default hook: a thread ending itself is no error
    logging.getLogger("threading").error(
        "uncaught exception in thread %s", hook.thread.name if hook.thread else "?",
        exc_info=(hook.exc_type, hook.exc_value, hook.exc_traceback))


def active_config() -> dict | None:
    """A fresh copy of the configuration `configure` applied (dictConfig consumes what it is
    given), or None when nothing was configured (faust then sets up its own)."""
    return dict_config(*_active) if _active else None
