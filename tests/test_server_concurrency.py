"""Eight clients search while images are being added: no errors, and no reader ever sees half a change.

Images are added two per request; the store makes each request one transaction, so a search filtered to
the added label must always see an even number of them. Every answer is also checked for internal
consistency (ranks, scores, ids) and against every other answer (an id always names the same file).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from corpus import encode
from PIL import Image
from server_fixtures import SAMPLE_LABELS, SAMPLE_PER_LABEL, Served, sample_server

from imagerank import Embedder

CLIENTS = 8
ADD_REQUESTS = 6
IMAGES_PER_ADD = 2
MIN_SEARCHES_PER_CLIENT = 8
ADDED_LABEL = "added"
K = 10


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder) -> Iterator[Served]:
    with sample_server(tmp_path_factory, "concurrency", mobilenet, ["--allow-uploads"]) as running:
        yield running


def new_images(seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [
        encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")
        for _ in range(IMAGES_PER_ADD)
    ]


def check_consistent(body: dict, k: int) -> list[dict]:
    """The results of one answer, after checking it is a whole, well-formed ranking."""
    results = body["results"]
    assert [result["rank"] for result in results] == list(range(1, len(results) + 1))
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True)
    assert len({result["id"] for result in results}) == len(results)
    assert len(results) <= k
    for result in results:
        assert result["label"] == result["path"].removeprefix("uploads://").split("/")[0]
    return results


def test_searches_while_adding(served: Served) -> None:
    query_bytes = (served.images / "pizza/image_0001.jpg").read_bytes()
    with httpx.Client(base_url=served.url, timeout=60) as client:
        sample_ids = [r["id"] for r in client.post("/api/search", json={"id": 1, "k": 100}).json()["results"]]
    assert len(sample_ids) == SAMPLE_LABELS * SAMPLE_PER_LABEL - 1

    adding_done = threading.Event()
    paths_by_id: dict[int, str] = {}
    lock = threading.Lock()
    added_counts_seen: list[int] = []
    added_ids_so_far: list[int] = []

    def remember(results: list[dict]) -> None:
        with lock:
            for result in results:
                assert paths_by_id.setdefault(result["id"], result["path"]) == result["path"]

    def searcher(number: int) -> int:
        searches = 0
        rng = np.random.default_rng(number)
        with httpx.Client(base_url=served.url, timeout=60) as client:
            while not adding_done.is_set() or searches < MIN_SEARCHES_PER_CLIENT:
                kind = searches % 4
                if kind == 0:
                    response = client.post(
                        "/api/search",
                        files={"image": ("q.jpg", query_bytes, "image/jpeg")},
                        data={"k": str(K)},
                    )
                elif kind == 1:
                    adds_before = len(added_ids_so_far)
                    response = client.post("/api/search", json={"id": 1, "k": 100, "labels": [ADDED_LABEL]})
                    if response.status_code == 422:  # no image has the label yet: nothing added so far
                        assert f"no indexed image has the label {ADDED_LABEL!r}" in response.text
                        assert adds_before == 0, "an added label was unknown after its add returned"
                        with lock:
                            added_counts_seen.append(0)
                        searches += 1
                        continue
                else:
                    image_id = int(rng.choice(sample_ids))
                    response = client.post("/api/search", json={"id": image_id, "k": K})
                assert response.status_code == 200, response.text
                results = check_consistent(response.json(), 100 if kind == 1 else K)
                if kind == 1:
                    with lock:
                        added_counts_seen.append(len(results))
                remember(results)
                searches += 1
        return searches

    def adder() -> list[int]:
        ids = []
        try:
            with httpx.Client(base_url=served.url, timeout=120) as client:
                for batch in range(ADD_REQUESTS):
                    files = [
                        ("images", (f"new{n}.png", data, "image/png"))
                        for n, data in enumerate(new_images(batch))
                    ]
                    response = client.post("/api/images", files=files, data={"label": ADDED_LABEL})
                    assert response.status_code == 201, response.text
                    ids += [added["id"] for added in response.json()["added"]]
                    added_ids_so_far[:] = ids
        finally:
            adding_done.set()
        return ids

    with ThreadPoolExecutor(max_workers=CLIENTS + 1) as pool:
        searches = [pool.submit(searcher, number) for number in range(CLIENTS)]
        added = pool.submit(adder)
        added_ids = added.result(timeout=300)
        total_searches = sum(future.result(timeout=300) for future in searches)

    assert total_searches >= CLIENTS * MIN_SEARCHES_PER_CLIENT
    assert len(set(added_ids)) == ADD_REQUESTS * IMAGES_PER_ADD
    assert all(count % IMAGES_PER_ADD == 0 for count in added_counts_seen), added_counts_seen
    with httpx.Client(base_url=served.url, timeout=60) as client:
        stats = client.get("/api/stats").json()
        assert stats["count"] == SAMPLE_LABELS * SAMPLE_PER_LABEL + len(added_ids)
        assert {e["label"]: e["count"] for e in stats["labels"]}[ADDED_LABEL] == len(added_ids)
        final = client.post("/api/search", json={"id": 1, "k": 100, "labels": [ADDED_LABEL]}).json()
        assert {result["id"] for result in final["results"]} == set(added_ids)
