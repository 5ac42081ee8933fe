"""kill -9 of `imagerank serve` in the middle of a batch of uploads, then a restart.

After the restart the uploads folder holds no partial file, every upload is either fully indexed (its file
and its record, found first when searched by its own bytes) or absent (neither), and every upload the
server acknowledged (201) is there.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from corpus import encode
from PIL import Image
from server_fixtures import build_sample_index, running_server

from imagerank import Embedder, Index
from imagerank.index.files import UPLOADS_PREFIX

CLIENTS = 4
IMAGES_PER_REQUEST = 4
ACKNOWLEDGED_BEFORE_KILL = 6
LABEL = "batch"


def random_png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG")


def upload_until_refused(
    url: str, client_number: int, acknowledged: list[str], stop: threading.Event
) -> None:
    """Post batches of new images until the server stops answering; note the paths of those it accepted."""
    with httpx.Client(base_url=url, timeout=60) as client:
        for request in range(1000):
            seed = client_number * 100_000 + request * IMAGES_PER_REQUEST
            files = [
                ("images", (f"c{client_number} r{request} n{n}.png", random_png(seed + n), "image/png"))
                for n in range(IMAGES_PER_REQUEST)
            ]
            try:
                response = client.post("/api/images", files=files, data={"label": LABEL})
            except httpx.TransportError:
                return
            assert response.status_code == 201, response.text
            acknowledged.extend(added["path"] for added in response.json()["added"])
            if stop.is_set():
                return


def upload_files(uploads: Path) -> set[str]:
    """Record paths of the image files in the uploads folder (hidden folders left out)."""
    return {
        UPLOADS_PREFIX + path.relative_to(uploads).as_posix()
        for path in uploads.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(uploads).parts)
    }


def test_kill_9_mid_upload_batch_leaves_every_upload_whole_or_absent(
    tmp_path: Path, mobilenet: Embedder
) -> None:
    index_dir, images = build_sample_index(tmp_path, mobilenet)
    uploads = index_dir / "uploads"
    acknowledged: list[str] = []
    stop = threading.Event()
    log = tmp_path / "server.log"
    with (
        running_server(index_dir, images, log, ["--allow-uploads"]) as served,
        ThreadPoolExecutor(CLIENTS) as pool,
    ):
        clients = [
            pool.submit(upload_until_refused, served.url, n, acknowledged, stop) for n in range(CLIENTS)
        ]
        deadline = time.monotonic() + 300
        while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL * IMAGES_PER_REQUEST:
            assert time.monotonic() < deadline and not any(c.done() for c in clients)
            time.sleep(0.05)
        served.process.send_signal(signal.SIGKILL)  # requests are in flight on every client
        served.process.wait()
        stop.set()
        for finished in clients:
            finished.result(timeout=120)

    # What a kill at another instant leaves: a half-written file, a saved file never indexed.
    (uploads / ".incoming").mkdir(exist_ok=True)
    (uploads / ".incoming" / "half.partial").write_bytes(random_png(7)[:100])
    never_indexed = uploads / LABEL / f"never-{'0' * 16}.png"
    never_indexed.write_bytes(random_png(8))
    users_file = uploads / "notes.txt"  # not named as uploads are: never touched
    users_file.write_text("mine")

    with running_server(index_dir, images, tmp_path / "server.log", ["--allow-uploads"]):
        assert not list(uploads.rglob("*.partial"))
        assert not never_indexed.exists() and users_file.read_text() == "mine"
        users_file.unlink()
        with Index.open(index_dir, embedder=mobilenet) as index:
            records = [r for r in index.store.all_records() if r.path.startswith(UPLOADS_PREFIX)]
            stored = index.store.vectors([r.id for r in records])
        on_disk = upload_files(uploads)
        assert on_disk == {r.path for r in records}  # every file indexed, every record's file there
        assert set(acknowledged) <= on_disk
        assert len(records) >= ACKNOWLEDGED_BEFORE_KILL * IMAGES_PER_REQUEST
        # Fully indexed: each record holds the vector of its own file.
        embedded = mobilenet.encode([uploads / r.path.removeprefix(UPLOADS_PREFIX) for r in records])
        assert np.min(np.sum(embedded * stored, axis=1)) > 0.999
