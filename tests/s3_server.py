"""An S3-compatible server for the tests: moto's server mode (`moto_server`, from the
`moto[server]` package pinned in pyproject.toml), a process of its own on a free port,
dying with the test run. Clients reach it through the AWS SDK's own variables only
(`env`), as the service does in production."""

import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import httpx

from services.snapshots.broker import die_with_parent, free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-access-key", "AWS_SECRET_ACCESS_KEY": "test-secret-key-never-logged",
               "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    def __init__(self, log_path: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, **CREDENTIALS}

    def __enter__(self) -> "S3Server":
        log = open(self._log_path, "ab")
        self._process = subprocess.Popen(
            [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent())
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.endpoint + "/moto-api/", timeout=1)
                return self
            except httpx.HTTPError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"moto_server did not start; see {self._log_path}")
                time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def client(self):
        return boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"]).client("s3", endpoint_url=self.endpoint)

    def new_bucket(self) -> str:
        name = f"snapshots-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> dict[str, int]:
        """Every object's key and size."""
        found = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
        return found

    def uploads(self, bucket: str) -> list[dict]:
        """Unfinished multipart uploads (each with its parts uploaded so far)."""
        client = self.client()
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return [{**u, "Parts": client.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", [])}
                for u in uploads]
