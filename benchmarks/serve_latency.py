"""HTTP search latency of `imagerank serve`: p50/p99 and requests/s, by upload and by id, 1/4/8 clients.

Usage:
    python benchmarks/serve_latency.py [--vectors 10000] [--by-id-requests 200] [--upload-requests 60]

Builds a temporary index of the shipped sample (80 real images, mobilenet_v2, 1280-d) padded with random
unit vectors (label "synthetic", no files) to --vectors in all, starts the real server on a loopback port
in a subprocess, and drives it with threads each holding one keep-alive httpx connection.

The baseline is the same search called in-process through the library (no HTTP), measured in the same
run; "x library" is the HTTP p50 over that baseline. GET /api/health gives the floor: the HTTP and client
cost of a request that does no work. Clients and server share the machine's cores, so with many clients
the client threads take CPU from the server: numbers are an upper bound on what a remote client would
see. Each configuration stops after its request count or --seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from imagerank import Index
from imagerank.embedding.embedder import l2_normalized
from imagerank.store.base import ImageRecord

SAMPLE = Path(__file__).resolve().parents[1] / "sample" / "caltech101"
QUERY = SAMPLE / "pizza" / "image_0001.jpg"
K = 10
TARGET_P50_MS = {"by id": 5.0, "by upload": 40.0}
console = Console(width=150)


def build_index(directory: Path, total: int) -> Index:
    """The sample's real vectors plus random unit vectors up to `total`, through the store's API."""
    images = directory / "images"
    shutil.copytree(SAMPLE, images)
    index = Index.create(directory / "bench.index")
    index.sync(images)
    rng = np.random.default_rng(0)
    padding = max(0, total - len(index))
    for start in range(0, padding, 2000):
        count = min(2000, padding - start)
        records = [
            ImageRecord(f"synthetic/{start + n:06d}.jpg", "synthetic", "", 0, 0, 1, 1) for n in range(count)
        ]
        index.store.upsert(records, l2_normalized(rng.standard_normal((count, index.store.dim))))
    index.store.flush()
    return index


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(index_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "imagerank.server", "--index", str(index_dir), "--port", str(port)]
    env = {**os.environ, "IMAGERANK_HOST": "127.0.0.1"}
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.25)
    process.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text()}")


def run_clients(
    request: Callable[[httpx.Client, int], httpx.Response], url: str, clients: int, total: int, seconds: float
) -> tuple[list[float], float, list[float]]:
    """Latencies (ms), wall seconds, and the server's own total_ms, for `total` requests over `clients`."""
    latencies: list[float] = []
    server_ms: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))
    deadline = time.monotonic() + seconds

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            request(client, 0)  # open the connection outside the measurement
            for number in counter:
                if time.monotonic() > deadline:
                    break
                started = time.perf_counter()
                response = request(client, number)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                timing = response.json().get("timing", {})
                with lock:
                    latencies.append(elapsed)
                    server_ms.append(timing.get("total_ms", float("nan")))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for future in [pool.submit(client_loop) for _ in range(clients)]:
            future.result()
    return latencies, time.perf_counter() - started, server_ms


def library_baseline(index: Index, ids: np.ndarray, query: Path, by_id_count: int, upload_count: int) -> dict:
    """p50 (ms) of the same searches called in-process, no HTTP, with the server's one FAISS thread."""
    faiss.omp_set_num_threads(1)

    def p50(function: Callable[[int], object], count: int) -> float:
        function(0)
        times = []
        for number in range(count):
            started = time.perf_counter()
            function(number)
            times.append((time.perf_counter() - started) * 1000)
        return float(np.percentile(times, 50))

    data = query.read_bytes()
    return {
        "by id": p50(
            lambda n: index.records(index.search_by_id(int(ids[n % len(ids)]), K)[1][0]), by_id_count
        ),
        "by upload": p50(lambda n: index.records(index.search(_decoded(data), K)[1][0]), upload_count),
    }


