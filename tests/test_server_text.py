"""Search by words over HTTP (`POST /api/search` with a JSON `text`), on a tiny random open_clip index.

The results must be the library's own text search (`Index.search_text`), paged and filtered like the other
searches, behind the same read protection; bad texts get a 422 that says what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import copy_sample
from server_fixtures import Served, running_server
from tiny_clip import index_with_tiny_clip, write_tiny_clip

from imagerank import Index

pytest.importorskip("open_clip")

LABELS = ("dalmatian", "laptop", "pizza", "starfish")
KEY = "text-search-key-0123456789"


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("server-text")
    tiny = write_tiny_clip(root)
    photos = copy_sample(sample_dir, root / "photos", labels=LABELS, per_label=4)
    return index_with_tiny_clip(tiny, photos, root / "clip.index"), photos


@pytest.fixture(scope="module")
def served(tiny_index: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    index_dir, photos = tiny_index
    log = tmp_path_factory.mktemp("server-text-log") / "server.log"
    with running_server(index_dir, photos, log) as running:
        yield running


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=60) as http:
        yield http


def expected_ids(
    index_dir: Path, text: str, k: int, labels: list[str] | None = None, **feedback: list[int]
) -> list[int]:
    with Index.open(index_dir) as index:
        _, ids = index.search_text(text, k, labels=labels, **feedback)
    return [int(image_id) for image_id in ids[0] if image_id >= 0]


def test_search_by_words_returns_the_text_rankers_order(client: httpx.Client, served: Served) -> None:
    response = client.post("/api/search", json={"text": "  a dog   on a sofa ", "k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == {"kind": "text", "id": None, "filename": None, "text": "a dog on a sofa"}
    assert body["method"] == "text" and body["note"] is None and (body["k"], body["offset"]) == (5, 0)
    results = body["results"]
    assert [result["id"] for result in results] == expected_ids(served.index_dir, "a dog on a sofa", 5)
    assert [result["rank"] for result in results] == [1, 2, 3, 4, 5] and body["has_more"]
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True)
    first = results[0]
    assert first["image_url"] == f"/api/images/{first['id']}" and first["label"] in LABELS
    assert client.get(first["thumbnail_url"]).status_code == 200


def test_search_by_words_pages_and_filters_like_the_other_searches(
    client: httpx.Client, served: Served
) -> None:
    everything = expected_ids(served.index_dir, "a slice of pizza", 16)
    pages = [
        client.post("/api/search", json={"text": "a slice of pizza", "k": 6, "offset": offset}).json()
        for offset in (0, 6, 12)
    ]
    assert [result["id"] for page in pages for result in page["results"]] == everything
    assert [page["has_more"] for page in pages] == [True, True, False]
    assert pages[1]["results"][0]["rank"] == 7
    filtered = client.post("/api/search", json={"text": "a laptop", "labels": ["laptop", "starfish"]}).json()
    assert {result["label"] for result in filtered["results"]} == {"laptop", "starfish"}
    ids = [result["id"] for result in filtered["results"]]
    assert ids == expected_ids(served.index_dir, "a laptop", 12, labels=["laptop", "starfish"])
    unknown = client.post("/api/search", json={"text": "a laptop", "labels": ["cat"]})
    assert unknown.status_code == 422 and "'cat'" in unknown.json()["detail"]


def test_feedback_refines_a_search_by_words_as_the_library_does(client: httpx.Client, served: Served) -> None:
    first = [
        result["id"]
        for result in client.post("/api/search", json={"text": "a dog", "k": 6}).json()["results"]
    ]
    feedback = {"relevant": first[3:4], "not_relevant": first[:2]}

    refined = client.post("/api/search", json={"text": "a dog", "k": 6, **feedback})

    assert refined.status_code == 200, refined.text
    ids = [result["id"] for result in refined.json()["results"]]
    assert ids == expected_ids(served.index_dir, "a dog", 6, **feedback)
    assert ids != first and not set(ids) & set(first[:2])
    unknown = client.post("/api/search", json={"text": "a dog", "not_relevant": [123456]})
    assert unknown.status_code == 404 and "123456" in unknown.json()["detail"]
    twice = client.post(
        "/api/search", json={"text": "a dog", "relevant": first[:1], "not_relevant": first[:1]}
    )
    assert twice.status_code == 422 and "both relevant and not relevant" in twice.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": ""}, "text: Value error, the text query is empty"),
        ({"text": " \n\t "}, "text: Value error, the text query is empty"),
        ({"text": "x" * 10_000}, "the text query has 10000 characters; at most 1000 are accepted"),
        ({"text": 42}, "text: Input should be a valid string"),
        ({"text": "a dog", "id": 3}, "id: Extra inputs are not permitted"),
        ({"text": "a dog", "method": "cosine"}, "method: Extra inputs are not permitted"),
        ({"text": "a dog", "k": 0}, "k: Input should be greater than or equal to 1"),
    ],
)
def test_bad_text_searches_are_422_saying_why(client: httpx.Client, body: dict, message: str) -> None:
    response = client.post("/api/search", json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_the_other_searches_still_work_beside_it(client: httpx.Client, served: Served) -> None:
    by_id = client.post("/api/search", json={"id": 3, "k": 4, "method": "cosine"})
    assert by_id.status_code == 200 and by_id.json()["query"]["kind"] == "id"
    assert 3 not in [result["id"] for result in by_id.json()["results"]]
    photo = served.images / "pizza" / "image_0001.jpg"
    upload = client.post(
        "/api/search", files={"image": ("q.jpg", photo.read_bytes(), "image/jpeg")}, data={"k": 1}
    )
    assert upload.status_code == 200 and upload.json()["results"][0]["path"] == "pizza/image_0001.jpg"


def test_the_openapi_schema_documents_both_json_bodies(client: httpx.Client) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/search"]["post"]
    bodies = operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert [sorted(body["required"]) for body in bodies] == [["id"], ["text"]]
    assert {"text", "k", "offset", "labels", "relevant", "not_relevant"} == set(bodies[1]["properties"])
    assert "`text`" in operation["description"]


def test_protected_reads_protect_the_search_by_words(tiny_index: tuple[Path, Path], tmp_path: Path) -> None:
    index_dir, photos = tiny_index
    env = {"IMAGERANK_API_KEY": KEY}
    with running_server(index_dir, photos, tmp_path / "server.log", ["--protect-reads"], env) as guarded:
        url, body = f"{guarded.url}/api/search", {"text": "a dog", "k": 2}
        assert httpx.post(url, json=body).status_code == 401
        assert httpx.post(url, json=body, headers={"Authorization": "Bearer nope"}).status_code == 403
        found = httpx.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        assert found.status_code == 200 and len(found.json()["results"]) == 2
