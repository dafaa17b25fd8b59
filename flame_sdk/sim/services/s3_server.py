"""One real S3 endpoint per simulation: moto's S3 server on a loopback port, in a child process so that it
has a core of its own (or, with ``S3Endpoint.external``, an S3 server run elsewhere, such as MinIO in docker
compose; same client code). The child ends with its parent.

Node data services create their buckets here and reach them through their Kong S3 routes, as the Kong
S3 gateway plugin reaches a node's bucket on a real node. The analysis never talks to it directly.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import select
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, NoReturn

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

REGION = "us-east-1"
UPLOAD_THREADS = 8
START_TIMEOUT = 60.0
_ACCESS = {"aws_access_key_id": "flame-sim", "aws_secret_access_key": "flame-sim-secret"}


def _read_port(reader: IO[bytes], child: subprocess.Popen[bytes], deadline: float) -> int:
    """The port the child reports once it listens (a line on its report pipe)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"no answer within {START_TIMEOUT:g} s")
        ready, _, _ = select.select([reader], [], [], min(remaining, 1.0))
        if ready:
            line = reader.readline()
            if line.strip().isdigit():
                return int(line)
            if line:
                raise RuntimeError(f"it reported {line!r} instead of its port")
            try:
                raise RuntimeError(f"it exited with code {child.wait(10)}")
            except subprocess.TimeoutExpired:
                raise RuntimeError("it closed its report pipe without telling its port") from None
        if child.poll() is not None:
            raise RuntimeError(f"it exited with code {child.returncode}")


class S3Endpoint:
    """moto's server in a thread. ``url`` is set after ``start()``; bucket names are unique per endpoint."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.url = ""
        self._server: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._prefix = "flame-" + secrets.token_hex(3)
        self._lock = threading.Lock()
        self._access = dict(_ACCESS)

    @classmethod
    def external(cls, url: str, access_key: str, secret_key: str) -> S3Endpoint:
        """An S3 server that runs elsewhere (nothing to start or stop), used with these credentials."""
        endpoint = cls()
        endpoint.url = url.rstrip("/")
        endpoint._access = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
        return endpoint

    def start(self) -> S3Endpoint:
        """Start moto's server in a child process and wait until it listens; it binds ``port`` (0: any free
        port) itself and tells the parent which one, so no other socket can take the port in between."""
        self._log = tempfile.TemporaryFile()
        report, report_child = os.pipe()
        try:
            self._server = subprocess.Popen(
                [sys.executable, "-m", __name__, self.host, str(self.port), str(os.getpid()), str(report_child)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log, pass_fds=(report_child,))
        finally:
            os.close(report_child)
        try:
            with os.fdopen(report, "rb") as reader:
                port = _read_port(reader, self._server, time.monotonic() + START_TIMEOUT)
        except RuntimeError as exc:
            self._fail(str(exc))
        self.port = port
        self.url = f"http://{self.host}:{self.port}"
        return self

    def _fail(self, problem: str) -> NoReturn:
        """Stop the child and raise, with what it wrote to stderr."""
        log = self._log
        assert log is not None
        self.stop(keep_log=True)
        log.seek(0)
        text = log.read()[-2000:].decode(errors="replace")
        log.close()
        raise RuntimeError(f"moto's S3 server did not start on {self.host} (port {self.port or 'any'}): {problem}: "
                           f"{text}")

    def stop(self, keep_log: bool = False) -> None:
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(10)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
            self._server = None
        if self._log is not None:
            if not keep_log:
                self._log.close()
            self._log = None

    def client(self) -> Any:
        """A boto3 S3 client with the endpoint's (dummy) credentials."""
        if not self.url:
            raise RuntimeError("S3Endpoint.start() must run before clients are created")
        config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}, connect_timeout=5,
                        read_timeout=60, max_pool_connections=UPLOAD_THREADS)
        return boto3.client("s3", endpoint_url=self.url, region_name=REGION, config=config, **self._access)

    def signed_headers(self, method: str, url: str) -> dict[str, str]:
        """SigV4 headers for a request to ``url`` (an already encoded URL on this endpoint)."""
        request = AWSRequest(method=method, url=url, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        S3SigV4Auth(Credentials(self._access["aws_access_key_id"], self._access["aws_secret_access_key"]), "s3",
                    REGION).add_auth(request)
        return dict(request.headers.items())

    def bucket_name(self, *parts: str) -> str:
        """A valid, endpoint-unique bucket name built from ``parts`` (e.g. node and source name)."""
        text = re.sub(r"[^a-z0-9-]+", "-", "-".join((self._prefix, *parts)).lower()).strip("-")
        return text[:63].rstrip("-")

    def create_bucket(self, name: str, objects: dict[str, bytes]) -> None:
        """Create ``name`` unless it is already ours (blocking; call from a worker thread), upload ``objects``."""
        client = self.client()
        with self._lock:
            try:
                client.create_bucket(Bucket=name)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass  # seeding an external store again
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            list(pool.map(lambda item: client.put_object(Bucket=name, Key=item[0], Body=item[1]), objects.items()))

    def __enter__(self) -> S3Endpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(host: str, port: int, parent: int, report: int) -> None:
    """The child process: moto's S3 app (only S3: no per-request lookup of the service by host name), keeping
    connections open (HTTP/1.1), until the parent is gone. The bound port goes to the ``report`` pipe."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class KeepAlive(MotoRequestHandler):
        protocol_version = "HTTP/1.1"

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    server = make_server(host, port, create_backend_app("s3"), threaded=True, request_handler=KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with os.fdopen(report, "w") as out:
        out.write(f"{server.port}\n")
    while os.getppid() == parent:
        time.sleep(0.5)
    server.shutdown()


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
