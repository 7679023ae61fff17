"""Real data: a snapshot of a ~1 GB PostgreSQL database with the `postgres` driver, offline
and online, against a plain `pg_dump` of the same database in the same run, how long it was
read-only, and plain `pg_dump` at the compression levels it offers."""

import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from bench.report import Report
from services.snapshots.drivers.base import CleanupPending
from services.snapshots.drivers.postgres import PostgresDriver

DATABASE = "bench_dump_data"
TARGET = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
ROW_BYTES = 120  # about, on disk, for the rows below


def ensure_database(gigabytes: float) -> int:
    """Create (once; it is kept between runs) a database of about `gigabytes`."""
    rows = int(gigabytes * 1e9 / ROW_BYTES)
    with psycopg.connect(dbname="postgres", autocommit=True, host="127.0.0.1", user="postgres") as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            admin.execute(f'CREATE DATABASE "{DATABASE}"')
    with psycopg.connect(TARGET, autocommit=True) as db:
        db.execute("CREATE TABLE IF NOT EXISTS facts (id bigint PRIMARY KEY, customer int, amount numeric(12,2), note text)")
        have = db.execute("SELECT count(*) FROM facts").fetchone()[0]
        if have < rows:
            print(f"  filling {DATABASE} to {rows:,} rows (kept for later runs)...", flush=True)
            db.execute("INSERT INTO facts SELECT g, g %% 100000, (g %% 99999) / 100.0, md5(g::text) || md5((g * 7)::text) "
                       "FROM generate_series(%s, %s) g", (have + 1, rows))
            db.execute("VACUUM ANALYZE facts")
        return db.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def plain_pg_dump(directory: Path, level: int | None = None) -> tuple[float, int]:
    """`pg_dump -Fc` to a file (at `-Z level`, or pg_dump's default): seconds and bytes."""
    started, dump = time.perf_counter(), directory / "plain.pgdump"
    compression = [] if level is None else [f"--compress={level}"]
    subprocess.run(["pg_dump", "--format=custom", *compression, f"--file={dump}", f"--dbname={TARGET}"],
                   check=True)
    return time.perf_counter() - started, dump.stat().st_size


def driver_snapshot(directory: Path, online: bool = False,
                    compression: int | None = None) -> tuple[float, float, int]:
    """A snapshot with the `postgres` driver: seconds, seconds read-only, bytes. Online, the
    freeze is released as the workflow does: by target, once the copy is pinned."""
    driver = PostgresDriver(compression=compression)
    started, released = time.perf_counter(), []

    def pinned() -> None:
        driver.thaw(TARGET)
        released.append(time.perf_counter())

    frozen = driver.freeze(TARGET)
    try:
        if online:
            files = frozen.copy_online(directory / "online", threading.Event(), pinned)
        else:
            files = frozen.copy_to(directory / "snapshot")
    finally:
        frozen.release()
        released.append(time.perf_counter())
    elapsed = time.perf_counter() - started
    clean_up(driver)
    return elapsed, released[0] - started, files.size_bytes  # read-only from freeze to release


def clean_up(driver: PostgresDriver, attempts: int = 60) -> None:
    """Remove the freeze's triggers, as the service's retried job does (autovacuum or
    another session may hold the table for a while)."""
    for attempt in range(attempts):
        try:
            return driver.cleanup(TARGET)
        except CleanupPending:
            time.sleep(1)
    driver.cleanup(TARGET)


def compare(report: Report, gigabytes: float, compression: int | None = None) -> None:
    """Offline and online snapshots at the service's compression, and plain pg_dump at the
    levels pg_dump offers (the default is -Z6 for the custom format), in the same run."""
    size = ensure_database(gigabytes)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        plain_pg_dump(directory, compression)  # warm the cache so neither side pays for a cold start
        levels = {}
        for level in (0, 1, None):
            levels["default" if level is None else level] = plain_pg_dump(directory, level)
        baseline = [plain_pg_dump(directory, compression)[0]]
        ours, read_only, dump_bytes = driver_snapshot(directory, False, compression)
        online, online_read_only, _ = driver_snapshot(directory, True, compression)
        baseline.append(plain_pg_dump(directory, compression)[0])
    pg_dump_seconds = min(baseline)
    report.add("postgres_snapshot", database_bytes=size, dump_bytes=dump_bytes, compression=compression,
               pg_dump_seconds=pg_dump_seconds, driver_snapshot_seconds=ours, read_only_seconds=read_only,
               ratio_to_pg_dump=ours / pg_dump_seconds, overhead_percent=(ours / pg_dump_seconds - 1) * 100,
               online_snapshot_seconds=online, online_read_only_seconds=online_read_only,
               online_overhead_percent=(online / pg_dump_seconds - 1) * 100)
    for level, (seconds, dump_size) in levels.items():
        report.add(f"pg_dump_compress_{level}", database_bytes=size, seconds=seconds, dump_bytes=dump_size)
