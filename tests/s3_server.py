"""An S3-compatible server for the tests: moto's server mode (`moto_server`, from the
`moto[server]` package pinned in pyproject.toml), a process of its own on a free port,
dying with the test run. Clients reach it through the AWS SDK's own variables only
(`env`), as the service does in production. `RefusingProxy` puts a fault in front of it:
deletions refused while a test says so."""

import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

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


class RefusingProxy:
    """An HTTP proxy in front of the S3 server that answers `403 AccessDenied` to every
    deletion (DELETE, and POST ?delete: DeleteObjects) while `refusing` is set, and
    forwards everything else untouched: a fault a test turns on and off. Point a process's
    AWS_ENDPOINT_URL_S3 at `endpoint`."""

    HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.refusing = threading.Event()
        self.refused = 0
        self._client = httpx.Client(timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def forward(self) -> None:
                body = proxy._body(self)
                query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
                if proxy.refusing.is_set() and (self.command == "DELETE" or (self.command == "POST" and "delete" in query)):
                    proxy.refused += 1
                    return proxy._answer(self, 403, {"Content-Type": "application/xml"},
                                         b"<Error><Code>AccessDenied</Code><Message>refused by the test</Message></Error>")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy.HOP_BY_HOP}
                request = proxy._client.build_request(self.command, proxy.upstream + self.path, headers=headers,
                                                      content=body)
                answer = proxy._client.send(request, stream=True)
                try:
                    raw = b"".join(answer.iter_raw())
                finally:
                    answer.close()
                out = {k: v for k, v in answer.headers.items() if k.lower() not in proxy.HOP_BY_HOP
                       and (self.command == "HEAD" or k.lower() != "content-length")}
                proxy._answer(self, answer.status_code, out, raw)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    @staticmethod
    def _body(handler: BaseHTTPRequestHandler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
            while handler.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, headers, body: bytes) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if "content-length" not in {k.lower() for k in headers}:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def __enter__(self) -> "RefusingProxy":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
