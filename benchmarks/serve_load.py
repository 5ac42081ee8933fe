"""A bounded load test of `imagerank serve` with uploads on: 8 clients, 20,000 mixed requests, over loopback.

Usage:
    python benchmarks/serve_load.py [--requests 20000] [--clients 8]

Builds a temporary index of the shipped sample (80 images, mobilenet_v2), starts the real server in a
subprocess on 127.0.0.1 with `--allow-uploads` and an API key, and sends a fixed, seeded mix of requests
from client threads that each hold one keep-alive connection:

    search by upload 10%, search by id 40%, thumbnail 45%, upload (authorised, one new image) 5%

It prints p50/p99 per kind of request, the count of 5xx answers (must be 0), the server's resident memory
at request 5,000 and at the end (growth must stay under 50 MB), and checks that every upload the server
accepted is indexed exactly once (one record per upload, under the uploads folder, none twice). Exits 1
when a check fails. Loopback only; nothing else is reached.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from imagerank import Index
from imagerank.index.files import UPLOADS_PREFIX

SAMPLE = Path(__file__).resolve().parents[1] / "sample" / "caltech101"
KEY = "load-test-key"
MIX = {"search by upload": 0.10, "search by id": 0.40, "thumbnail": 0.45, "upload": 0.05}
MEMORY_AT = 5_000
MAX_GROWTH_MB = 50
console = Console(width=140)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def start_server(index_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable, "-m", "imagerank.server", "--index", str(index_dir), "--port", str(port),
        "--allow-uploads",
    ]  # fmt: skip
    env = {**os.environ, "IMAGERANK_HOST": "127.0.0.1", "IMAGERANK_API_KEY": KEY}
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(log.read_text())
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("the server did not start")


def plan(total: int) -> list[tuple[str, int]]:
    """The seeded sequence of (kind, argument) requests."""
    rng = np.random.default_rng(0)
    kinds = rng.choice(list(MIX), size=total, p=list(MIX.values()))
    return [(str(kind), int(rng.integers(1, 81)) if kind != "upload" else n) for n, kind in enumerate(kinds)]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="imagerank-serve-load-"))
    process = None
    try:
        shutil.copytree(SAMPLE, workdir / "images")
        with Index.create(workdir / "load.index") as index:
            index.sync(workdir / "images")
        query = (SAMPLE / "pizza" / "image_0001.jpg").read_bytes()
        process, url = start_server(workdir / "load.index", workdir / "server.log")
        requests = plan(args.requests)
        latencies: dict[str, list[float]] = defaultdict(list)
        statuses: Counter[tuple[str, int]] = Counter()
        uploaded: list[str] = []
        done = 0
        memory: dict[str, float] = {"start": rss_mb(process.pid)}
        memory_at = min(MEMORY_AT, len(requests) // 4)
        lock = threading.Lock()
        position = iter(range(len(requests)))

        def client() -> None:
            nonlocal done
            with httpx.Client(base_url=url, timeout=120) as http:
                while True:
                    with lock:
                        number = next(position, None)
                    if number is None:
                        return
                    kind, argument = requests[number]
                    started = time.perf_counter()
                    if kind == "search by upload":
                        files = {"image": ("q.jpg", query, "image/jpeg")}
                        response = http.post("/api/search", files=files, data={"k": 10})
                    elif kind == "search by id":
                        response = http.post("/api/search", json={"id": argument, "k": 10})
                    elif kind == "thumbnail":
                        response = http.get(f"/api/images/{argument}/thumbnail")
                    else:
                        files = {"images": (f"load {argument}.png", png(argument), "image/png")}
                        response = http.post(
                            "/api/images", files=files, headers={"Authorization": f"Bearer {KEY}"}
                        )
                    elapsed = (time.perf_counter() - started) * 1000
                    with lock:
                        latencies[kind].append(elapsed)
                        statuses[(kind, response.status_code)] += 1
                        if kind == "upload" and response.status_code == 201:
                            uploaded.extend(added["path"] for added in response.json()["added"])
                        done += 1
                        if done == memory_at:
                            memory["warm"] = rss_mb(process.pid)

        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            for future in [pool.submit(client) for _ in range(args.clients)]:
                future.result()
        wall = time.perf_counter() - started
        memory["end"] = rss_mb(process.pid)
        process.terminate()
        process.wait(timeout=30)
        process = None

        with Index.open(workdir / "load.index") as index:
            upload_records = [r.path for r in index.store.all_records() if r.path.startswith(UPLOADS_PREFIX)]
        return report(latencies, statuses, memory, uploaded, upload_records, wall, args)
    finally:
        if process is not None:
            process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def report(
    latencies: dict[str, list[float]],
    statuses: Counter,
    memory: dict[str, float],
    uploaded: list[str],
    upload_records: list[str],
    wall: float,
    args: argparse.Namespace,
) -> int:
    table = Table(title=f"{sum(statuses.values()):,} requests, {args.clients} clients, {wall:.0f} s")
    for column in ("request", "count", "statuses", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("request", "statuses") else "right")
    for kind in MIX:
        values = np.array(latencies[kind])
        codes = ", ".join(f"{code}: {n}" for (k, code), n in sorted(statuses.items()) if k == kind)
        table.add_row(
            kind,
            str(len(values)),
            codes,
            f"{np.percentile(values, 50):.1f}",
            f"{np.percentile(values, 99):.1f}",
        )
    console.print(table)
    server_errors = sum(n for (_, code), n in statuses.items() if code >= 500)
    growth = memory["end"] - memory["warm"]
    exactly_once = sorted(uploaded) == sorted(upload_records) and len(set(upload_records)) == len(
        upload_records
    )
    checks = [
        ("5xx responses", str(server_errors), server_errors == 0),
        (
            "server RSS start / at request 5,000 / end (MB)",
            f"{memory['start']:.0f} / {memory['warm']:.0f} / {memory['end']:.0f}",
            True,
        ),
        (f"RSS growth 5,000 -> end < {MAX_GROWTH_MB} MB", f"{growth:+.1f} MB", growth < MAX_GROWTH_MB),
        (
            "uploads accepted / indexed (each once)",
            f"{len(uploaded)} / {len(upload_records)}",
            exactly_once,
        ),
    ]
    summary = Table(title="checks")
    for column in ("check", "value", "ok"):
        summary.add_column(column)
    for name, value, ok in checks:
        summary.add_row(name, value, "yes" if ok else "NO")
    console.print(summary)
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
