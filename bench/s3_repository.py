"""What the S3 repository costs: a snapshot of the ~1 GB PostgreSQL database streamed to an
S3-compatible server (moto's server mode, on this machine, started here) beside a plain
`pg_dump` to a local file, in the same run; the local disk the snapshot used while it ran
(none: only one part in memory), and a download of it back (as a restore does). `online`:
an online snapshot to S3 (the freeze released once pg_dump holds its locks): its
read-only window beside its whole time."""

import os
import tempfile
import threading
import time
from pathlib import Path

from bench.pg_dump import TARGET, ensure_database, plain_pg_dump
from bench.report import Report
from services.snapshots.drivers.postgres import PostgresDriver
from services.snapshots.repository import SnapshotKey
from services.snapshots.s3_repository import DEFAULT_PART_SIZE, S3Repository
from tests.s3_server import S3Server


def _disk_used(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):  # the peak resident set
                return int(line.split()[1]) * 1024
    return 0


def compare(report: Report, gigabytes: float) -> None:
    size = ensure_database(gigabytes)
    with tempfile.TemporaryDirectory() as tmp, S3Server(Path(tmp) / "moto.log") as server:
        directory = Path(tmp)
        os.environ.update(server.env)
        bucket = server.new_bucket()
        repository = S3Repository(f"s3://{bucket}/bench", directory / "staging", part_size=DEFAULT_PART_SIZE)
        plain_pg_dump(directory)  # warm the cache so neither side pays for a cold start
        plain = [plain_pg_dump(directory)[0]]
        (directory / "plain.pgdump").unlink()
        key, peak_disk, done = SnapshotKey("bench", "s3-1", "a1"), [0], threading.Event()

        def watch_disk() -> None:
            while not done.wait(0.5):
                peak_disk[0] = max(peak_disk[0], _disk_used(directory / "staging") if (directory / "staging").exists() else 0)

        watcher = threading.Thread(target=watch_disk, daemon=True)
        watcher.start()
        rss_before, started = _rss_bytes(), time.perf_counter()
        frozen = PostgresDriver().freeze(TARGET)
        try:
            files = repository.source(frozen, key).copy_to(repository.directory(key))
        finally:
            frozen.release()
        ours = time.perf_counter() - started
        done.set()
        watcher.join()
        rss_growth = max(0, _rss_bytes() - rss_before)
        started = time.perf_counter()
        with repository.fetched(key) as fetched:
            downloaded = _disk_used(fetched)
        fetch = time.perf_counter() - started
        plain.append(plain_pg_dump(directory)[0])
    baseline = min(plain)
    report.add("postgres_snapshot_to_s3", database_bytes=size, dump_bytes=files.size_bytes,
               pg_dump_to_file_seconds=baseline, snapshot_to_s3_seconds=ours, ratio_to_pg_dump=ours / baseline,
               overhead_percent=(ours / baseline - 1) * 100, local_disk_peak_bytes=peak_disk[0],
               peak_rss_growth_bytes=rss_growth, part_size_bytes=DEFAULT_PART_SIZE,
               download_seconds=fetch, downloaded_bytes=downloaded,
               s3_server="moto server mode on the same 2 cores")


def online(report: Report, gigabytes: float) -> None:
    """An online snapshot streamed to S3: freeze, export, pg_dump until it holds its locks
    (the read-only window; released there as the workflow does), then the upload."""
    size = ensure_database(gigabytes)
    with tempfile.TemporaryDirectory() as tmp, S3Server(Path(tmp) / "moto.log") as server:
        os.environ.update(server.env)
        repository = S3Repository(f"s3://{server.new_bucket()}/bench", Path(tmp) / "staging")
        driver, key, pinned_at = PostgresDriver(), SnapshotKey("bench", "online-1", "a1"), []

        def pinned() -> None:
            pinned_at.append(time.perf_counter())
            driver.thaw(TARGET)

        started = time.perf_counter()
        frozen = driver.freeze(TARGET)
        try:
            files = repository.source(frozen, key).copy_online(repository.directory(key), threading.Event(), pinned)
        finally:
            frozen.release()
            frozen.cleanup()
        total = time.perf_counter() - started
    report.add("postgres_online_snapshot_to_s3", database_bytes=size, dump_bytes=files.size_bytes,
               seconds=total, read_only_seconds=pinned_at[0] - started if pinned_at else total,
               s3_server="moto server mode on the same 2 cores")
