"""Control-plane throughput and latency through the real processes (service, projection,
API) on the embedded broker, with the BENCHMARK DRIVER (copies nothing), against raw
aiokafka and raw eventsourcing baselines measured in the same run."""

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
import uuid

import httpx
import psutil
from aiokafka import TopicPartition

from bench.report import Report, percentiles
from events.codec import command_envelope, encode
from events.commands import CreateSnapshotRequested, RegisterCluster
from services.snapshots.client import EventFollower
from events.kafka import ensure_topics, new_consumer, new_producer
from tests.e2e.system import RunningSystem


async def run_control_plane(report: Report, broker, data_dir, store: str, workflows: int, clusters: int,
                            rates: list[int], seconds: float, postgres_dsn: str | None,
                            copies: bool = False, profile_dir=None) -> None:
    """`copies`: real SQLite clusters (small files) copied by the sqlite driver, instead
    of the BENCHMARK DRIVER; the figures are labelled `store+copies`. `profile_dir`:
    py-spy profiles (raw format) of the service and the projection during the
    throughput run, `<part>-<label>.raw` (see bench/profile_summary.py)."""
    label = f"{store}+copies" if copies else store
    topic = label.replace("+", "-")
    settings = {"benchmark_driver": "false" if copies else "true", "event_store": store,
                "commands_topic": f"bench.commands.{topic}", "events_topic": f"bench.events.{topic}",
                "dlq_topic": f"bench.dlq.{topic}", "service_id": f"bench-{topic}-{uuid.uuid4().hex[:4]}"}
    if postgres_dsn:
        settings["postgres_dsn"] = postgres_dsn
    system = RunningSystem(broker.bootstrap_servers, data_dir, **settings)
    await ensure_topics(broker.bootstrap_servers, 3, [system.commands_topic, system.events_topic])
    names = [f"bench-{i:03d}" for i in range(clusters)]
    targets = {name: small_cluster(data_dir, name) if copies else str(data_dir / "bench" / name) for name in names}
    system.start()
    try:
        async with Client(system) as client:
            await client.register(targets)
            with profiled(system, profile_dir, label), cpu_per_workflow(report, system, broker, label, workflows):
                await throughput(report, client, system, label, names, workflows)
            for rate in rates:
                await latency(report, client, system, label, names, rate, seconds)
    finally:
        system.stop()
    if not copies:
        await raw_kafka(report, broker.bootstrap_servers, store, workflows)


@contextlib.contextmanager
def cpu_per_workflow(report: Report, system: RunningSystem, broker, label: str, workflows: int):
    """CPU time (user + system) each process spent while the block ran, per workflow:
    where the two cores go (service, projection, api, broker, and this benchmark client)."""
    processes = {part: psutil.Process(process.pid) for part, process in system.processes.items()}
    processes["broker"] = psutil.Process(broker.pid)
    processes["client"] = psutil.Process()

    def cpu() -> dict[str, float]:
        return {part: sum(process.cpu_times()[:2]) for part, process in processes.items()}
    before, started = cpu(), time.perf_counter()
    yield
    after, seconds = cpu(), time.perf_counter() - started
    spent = {part: after[part] - before[part] for part in processes}
    report.add(f"cpu[{label}]", seconds=seconds,
               **{f"{part}_ms_per_workflow": 1000 * value / workflows for part, value in spent.items()},
               total_ms_per_workflow=1000 * sum(spent.values()) / workflows,
               cores_busy=sum(spent.values()) / seconds)


@contextlib.contextmanager
def profiled(system: RunningSystem, profile_dir, label: str):
    """py-spy on the service and the projection while the block runs (nothing without a dir)."""
    profilers = []
    if profile_dir is not None:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        for part in ("service", "projection"):
            output = Path(profile_dir) / f"{part}-{label}.raw"
            profilers.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(system.processes[part].pid),
                 "--format", "raw", "--rate", "100", "--output", str(output)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        yield
    finally:
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        for profiler in profilers:
            profiler.wait(timeout=60)


def small_cluster(data_dir, name: str, rows: int = 100) -> str:
    """A small SQLite warehouse (one table of `rows` rows, about 8 KB) inside the data
    directory (an allowed target); returns its path."""
    path = data_dir / "bench-clusters" / f"{name}.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS sales (id INTEGER PRIMARY KEY, amount REAL, note TEXT)")
        db.executemany("INSERT INTO sales (amount, note) VALUES (?, ?)", [(i * 1.5, f"row {i}") for i in range(rows)])
    return str(path)


