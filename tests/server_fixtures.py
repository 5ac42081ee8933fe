"""Helpers for the server tests: a sample index in a temporary folder and a real uvicorn server on it.

Import from test modules (pytest puts ``tests/`` on ``sys.path``). The embedder is conftest.py's
session-wide `mobilenet`; each test module builds its own index over its own copy of the sample, so
modules that add images never disturb each other.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from imagerank import Embedder, Index

SAMPLE = Path(__file__).resolve().parents[1] / "sample" / "caltech101"
SAMPLE_LABELS = 10
SAMPLE_PER_LABEL = 8
STARTUP_TIMEOUT_S = 120


@dataclass(frozen=True)
class Served:
    """A running server: its base URL, the index it serves and the folder that index was built from."""

    url: str
    index_dir: Path
    images: Path
    process: subprocess.Popen
    log: Path


def build_sample_index(directory: Path, embedder: Embedder) -> tuple[Path, Path]:
    """Copy the shipped sample to ``directory/images`` and index it; returns (index dir, images dir)."""
    if not SAMPLE.is_dir():
        pytest.skip(f"the sample images are missing at {SAMPLE}")
    images = directory / "images"
    shutil.copytree(SAMPLE, images)
    index_dir = directory / "sample.index"
    with Index.create(index_dir, embedder=embedder) as index:
        report = index.sync(images)
    assert len(report.indexed) == SAMPLE_LABELS * SAMPLE_PER_LABEL, report.summary()
    return index_dir, images


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(
    index_dir: Path,
    images: Path,
    log: Path,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[Served]:
    """`python -m imagerank.server` (what `imagerank serve` runs) on a free loopback port, until exit.

    `args` are more `serve` options (e.g. --allow-uploads), `env` more environment variables. The server
    inherits $IMAGERANK_CACHE, which conftest.py points at a per-session folder, so it reuses the ONNX
    export the test process already made.
    """
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "imagerank.server",
        "--index",
        str(index_dir),
        "--port",
        str(port),
        *args,
    ]
    env = {**os.environ, "IMAGERANK_HOST": "127.0.0.1", **(env or {})}
    with log.open("ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    served = Served(f"http://127.0.0.1:{port}", index_dir, images, process, log)
    try:
        _wait_until_healthy(served)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_healthy(served: Served) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            output = served.log.read_text()
            raise RuntimeError(f"the server exited with {served.process.returncode}:\n{output}")
        try:
            if httpx.get(f"{served.url}/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server did not answer within {STARTUP_TIMEOUT_S} s:\n{served.log.read_text()}")


@contextmanager
def sample_server(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    embedder: Embedder,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """A server over a fresh index of the sample, in a new temporary folder named after `name`."""
    directory = tmp_path_factory.mktemp(name)
    index_dir, images = build_sample_index(directory, embedder)
    with running_server(index_dir, images, directory / "server.log", args, env) as served:
        yield served
