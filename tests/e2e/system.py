"""The real processes of dws-snapshots, started as a user would, and a client of them."""

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from events.envelope import Envelope
from events.events import TELEMETRY_EVENTS
from services.snapshots.broker import die_with_parent, free_port
from services.snapshots.client import EventFollower
from events.kafka import new_producer

ROOT = Path(__file__).resolve().parents[2]


def snapshotctl(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.snapshots", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


class RunningSystem:
    """`snapshotctl service`, `projection` and `api` as processes on a shared broker."""

    def __init__(self, bootstrap_servers: str, data_dir: Path, **settings: str):
        self.bootstrap_servers = bootstrap_servers
        self.data_dir = data_dir
        self.http_port = free_port()
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
                    "SNAPSHOT_DATA_DIR": str(data_dir), "SNAPSHOT_HTTP_PORT": str(self.http_port),
                    **{f"SNAPSHOT_{k.upper()}": v for k, v in settings.items()}}
        self.commands_topic = settings.get("commands_topic", "snapshot.commands")
        self.events_topic = settings.get("events_topic", "snapshot.events")
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, parts=("service", "projection", "api")) -> "RunningSystem":
        if "SNAPSHOT_API_TOKEN" not in self.env:
            self.env["SNAPSHOT_API_TOKEN"] = self.create_token("e2e-admin", "admin")
        for part in parts:
            self.start_part(part, part)
        return self

    def start_part(self, name: str, part: str) -> None:
        """Start `snapshotctl <part>` as the process called `name` (two services: two names)."""
        log = open(self.data_dir / f"{name}.log", "ab")
        # It dies with the test run, even one killed or failing before its fixture stops it.
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "services.snapshots", part], env=self.env, cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent())

    def create_token(self, name: str, role: str) -> str:
        """`snapshotctl token create`, as an operator would; the token is its last line."""
        done = snapshotctl("token", "create", name, "--role", role, env=self.env)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.env['SNAPSHOT_API_TOKEN']}"}

    def kill(self, part: str) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut or the OOM killer."""
        self.processes[part].kill()
        self.processes[part].wait()

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()

    def log(self, part: str) -> str:
        return (self.data_dir / f"{part}.log").read_text(errors="replace")

    def get(self, path: str, token: str | None = None, **params) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else self.headers
        return httpx.get(f"http://127.0.0.1:{self.http_port}{path}", params=params, headers=headers,
                         timeout=10)

    def request(self, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else self.headers
        return httpx.request(method, f"http://127.0.0.1:{self.http_port}{path}",
                             headers={**headers, **kwargs.pop("headers", {})}, timeout=10, **kwargs)

    def wait_for_api(self, path: str, predicate, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.get(path)
                if predicate(last):
                    return last
            except httpx.HTTPError as error:
                last = error
            time.sleep(0.2)
        raise AssertionError(f"GET {path} never satisfied the check; last answer: "
                             f"{getattr(last, 'text', last)}")

    async def send(self, type_: str, data: dict, command_id: str | None = None,
                   key: str | None = None) -> str:
        envelope = Envelope(id=command_id or str(uuid.uuid4()), type=type_, source="e2e-test",
                            subject=data.get("cluster_name"), data=data)
        await self.send_raw(envelope.model_dump_json().encode(), key or data.get("cluster_name", "x"))
        return envelope.id

    async def send_with(self, type_: str, data: dict, **extensions: str) -> str:
        """A command with CloudEvents extension attributes (authcontext, trace context)."""
        envelope = Envelope(type=type_, source="e2e-test", subject=data.get("cluster_name"), data=data,
                            **extensions)
        await self.send_raw(envelope.model_dump_json(exclude_none=True).encode(), data["cluster_name"])
        return envelope.id

    async def send_raw(self, value: bytes, key: str = "x", topic: str | None = None) -> None:
        producer: AIOKafkaProducer = new_producer(self.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(topic or self.commands_topic, value, key=key.encode())
        finally:
            await producer.stop()

    async def events_of(self, command_id: str, last: str, timeout: float = 30.0,
                        telemetry: bool = False) -> list[Envelope]:
        """Every status event caused by a command, up to one of type `last`; with
        `telemetry`, its `SnapshotProgress` too (published straight from the copy, so it may
        come before `ClusterReadOnly`: it is not in the event store's order)."""
        found = []
        async with EventFollower(self.bootstrap_servers, self.events_topic, True) as follower:
            async def collect():
                async for envelope in follower.events():
                    if envelope.type in TELEMETRY_EVENTS and not telemetry:
                        continue
                    if envelope.correlationid == command_id:
                        found.append(envelope)
                        if envelope.type == last:
                            return
            try:
                await asyncio.wait_for(collect(), timeout)
            except asyncio.TimeoutError:
                raise AssertionError(f"no {last} for {command_id} within {timeout} s; saw "
                                     f"{[e.type for e in found]}") from None
        return found
