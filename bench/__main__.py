"""Run the benchmarks: `make bench` (or `python -m bench --quick`). Needs PostgreSQL on
127.0.0.1:5432 for the postgres figures. Prints figures and ratios to raw baselines,
keeps them in bench/results.json and draws bench/latency.png."""

import argparse
import asyncio
import tempfile
import uuid
from pathlib import Path

import psycopg

from bench import control_plane, pg_dump, plot, s3_repository, stores
from bench.report import Report
from services.snapshots.broker import EmbeddedBroker
from services.snapshots.settings import Settings

PG = dict(host="127.0.0.1", port=5432, user="postgres")


def new_database() -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def store_settings(store: str, directory: Path, database: str | None) -> Settings:
    if store == "postgres":
        return Settings(event_store="postgres", data_dir=directory,
                        postgres_dsn=f"postgresql://postgres@127.0.0.1:5432/{database}")
    return Settings(event_store="sqlite", data_dir=directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--only", default="control,copies,replay,dump,s3",
                        help="control (benchmark driver), copies (real SQLite copies), replay, dump, s3")
    parser.add_argument("--replay-sizes", default="100000,1000000", help="stored events per replay run")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="py-spy profiles of the service and projection during the throughput runs")
    parser.add_argument("--workflows", type=int, default=None, help="workflows of the throughput run")
    parser.add_argument("--rates", default=None, help="commands/s of the latency runs, e.g. 10,50")
    args = parser.parse_args()
    workflows, rates, seconds = (200, [10, 50], 3) if args.quick else (2000, [10, 50, 200], 10)
    workflows = args.workflows or workflows
    rates = [int(rate) for rate in args.rates.split(",")] if args.rates else rates
    replay_sizes = [10_000] if args.quick else [int(n) for n in args.replay_sizes.split(",")]
    dump_gb = 0.05 if args.quick else 1.0
    report, only = Report(), args.only.split(",")
    print(f"machine: {report.machine}")
    with EmbeddedBroker() as broker:
        for store in args.stores.split(","):
            print(f"[{store} event store]", flush=True)
            if "control" in only:
                with tempfile.TemporaryDirectory() as tmp:
                    database = new_database() if store == "postgres" else None
                    settings = store_settings(store, Path(tmp), database)
                    dsn = settings.postgres_dsn if database else None
                    asyncio.run(control_plane.run_control_plane(
                        report, broker, Path(tmp), store, workflows, 200, rates, seconds, dsn, profile_dir=args.profile))
                    stores.raw_saves(report, store_settings(store, Path(tmp) / "raw", database), store,
                                     workflows * 6)
                    if database:
                        drop_database(database)
            if "copies" in only and store == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    asyncio.run(control_plane.run_control_plane(
                        report, broker, Path(tmp), store, workflows, 200, rates, seconds, None, copies=True,
                        profile_dir=args.profile))
            if "replay" in only:
                for size in replay_sizes:
                    with tempfile.TemporaryDirectory() as tmp:
                        database = new_database() if store == "postgres" else None
                        stores.replay(report, store_settings(store, Path(tmp), database), store, size)
                        if database:
                            drop_database(database)
    if "dump" in only:
        pg_dump.compare(report, dump_gb, Settings().pg_compression)
    if "s3" in only:
        s3_repository.compare(report, dump_gb)
        s3_repository.online(report, dump_gb)
    report.save()
    plot.latency_png(report)


if __name__ == "__main__":
    main()
