"""`--store milvus://HOST:PORT/COLLECTION` against a real Milvus standalone server (the `milvus` wheel).

One server for the whole session (`milvus_server.MilvusProcess`: a free port, its own data folder, never left
running); each test uses its own collection. Covered: the store against FaissStore, `imagerank index` end to
end with incremental sync, label filters and reopening, a server reading while `imagerank index` writes
(two processes), and kill -9 of the Milvus server or of `imagerank index` in the middle of a run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import CliRunner, copy_sample
from milvus_server import MilvusProcess
from server_fixtures import running_server
from test_store_milvus import LABELS, _assert_same_ranking, _record, _records, _unit_vectors

from imagerank.store.faiss_store import FaissStore
from imagerank.store.milvus import open_milvus_store

pytest.importorskip("milvus", reason="the milvus wheel (a Milvus standalone server) is not installed")
pymilvus = pytest.importorskip("pymilvus")

DIM = 32
COUNT = 240
TIMEOUT_S = 20  # IMAGERANK_MILVUS_TIMEOUT for a run that sees Milvus die (a restarted one loads slower)
KILL_AFTER_ROWS = 12


@pytest.fixture(scope="session")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusProcess]:
    server = MilvusProcess(tmp_path_factory.mktemp("milvus-server"))
    server.start()
    yield server
    server.stop()


def stored_rows(server: MilvusProcess, collection: str) -> list[dict]:
    """Every row of a collection (id, path, digest), read with pymilvus alone."""
    client = pymilvus.MilvusClient(uri=f"http://127.0.0.1:{server.port}", timeout=30)
    try:
        if not client.has_collection(collection):
            return []
        client.load_collection(collection)
        return client.query(collection, filter="id >= 0", output_fields=["path", "digest"], limit=16384)
    finally:
        client.close()


def row_count(server: MilvusProcess, collection: str) -> int:
    try:
        return len(stored_rows(server, collection))
    except pymilvus.MilvusException:
        return 0


def assert_each_file_once(server: MilvusProcess, collection: str, folder: Path) -> None:
    """The collection holds every image of `folder` exactly once, with its current content."""
    from imagerank.embedding.decoding import file_digest

    rows = stored_rows(server, collection)
    files = {path.relative_to(folder).as_posix(): path for path in folder.rglob("*.jpg")}
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)), "a path is stored twice"
    assert len({row["id"] for row in rows}) == len(rows)
    assert set(paths) == set(files)
    for row in rows:
        assert row["digest"] == file_digest(files[row["path"]]), row["path"]


def test_the_store_on_a_server_matches_faiss_and_survives_reopening(
    milvus: MilvusProcess, tmp_path: Path
) -> None:
    location = milvus.location("store_vs_faiss")
    faiss_store = FaissStore(tmp_path, DIM)
    store = open_milvus_store(location, DIM)
    records, vectors = _records(COUNT), _unit_vectors(COUNT)
    try:
        for batch in (slice(0, 100), slice(100, 101), slice(101, COUNT)):
            assert store.upsert(records[batch], vectors[batch]) == faiss_store.upsert(
                records[batch], vectors[batch]
            )
        assert len(store) == COUNT
        assert store.all_records() == faiss_store.all_records()  # None labels come back as None
        assert store.labels() == faiss_store.labels() == {label: COUNT // len(LABELS) for label in LABELS}
        queries = np.vstack([vectors[::9], _unit_vectors(20, seed=1)])
        _assert_same_ranking(faiss_store.search(queries, k=10), store.search(queries, k=10))
        for labels in (["dog"], [LABELS[2]], ["cat", LABELS[2]]):
            found = store.search(queries, k=8, labels=labels)
            assert {r.label for r in store.records(np.unique(found[1][found[1] >= 0]).tolist())} == set(
                labels
            )
            _assert_same_ranking(faiss_store.search(queries, k=8, labels=labels), found)
        changed = [_record(f"{LABELS[2]}/img 2.jpg", "wolf", size=5), _record("new.jpg")]
        assert store.upsert(changed, vectors[:2]) == faiss_store.upsert(changed, vectors[:2])
        store.delete([1, 5])
        faiss_store.delete([1, 5])
        assert store.describe()["index_type"] == "AUTOINDEX"
    finally:
        store.close()
    reopened = open_milvus_store(location, DIM)
    try:
        assert reopened.all_records() == faiss_store.all_records()
        assert reopened.labels() == faiss_store.labels()
        _assert_same_ranking(faiss_store.search(vectors[:20], k=10), reopened.search(vectors[:20], k=10))
        more = [_record("after-reopen.jpg")]
        assert reopened.upsert(more, vectors[:1]) == faiss_store.upsert(more, vectors[:1])  # no id reused
    finally:
        reopened.close()
        faiss_store.close()


def test_index_sync_search_and_info_through_the_cli(
    milvus: MilvusProcess, cli: CliRunner, small_sample: Path, sample_dir: Path, tmp_path: Path
) -> None:
    index_dir, location = tmp_path / "index", milvus.location("cli_sync")
    first = cli("index", small_sample, "--index", index_dir, "--store", location, "-q")
    assert first.returncode == 0, first.stderr
    assert "12 indexed, 0 unchanged, 0 removed" in first.stderr and "Traceback" not in first.stderr
    before = {row["path"]: row["id"] for row in stored_rows(milvus, "cli_sync")}

    added = small_sample / "laptop" / "added.jpg"
    shutil.copy2(sample_dir / "pizza" / "image_0001.jpg", added)
    changed = small_sample / "dalmatian" / sorted(p.name for p in (small_sample / "dalmatian").iterdir())[0]
    shutil.copy2(sample_dir / "umbrella" / "image_0001.jpg", changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    deleted = next((small_sample / "strawberry").iterdir())
    deleted.unlink()
    second = cli("index", small_sample, "--index", index_dir, "-q")
    assert second.returncode == 0, second.stderr
    assert "2 indexed, 10 unchanged, 1 removed" in second.stderr
    assert_each_file_once(milvus, "cli_sync", small_sample)
    after = {row["path"]: row["id"] for row in stored_rows(milvus, "cli_sync")}
    changed_path = changed.relative_to(small_sample).as_posix()
    assert after[changed_path] == before[changed_path]  # a changed file keeps its id
    assert deleted.relative_to(small_sample).as_posix() not in after

    found = cli("search", added, "--index", index_dir, "--json", "-k", "3")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"][0]["path"] == "laptop/added.jpg"
    filtered = cli("search", added, "--index", index_dir, "--json", "-k", "20", "--label", "strawberry")
    labels = {result["label"] for result in json.loads(filtered.stdout)["results"]}
    assert labels == {"strawberry"} and len(json.loads(filtered.stdout)["results"]) == 3
    info = json.loads(cli("info", "--index", index_dir, "--json").stdout)
    assert info["count"] == 12 and info["store"]["backend"] == "milvus"
    assert info["labels"] == {"dalmatian": 4, "laptop": 5, "strawberry": 3}


def test_a_server_reads_while_imagerank_index_writes(
    milvus: MilvusProcess, cli: CliRunner, sample_dir: Path, tmp_path: Path, imagerank_script: Path
) -> None:
    """`imagerank serve` and `imagerank index` on one Milvus collection, in two processes."""
    photos = copy_sample(sample_dir, tmp_path / "photos", labels=("pizza",), per_label=8)
    index_dir = tmp_path / "index"
    first = cli("index", photos, "--index", index_dir, "--store", milvus.location("two_processes"), "-q")
    assert first.returncode == 0, first.stderr
    for label in ("dalmatian", "laptop", "strawberry", "umbrella", "llama"):
        copy_sample(sample_dir, photos, labels=(label,), per_label=8)
    counts: list[int] = []
    errors: list[str] = []
    with running_server(index_dir, photos, tmp_path / "server.log") as served:
        writer = subprocess.Popen(
            [
                str(imagerank_script),
                "index",
                str(photos),
                "--index",
                str(index_dir),
                "-q",
                "--batch-size",
                "4",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        query = (photos / "pizza" / "image_0001.jpg").read_bytes()
        with httpx.Client(base_url=served.url, timeout=60) as client:
            while writer.poll() is None or len(counts) < 3:
                health = client.get("/api/health")
                found = client.post(
                    "/api/search", files={"image": ("q.jpg", query, "image/jpeg")}, data={"k": 5}
                )
                if health.status_code != 200 or found.status_code != 200:
                    errors.append(f"{health.status_code} {found.status_code} {found.text[:200]}")
                else:
                    counts.append(health.json()["count"])
                    assert found.json()["results"][0]["path"] == "pizza/image_0001.jpg"
            _, stderr = writer.communicate(timeout=300)
            assert writer.returncode == 0, stderr
            final = client.get("/api/health").json()["count"]
            labels = {entry["label"] for entry in client.get("/api/stats").json()["labels"]}
    assert not errors, errors
    assert counts == sorted(counts) and counts[0] >= 8  # the reader only ever sees the count grow
    assert len(set(counts)) > 1, "the reader never saw the writer's progress"
    assert final == 48 and labels == {"pizza", "dalmatian", "laptop", "strawberry", "umbrella", "llama"}


def start_index(
    script: Path, folder: Path, index_dir: Path, location: str | None, timeout_s: float = 60
) -> subprocess.Popen:
    store = ["--store", location] if location else []
    return subprocess.Popen(
        [str(script), "index", str(folder), "--index", str(index_dir), *store, "-q", "--batch-size", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "IMAGERANK_MILVUS_TIMEOUT": str(timeout_s)},
    )


def wait_for_rows(server: MilvusProcess, collection: str, process: subprocess.Popen, rows: int) -> None:
    """Poll (with one client, count(*) only, to be quick) until the collection holds `rows` rows."""
    client = pymilvus.MilvusClient(uri=f"http://127.0.0.1:{server.port}", timeout=30)
    deadline = time.monotonic() + 300
    try:
        while True:
            assert process.poll() is None, (
                f"the run ended before it could be interrupted: {process.stderr.read()}"
            )
            assert time.monotonic() < deadline
            try:
                counted = client.query(collection, filter="", output_fields=["count(*)"])
            except pymilvus.MilvusException:  # not created or not loaded yet
                counted = [{"count(*)": 0}]
            if counted[0]["count(*)"] >= rows:
                return
            time.sleep(0.05)
    finally:
        client.close()


def test_kill_9_of_the_milvus_server_mid_index(
    milvus: MilvusProcess, sample_dir: Path, tmp_path: Path, imagerank_script: Path
) -> None:
    photos = copy_sample(
        sample_dir, tmp_path / "photos", labels=tuple(sorted(os.listdir(sample_dir))), per_label=8
    )
    index_dir, collection = tmp_path / "index", "milvus_killed"
    run = start_index(imagerank_script, photos, index_dir, milvus.location(collection), TIMEOUT_S)
    try:
        wait_for_rows(milvus, collection, run, KILL_AFTER_ROWS)
        milvus.kill()
        _, stderr = run.communicate(timeout=240)
    finally:
        run.kill()
        if milvus.pid is None:
            milvus.start()
    assert run.returncode == 1, stderr
    assert f"error: {milvus.location(collection)}: Milvus did not answer" in stderr
    assert "resumes where it stopped" in stderr and "Traceback" not in stderr

    resumed = start_index(imagerank_script, photos, index_dir, None)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    unchanged = int(stderr.split(" unchanged")[0].rsplit(", ", 1)[-1])
    assert unchanged >= KILL_AFTER_ROWS  # what was stored before the kill is not embedded again
    assert_each_file_once(milvus, collection, photos)


def test_kill_9_of_imagerank_index_while_milvus_runs(
    milvus: MilvusProcess, sample_dir: Path, tmp_path: Path, imagerank_script: Path
) -> None:
    photos = copy_sample(
        sample_dir, tmp_path / "photos", labels=tuple(sorted(os.listdir(sample_dir))), per_label=8
    )
    index_dir, collection = tmp_path / "index", "index_killed"
    run = start_index(imagerank_script, photos, index_dir, milvus.location(collection))
    try:
        wait_for_rows(milvus, collection, run, KILL_AFTER_ROWS)
    finally:
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=60)
    time.sleep(1)  # a request the killed run had sent is answered (or not) by now
    stored = row_count(milvus, collection)
    assert KILL_AFTER_ROWS <= stored < 80

    resumed = start_index(imagerank_script, photos, index_dir, None)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert f"{80 - stored} indexed, {stored} unchanged, 0 removed" in stderr
    assert_each_file_once(milvus, collection, photos)


def test_no_milvus_server_outlives_a_killed_test_process(milvus: MilvusProcess, tmp_path: Path) -> None:
    """The fixture's guarantee: kill -9 the Python process that started a server, and the server goes too.

    The wheel's server always takes port 2380 (its embedded etcd's peer port), so only one runs on a machine
    at a time: the session's server pauses meanwhile.
    """
    script = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from milvus_server import MilvusProcess; "
        "server = MilvusProcess(sys.argv[2]); server.start(); print(server.pid, flush=True); time.sleep(600)"
    )
    tests = str(Path(__file__).parent)
    milvus.stop()
    try:
        owner = subprocess.Popen(
            [sys.executable, "-c", script, tests, str(tmp_path / "milvus")], stdout=subprocess.PIPE, text=True
        )
        try:
            server_pid = int(owner.stdout.readline())
            assert _running(server_pid)
        finally:
            owner.send_signal(signal.SIGKILL)
            owner.wait()
        deadline = time.monotonic() + 20
        while _running(server_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        milvus.start()
    assert not _running(server_pid), f"milvus run standalone (pid {server_pid}) outlived its owner"


def _running(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) `milvus run standalone` process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and b"standalone" in command