def _decoded(data: bytes):
    from imagerank.embedding.decoding import open_image

    return open_image(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=10_000, help="Vectors in the index (sample + random).")
    parser.add_argument("--by-id-requests", type=int, default=200, help="Requests per by-id configuration.")
    parser.add_argument("--upload-requests", type=int, default=60, help="Requests per upload configuration.")
    parser.add_argument("--clients", default="1,4,8", help="Comma-separated numbers of concurrent clients.")
    parser.add_argument("--seconds", type=float, default=30, help="Time cap per configuration.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="imagerank-bench-") as temporary:
        directory = Path(temporary)
        console.print(f"building an index of {args.vectors:,} vectors in {directory} ...")
        index = build_index(directory, args.vectors)
        total = len(index)
        synthetic = index.store.labels().get("synthetic", 0)
        content = f"{total - synthetic} sample images + {synthetic:,} random unit vectors"
        ids = np.array([record.id for record in index.store.all_records() if record.label != "synthetic"])
        baseline = library_baseline(index, ids, QUERY, args.by_id_requests, args.upload_requests)
        index.close()
        process, url = start_server(directory / "bench.index", directory / "server.log")
        try:
            rows = measure_all(url, ids, args, baseline)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print_table(rows, f"Search over HTTP, {total:,} vectors ({content}), k={K}, {os.cpu_count()} CPUs")


def measure_all(url: str, ids: np.ndarray, args: argparse.Namespace, baseline: dict) -> list[dict]:
    data = QUERY.read_bytes()

    def by_id(client: httpx.Client, number: int) -> httpx.Response:
        return client.post("/api/search", json={"id": int(ids[number % len(ids)]), "k": K})

    def by_upload(client: httpx.Client, number: int) -> httpx.Response:
        return client.post("/api/search", files={"image": ("q.jpg", data, "image/jpeg")}, data={"k": str(K)})

    def health(client: httpx.Client, number: int) -> httpx.Response:
        return client.get("/api/health")

    latencies, wall, _ = run_clients(health, url, 1, args.by_id_requests, args.seconds)
    rows = [
        {
            "mode": "GET /api/health",
            "clients": "1",
            "n": len(latencies),
            "p50": float(np.percentile(latencies, 50)),
            "p99": float(np.percentile(latencies, 99)),
            "rps": len(latencies) / wall,
            "server": None,
            "ratio": None,
        }
    ]
    for mode, request, count in (
        ("by id", by_id, args.by_id_requests),
        ("by upload", by_upload, args.upload_requests),
    ):
        rows.append(
            {
                "mode": mode,
                "clients": "library",
                "n": count,
                "p50": baseline[mode],
                "p99": None,
                "rps": None,
                "server": None,
                "ratio": 1.0,
            }
        )
        for clients in (int(part) for part in args.clients.split(",")):
            latencies, wall, server_ms = run_clients(request, url, clients, count, args.seconds)
            p50 = float(np.percentile(latencies, 50))
            rows.append(
                {
                    "mode": mode,
                    "clients": str(clients),
                    "n": len(latencies),
                    "p50": p50,
                    "p99": float(np.percentile(latencies, 99)),
                    "rps": len(latencies) / wall,
                    "server": float(np.percentile(server_ms, 50)),
                    "ratio": p50 / baseline[mode],
                }
            )
    return rows


def print_table(rows: list[dict], title: str) -> None:
    table = Table(title=title)
    for column in (
        "search",
        "clients",
        "requests",
        "p50 ms",
        "p99 ms",
        "req/s",
        "server p50 ms",
        "x library",
        "target p50",
    ):
        table.add_column(column, justify="left" if column in ("search", "target p50") else "right")

    def number(value: float | None, digits: int = 1) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for row in rows:
        target = TARGET_P50_MS.get(row["mode"])
        measured = target is not None and row["clients"] != "library"
        verdict = f"< {target:g} ms: {'yes' if row['p50'] < target else 'NO'}" if measured else ""
        table.add_row(
            row["mode"],
            row["clients"],
            str(row["n"]),
            number(row["p50"], 2),
            number(row["p99"], 2),
            number(row["rps"]),
            number(row["server"], 2),
            number(row["ratio"], 2),
            verdict,
        )
    console.print(table)


if __name__ == "__main__":
    main()
