"""What `snapshotctl` prints: one-line errors, tables, JSON, event lines, and the progress of
a snapshot (a `rich` bar with rate and ETA on a terminal, plain lines otherwise)."""

import json
import sys
from datetime import datetime

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

# Piped output is not cut to 80 columns: names and reasons stay whole for grep and scripts.
console = Console(width=None if sys.stdout.isatty() else 250)


def fail(reason: str, code: int = 1) -> None:
    typer.echo(f"snapshotctl: {printable(reason)}", err=True)
    raise typer.Exit(code)


def print_json(body) -> None:
    typer.echo(json.dumps(body, indent=2, default=str))


def printable(text) -> str:
    """Never print a raw control character (an event's text comes from other people)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def event_line(moment: datetime, event_type: str, data: dict) -> str:
    data = dict(data)
    subject = data.pop("cluster_name", "")
    if "snapshot_name" in data:
        subject += "/" + data.pop("snapshot_name")
    details = " ".join(f"{k}={v}" for k, v in data.items() if v not in (None, "") and k != "warning")
    return printable(f"{moment:%H:%M:%S} {event_type:<20} {subject} {details}".rstrip())


def api_event_line(event: dict) -> str:
    """An event as `GET .../history` and `GET /commands/{id}` show it."""
    actor = event.get("actor") or {}
    by = f" by {actor['authid']}" if actor.get("authid") else ""
    return event_line(datetime.fromisoformat(event["time"]), event["type"], event["data"]) + printable(by)


def snapshot_table(snapshots: list[dict]) -> Table:
    table = Table("Name", "Cluster", "Status", "Type", "Size (bytes)", "Started", "Finished", "Note")
    for s in snapshots:
        table.add_row(*map(printable, (s["name"], s["cluster_name"], s["status"], s["snapshot_type"],
                      "" if s["size_bytes"] is None else f"{s['size_bytes']:,}",
                      s["started_at"] or "", s["finished_at"] or "",
                      s["failure_reason"] or s["warning"] or _progress_note(s.get("progress")))))
    return table


def cluster_table(clusters: list[dict]) -> Table:
    table = Table("Name", "Status", "Task status", "Driver", "Target")
    for c in clusters:
        table.add_row(*map(printable, (c["name"], c["status"], c["task_status"] or "", c["driver"], c["target"])))
    return table


def snapshot_details(snapshot: dict) -> Table:
    """`describe`: one snapshot, a field a line."""
    table = Table("Field", "Value", show_header=False)
    for field, value in snapshot.items():
        if field == "progress":
            value = progress_text(value) if value else ""
        elif field == "size_bytes" and value is not None:
            value = f"{value:,}"
        table.add_row(field, printable("" if value is None else value))
    return table


def _progress_note(progress: dict | None) -> str:
    return progress_text(progress) if progress else ""


def size_text(size: float | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return "?"


def progress_text(progress: dict) -> str:
    """`45.2 % (12.3 MB of 27.2 MB), 5.1 MB/s, ETA 3 s`, as the figures allow."""
    percent = progress.get("percent")
    head = f"{percent:.1f} %" if percent is not None else "?"
    eta = progress.get("eta_seconds")
    return (f"{head} ({size_text(progress.get('bytes_done'))} of {size_text(progress.get('bytes_total'))}), "
            f"{size_text(progress.get('bytes_per_second'))}/s, ETA {'?' if eta is None else f'{eta:.0f} s'}")


class ProgressDisplay:
    """The progress of one snapshot while `create --wait` follows it: a `rich` bar with rate
    and ETA on a terminal; on anything else (a pipe, a file, CI) one plain line per change.
    Event lines go through `echo`, so they print above the bar instead of through it."""

    def __init__(self, snapshot_name: str, tty: bool | None = None, out: Console | None = None):
        self._name = snapshot_name
        self._tty = sys.stdout.isatty() if tty is None else tty
        self._out = out
        self._bar: Progress | None = None
        self._task = None
        self._last: dict | None = None

    def __enter__(self) -> "ProgressDisplay":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def echo(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            typer.echo(text)

    def update(self, progress: dict | None) -> None:
        if not progress or progress == self._last:
            return
        self._last = dict(progress)
        if not self._tty:
            typer.echo(f"progress {printable(self._name)}: {progress_text(progress)}")
            return
        if self._bar is None:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[figures]}"),
                                 console=self._out or Console(), transient=False)
            self._task = self._bar.add_task(printable(self._name), total=None, figures="")
            self._bar.start()
        self._bar.update(self._task, completed=progress.get("bytes_done") or 0,
                         total=progress.get("bytes_total"), figures=progress_text(progress))

    def complete(self, size_bytes: int) -> None:
        """The copy is done (its last progress may not have been seen through the API)."""
        if self._last is not None or self._bar is not None:
            self.update({**(self._last or {}), "bytes_done": size_bytes, "bytes_total": size_bytes,
                         "percent": 100.0, "eta_seconds": 0.0})
