"""Real data: a snapshot of a ~1 GB PostgreSQL database with the `postgres` driver, against
a plain `pg_dump` of the same database in the same run, and how long it was read-only."""

import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from bench.report import Report
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


def plain_pg_dump(directory: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["pg_dump", "--format=custom", f"--file={directory / 'plain.pgdump'}", f"--dbname={TARGET}"],
                   check=True)
    return time.perf_counter() - started


def driver_snapshot(directory: Path) -> tuple[float, float, int]:
    driver = PostgresDriver()
    started = time.perf_counter()
    frozen = driver.freeze(TARGET)
    try:
        files = frozen.copy_to(directory / "snapshot")
    finally:
        frozen.release()
    elapsed = time.perf_counter() - started
    return elapsed, elapsed, files.size_bytes  # read-only from freeze to release


def compare(report: Report, gigabytes: float) -> None:
    size = ensure_database(gigabytes)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        plain_pg_dump(directory)  # warm the cache so neither side pays for a cold start
        plain = [plain_pg_dump(directory)]
        ours, read_only, dump_bytes = driver_snapshot(directory)
        plain.append(plain_pg_dump(directory))
    baseline = min(plain)
    report.add("postgres_snapshot", database_bytes=size, dump_bytes=dump_bytes, pg_dump_seconds=baseline,
               driver_snapshot_seconds=ours, read_only_seconds=read_only, ratio_to_pg_dump=ours / baseline,
               overhead_percent=(ours / baseline - 1) * 100)
