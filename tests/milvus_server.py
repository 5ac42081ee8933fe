"""A real Milvus standalone server for tests and benchmarks, on a free loopback port with its own data folder:
the `milvus` wheel, which ships the Go binary with embedded etcd and local storage.

The server is a child process (`milvus run standalone`) that would outlive a Python process killed by a
signal. So that none is ever left behind, each start also starts a watchdog in its own session: it
SIGKILLs the server as soon as the Python process that started it is gone, however it ended. `stop()`
(also registered with atexit) kills it at once on a normal exit.

Usage:
    server = MilvusProcess(tmp_path / "milvus")
    server.start()            # about 8 s
    location = server.location("images")   # milvus://127.0.0.1:PORT/images
    server.kill()             # kill -9, data kept; start() again recovers it on the same port
    server.stop()
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STARTUP_TIMEOUT_MS = 120_000
_WATCHDOG = """
import os, sys, time
parent, server = int(sys.argv[1]), int(sys.argv[2])
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not reaped) counts as gone
        return open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
while alive(server):
    if not alive(parent) or os.getppid() != parent:
        os.kill(server, 9)
        break
    time.sleep(0.2)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MilvusProcess:
    """One Milvus standalone server; start/kill/start keeps its data folder and port."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self._server = None
        self._watchdog: subprocess.Popen | None = None
        atexit.register(self.stop)

    @property
    def pid(self) -> int | None:
        return self._server.server_proc.pid if self._server and self._server.server_proc else None

    @property
    def version(self) -> str:
        import milvus

        return milvus.__version__

    def location(self, collection: str) -> str:
        return f"milvus://127.0.0.1:{self.port}/{collection}"

    def start(self) -> None:
        """Start the server and wait until it answers (raises if it does not within two minutes)."""
        from milvus import MilvusServer

        server = MilvusServer(wait_for_started=False)
        # The wheel checks that each port is free by binding it without SO_REUSEADDR, which fails for a minute
        # after a kill (connections in TIME_WAIT) although the server itself could listen again at once.
        server.config.try_bind_port = _bind_reusable
        server.set_base_dir(str(self.data_dir))
        server.listen_port = self.port
        server.start()
        self._server = server
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(server.server_proc.pid)],
            start_new_session=True,  # not killed with the test process's process group
        )
        try:
            server.wait_started(timeout=STARTUP_TIMEOUT_MS)
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """kill -9 the server (its data folder stays)."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            self._server.server_proc.wait(timeout=30)
        self._forget()

    def stop(self) -> None:
        """Stop the server for good: SIGTERM, then SIGKILL after 10 s."""
        if self._server is not None and self._server.server_proc is not None:
            process = self._server.server_proc
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        self._forget()

    def _forget(self) -> None:
        if self._server is not None:
            self._server.server_proc = None
            self._server.stop()  # closes its log files
            self._server = None
        if self._watchdog is not None:
            self._watchdog.wait(timeout=10)  # it exits once the server is gone
            self._watchdog = None


def _bind_reusable(port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        return None
    return sock


def wait_for_port_free(port: int, timeout_s: float = 30) -> None:
    """Wait until nothing listens on the loopback `port` (a killed server's port is reused at restart)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"port {port} is still in use after {timeout_s} s")
