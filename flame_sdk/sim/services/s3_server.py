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
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

REGION = "us-east-1"
UPLOAD_THREADS = 8
START_TIMEOUT = 60.0
_ACCESS = {"aws_access_key_id": "flame-sim", "aws_secret_access_key": "flame-sim-secret"}


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


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
        """Start moto's server in a child process and wait until it accepts connections."""
        self.port = self.port or _free_port(self.host)
        self._log = tempfile.TemporaryFile()
        self._server = subprocess.Popen([sys.executable, "-m", __name__, self.host, str(self.port), str(os.getpid())],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts(self.host, self.port):
            if self._server.poll() is not None or time.monotonic() > deadline:
                self.stop()
                self._log.seek(0)
                raise RuntimeError(f"moto's S3 server did not start on {self.host}:{self.port}: "
                                   f"{self._log.read()[-2000:].decode(errors='replace')}")
            time.sleep(0.05)
        self.url = f"http://{self.host}:{self.port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(10)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
            self._server = None
        if self._log is not None:
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


def _serve(host: str, port: int, parent: int) -> None:
    """The child process: moto's S3 app (only S3: no per-request lookup of the service by host name), keeping
    connections open (HTTP/1.1), until the parent is gone."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class KeepAlive(MotoRequestHandler):
        protocol_version = "HTTP/1.1"

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    server = make_server(host, port, create_backend_app("s3"), threaded=True, request_handler=KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while os.getppid() == parent:
        time.sleep(0.5)
    server.shutdown()


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
