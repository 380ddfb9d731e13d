"""A real redis-server on a free loopback port, AOF on, with a password."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support import processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    directory: Path
    port: int
    password: str
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """Database 0: what integration tests use (and empty between tests)."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def operator_url(self) -> str:
        """Database 1: the session operator's, so it never consumes the results that
        integration tests publish on the same server."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/1"

    def stop(self) -> None:
        processes.stop(self.process)


def start(directory: Path, also: str | None = None) -> RedisServer:
    """Starts one on a free port of 127.0.0.1 (and of `also`: where pods reach this machine)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is missing: run `make redis-server` (hack/redis.sh install)"
        )
    port, password = free_port(), secrets.token_hex(12)
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            " ".join(["127.0.0.1", *([also] if also else [])]),
            "--port",
            str(port),
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--requirepass",
            password,
            "--logfile",
            str(directory / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return RedisServer(directory, port, password, process)
        except OSError as error:
            if process.poll() is not None:
                log = (directory / "redis.log").read_text()
                raise RuntimeError(f"redis-server exited: {log}") from error
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start in 10 s")


def reach_from_pods(url: str, address: str) -> str:
    """`url` (a Redis on 127.0.0.1) as worker pods in their own network reach it: the server
    listens on the cluster's host address too, and the URL names that address."""
    from urllib.parse import urlsplit

    import redis

    parts = urlsplit(url)
    client = redis.Redis(host="127.0.0.1", port=parts.port or 6379, password=parts.password)
    try:
        bound = str(client.config_get("bind")["bind"]).split()
        if address not in bound:
            client.config_set("bind", " ".join([*bound, address]))
    finally:
        client.close()
    return parts._replace(netloc=parts.netloc.replace("127.0.0.1", address)).geturl()