class Client:
    """Publishes commands and reads every status event, as an outside service would."""

    def __init__(self, system: RunningSystem):
        self.system = system
        self.producer = new_producer(system.bootstrap_servers)
        self.follower = EventFollower(system.bootstrap_servers, system.events_topic)

    async def __aenter__(self):
        await self.producer.start()
        await self.follower.start()
        self.events = self.follower.events()
        return self

    async def __aexit__(self, *exc):
        await self.follower.stop()
        await self.producer.stop()

    async def send(self, command, command_id: str | None = None) -> str:
        envelope = command_envelope(command, **({"id": command_id} if command_id else {}))
        await self.producer.send(self.system.commands_topic, encode(envelope), key=command.cluster_name.encode())
        return envelope.id

    async def register(self, targets: dict[str, str]) -> None:
        """Register each cluster at its target (inside the data directory: allowed)."""
        names = list(targets)
        for name, target in targets.items():
            await self.send(RegisterCluster(cluster_name=name, driver="sqlite", target=target))
        pending = set(names)
        async for envelope in self.events:
            if envelope.type in ("ClusterRegistered", "CommandRejected"):
                pending.discard(envelope.data["cluster_name"])
                if not pending:
                    return


async def throughput(report, client: Client, system, store, names, workflows) -> None:
    per_cluster = {name: workflows // len(names) for name in names}
    started, events, unlocked, run = time.perf_counter(), 0, 0, uuid.uuid4().hex[:4]

    async def next_snapshot(name):
        per_cluster[name] -= 1
        await client.send(CreateSnapshotRequested(cluster_name=name, snapshot_name=f"t{run}-{name}-{per_cluster[name]}"))

    for name in names:
        await next_snapshot(name)
    async for envelope in client.events:
        events += 1
        if envelope.type == "CommandRejected":
            raise RuntimeError(f"benchmark command rejected: {envelope.data}")
        if envelope.type == "ClusterUnlocked":
            unlocked += 1
            if per_cluster[envelope.subject] > 0:
                await next_snapshot(envelope.subject)
            if unlocked == workflows:
                break
    on_topic = time.perf_counter() - started
    await wait_for_view(system, f"t{run}", workflows)
    in_view = time.perf_counter() - started
    report.add(f"throughput[{store}]", workflows=workflows, clusters=len(names),
               seconds_to_last_unlocked=on_topic, seconds_to_all_in_view=in_view,
               workflows_per_s=workflows / on_topic, events_per_s=events / on_topic,
               workflows_per_s_in_view=workflows / in_view)


async def wait_for_view(system, prefix: str, expected: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{system.http_port}", headers=system.headers) as http:
        while time.monotonic() < deadline:
            body = (await http.get("/snapshots", params={"status": "Available", "limit": 1})).json()
            if body["count"] >= expected:
                return
            await asyncio.sleep(0.05)
    raise TimeoutError("the view never showed every snapshot")


async def latency(report, client: Client, system, store, names, rate: int, seconds: float) -> None:
    run = uuid.uuid4().hex[:4]
    sent_at, unlocked_at, visible_at = {}, {}, {}
    total = int(rate * seconds)

    async def publish():
        start = time.perf_counter()
        for i in range(total):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            name = f"l{run}-{i}"
            sent_at[name] = time.perf_counter()
            await client.send(CreateSnapshotRequested(cluster_name=names[i % len(names)], snapshot_name=name))

    async def watch_events():
        async for envelope in client.events:
            name = envelope.data.get("snapshot_name", "")
            if envelope.type == "ClusterUnlocked" and name in sent_at:
                unlocked_at[name] = time.perf_counter()
                if len(unlocked_at) == total:
                    return

    async def watch_view():
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{system.http_port}", headers=system.headers) as http:
            while len(visible_at) < total:
                body = (await http.get("/snapshots", params={"status": "Available", "limit": 400})).json()
                now = time.perf_counter()
                for item in body["snapshots"]:
                    if item["name"].startswith(f"l{run}-"):
                        visible_at.setdefault(item["name"], now)
                await asyncio.sleep(0.01)

    await asyncio.wait_for(asyncio.gather(publish(), watch_events(), watch_view()), seconds + 300)
    report.add(f"latency[{store}]@{rate}/s",
               to_unlocked=percentiles([unlocked_at[n] - sent_at[n] for n in unlocked_at]),
               to_view=percentiles([visible_at[n] - sent_at[n] for n in visible_at]))


async def raw_kafka(report, bootstrap: str, store: str, workflows: int) -> None:
    """Baseline: produce and consume as many messages (commands + events) of the same size."""
    sample = encode(command_envelope(CreateSnapshotRequested(cluster_name="bench-000", snapshot_name="t0000-bench-000-9")))
    count, topic = workflows * 6, f"bench.raw.{store}.{uuid.uuid4().hex[:4]}"
    await ensure_topics(bootstrap, 3, [topic])
    producer, consumer = new_producer(bootstrap), new_consumer(bootstrap, group_id=None)
    await producer.start()
    await consumer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, sample, key=f"bench-{i % 200:03d}".encode()) for i in range(count)]
        await asyncio.gather(*futures)
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        received = 0
        while received < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            received += sum(len(records) for records in batch.values())
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()
    report.add(f"raw_kafka[{store}]", messages=count, bytes_each=len(sample), seconds=elapsed,
               messages_per_s=count / elapsed)
