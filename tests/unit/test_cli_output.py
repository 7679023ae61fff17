"""What `snapshotctl` prints for a snapshot's progress: a rich bar with rate and ETA on a
terminal, one plain line per change otherwise (a pipe, a file, CI)."""

import io

from rich.console import Console

from services.snapshots.cli_output import ProgressDisplay, progress_text

HALF = {"bytes_done": 12_300_000, "bytes_total": 24_600_000, "percent": 50.0,
        "bytes_per_second": 5_100_000.0, "eta_seconds": 2.4}


def test_progress_reads_as_percent_sizes_rate_and_eta():
    assert progress_text(HALF) == "50.0 % (12.3 MB of 24.6 MB), 5.1 MB/s, ETA 2 s"
    unknown = {"bytes_done": 512, "bytes_total": None, "percent": None, "bytes_per_second": 0.0, "eta_seconds": None}
    assert progress_text(unknown) == "? (512 B of ?), 0 B/s, ETA ?"


def test_without_a_terminal_each_change_is_one_plain_line(capsys):
    with ProgressDisplay("nightly-01", tty=False) as display:
        display.update(None)
        display.update(HALF)
        display.update(dict(HALF))  # the same figures again: nothing new to say
        display.echo("12:00:00 SnapshotCompleted    dws-one/nightly-01 size_bytes=24600000")
        display.complete(24_600_000)
    assert capsys.readouterr().out.splitlines() == [
        "progress nightly-01: 50.0 % (12.3 MB of 24.6 MB), 5.1 MB/s, ETA 2 s",
        "12:00:00 SnapshotCompleted    dws-one/nightly-01 size_bytes=24600000",
        "progress nightly-01: 100.0 % (24.6 MB of 24.6 MB), 5.1 MB/s, ETA 0 s",
    ]


def test_on_a_terminal_it_is_a_bar_with_rate_and_eta(capsys):
    screen = io.StringIO()
    out = Console(file=screen, force_terminal=True, width=120, color_system=None)
    with ProgressDisplay("nightly-01", tty=True, out=out) as display:
        display.update(HALF)
        display.complete(24_600_000)
    drawn = screen.getvalue()
    assert "nightly-01" in drawn and "━" in drawn  # rich's bar
    assert "100.0 % (24.6 MB of 24.6 MB), 5.1 MB/s, ETA 0 s" in drawn
    assert capsys.readouterr().out == ""  # nothing as plain lines
