"""The HTTP API, end to end: a real uvicorn server on the sample index, called over loopback with httpx."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from corpus import crafted_png, encode, write_bad_corpus
from PIL import Image
from server_fixtures import SAMPLE_LABELS, SAMPLE_PER_LABEL, Served, sample_server

from imagerank import Embedder

QUERY = "pizza/image_0001.jpg"
MB = 2**20


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder) -> Iterator[Served]:
    with sample_server(tmp_path_factory, "api", mobilenet, ["--allow-uploads"]) as running:
        yield running


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=60) as http:
        yield http


def upload(client: httpx.Client, data: bytes, name: str = "query.jpg", **fields: object) -> httpx.Response:
    return client.post("/api/search", files={"image": (name, data, "image/jpeg")}, data=fields)


def id_of(client: httpx.Client, served: Served, path: str) -> int:
    """The id of an indexed sample file, found by uploading it (it is its own best match)."""
    best = upload(client, (served.images / path).read_bytes(), k=1).json()["results"][0]
    assert best["path"] == path
    return best["id"]


def test_health_and_stats_describe_the_index(client: httpx.Client) -> None:
    assert client.get("/api/health").json() == {"status": "ok", "count": SAMPLE_LABELS * SAMPLE_PER_LABEL}
    stats = client.get("/api/stats").json()
    assert stats["model"] == "mobilenet_v2"
    assert stats["dim"] == 1280
    assert stats["max_upload_bytes"] == 20 * MB
    assert {entry["label"]: entry["count"] for entry in stats["labels"]} == {
        label.name: SAMPLE_PER_LABEL
        for label in (Path(__file__).parents[1] / "sample" / "caltech101").iterdir()
    }


def test_search_by_upload_finds_the_image_then_its_label(client: httpx.Client, served: Served) -> None:
    response = upload(client, (served.images / QUERY).read_bytes(), k=5, method="cosine")
    assert response.status_code == 200
    body = response.json()
    results = body["results"]
    assert [result["rank"] for result in results] == [1, 2, 3, 4, 5]
    assert results[0]["path"] == QUERY and results[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [result["label"] for result in results] == ["pizza"] * 5
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True)
    assert body["query"] == {"kind": "upload", "id": None, "filename": "query.jpg", "text": None}
    assert body["timing"]["embed_ms"] > 0 and body["timing"]["total_ms"] >= body["timing"]["embed_ms"]
    assert body["has_more"] is True


def test_search_by_id_leaves_the_query_out_and_pages_consistently(
    client: httpx.Client, served: Served
) -> None:
    query_id = id_of(client, served, QUERY)
    whole = client.post("/api/search", json={"id": query_id, "k": 10}).json()["results"]
    first = client.post("/api/search", json={"id": query_id, "k": 5}).json()
    second = client.post("/api/search", json={"id": query_id, "k": 5, "offset": 5}).json()
    assert query_id not in [result["id"] for result in whole]
    assert [r["id"] for r in first["results"] + second["results"]] == [r["id"] for r in whole]
    assert [r["rank"] for r in second["results"]] == [6, 7, 8, 9, 10]
    last = client.post("/api/search", json={"id": query_id, "k": 10, "offset": 75}).json()
    assert len(last["results"]) == SAMPLE_LABELS * SAMPLE_PER_LABEL - 1 - 75
    assert last["has_more"] is False


def test_label_filter_returns_only_that_label(client: httpx.Client, served: Served) -> None:
    query_id = id_of(client, served, QUERY)
    results = client.post("/api/search", json={"id": query_id, "k": 20, "labels": ["llama"]}).json()[
        "results"
    ]
    assert len(results) == SAMPLE_PER_LABEL
    assert {result["label"] for result in results} == {"llama"}
    unknown = client.post("/api/search", json={"id": query_id, "labels": ["no such label"]})
    assert unknown.status_code == 422  # an empty 200 would read as "nothing similar"
    assert "'no such label'" in unknown.json()["detail"] and "llama" in unknown.json()["detail"]


def test_not_relevant_results_are_dropped_and_relevant_ones_pull_the_ranking(
    client: httpx.Client, served: Served
) -> None:
    query = (served.images / QUERY).read_bytes()
    before = upload(client, query, k=20).json()["results"]
    dropped = before[1]["id"]
    llamas = [id_of(client, served, f"llama/image_000{n}.jpg") for n in (1, 2, 3)]
    after = client.post(
        "/api/search",
        files={"image": ("query.jpg", query, "image/jpeg")},
        data={"k": "20", "not_relevant": [str(dropped)], "relevant": [str(i) for i in llamas]},
    ).json()["results"]
    assert dropped not in [result["id"] for result in after]
    llamas_before = sum(result["label"] == "llama" for result in before)
    llamas_after = sum(result["label"] == "llama" for result in after)
    assert llamas_after > llamas_before


def test_images_are_served_from_the_index_only(client: httpx.Client, served: Served) -> None:
    image_id = id_of(client, served, QUERY)
    original = client.get(f"/api/images/{image_id}")
    assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
    assert original.content == (served.images / QUERY).read_bytes()
    for _attempt in range(2):  # made, then read back from the cache
        thumbnail = client.get(f"/api/images/{image_id}/thumbnail")
        assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(thumbnail.content)).size) <= 256
    assert len(list((served.index_dir / "thumbnails").glob(f"{image_id}-*.jpg"))) == 1
    for path in ("/api/images/..%2Fmanifest.json", "/api/images/%2e%2e/%2e%2e/etc/passwd", "/api/images/-1"):
        response = client.get(path)
        assert response.status_code in (404, 422), path
        assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/search", {"json": {"id": 987654}}),
        ("POST", "/api/search", {"json": {"id": 1, "relevant": [987654]}}),
        ("GET", "/api/images/987654", {}),
        ("GET", "/api/images/987654/thumbnail", {}),
    ],
)
def test_unknown_ids_are_404(client: httpx.Client, method: str, path: str, body: dict) -> None:
    response = client.request(method, path, **body)
    assert response.status_code == 404
    assert response.json() == {"detail": "no image with id 987654 in the index"}


def test_bad_image_files_are_415_or_422_with_the_reason(
    client: httpx.Client, served: Served, tmp_path: Path
) -> None:
    expected = write_bad_corpus(tmp_path / "bad")
    checked = 0
    for name, reason in expected.items():
        path = tmp_path / "bad" / name
        if reason is None or path.is_symlink() or reason == "permission denied":
            continue
        response = upload(client, path.read_bytes(), name=Path(name).name)
        assert response.status_code == (415 if reason in ("empty file", "not an image") else 422), name
        assert reason in response.json()["detail"], response.json()
        checked += 1
    assert checked == 5  # truncated jpg and png, empty, not an image, decompression bomb
    assert client.get("/api/health").status_code == 200


def test_decompression_bomb_is_422(client: httpx.Client) -> None:
    response = upload(client, crafted_png(50_000, 50_000), name="bomb.png")
    assert response.status_code == 422
    assert "decompression bomb" in response.json()["detail"]


def test_uploads_over_the_limit_are_413_and_the_server_keeps_serving(client: httpx.Client) -> None:
    too_big = upload(client, b"\xff" * (20 * MB + 1))
    assert too_big.status_code == 413
    assert too_big.json() == {"detail": "upload too large: the limit is 20 MB"}

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        yield from (b"\xff" * MB for _ in range(21))
        yield b"\r\n--b--\r\n"

    streamed = client.post(
        "/api/search", content=chunked(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert streamed.status_code == 413
    assert client.get("/api/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("request_args", "status", "detail"),
    [
        ({"json": {"id": 1, "k": 0}}, 422, "k: Input should be greater than or equal to 1"),
        ({"json": {"id": 1, "method": "magic"}}, 422, "method"),
        ({"json": {"id": 1, "surprise": True}}, 422, "surprise: Extra inputs are not permitted"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "multipart/form-data"),
        ({"data": {"k": "3"}, "files": {"other": ("a", b"x")}}, 422, "other"),
    ],
)
def test_invalid_requests_get_a_json_message(
    client: httpx.Client, request_args: dict, status: int, detail: str
) -> None:
    response = client.post("/api/search", **request_args)
    assert response.status_code == status
    assert detail in response.json()["detail"]


def test_added_images_are_stored_in_the_uploads_folder_under_their_label_and_searchable(
    client: httpx.Client, served: Served
) -> None:
    count = client.get("/api/health").json()["count"]
    flipped = Image.open(served.images / QUERY).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    new_image = encode(flipped, "PNG")
    response = client.post(
        "/api/images",
        files=[("images", ("../../evil name.png", new_image, "image/png"))],
        data={"label": "pizza"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["count"] == count + 1
    (added,) = body["added"]
    assert added["label"] == "pizza" and added["path"].startswith("uploads://pizza/evil_name-")
    saved = served.index_dir / "uploads" / added["path"].removeprefix("uploads://")
    assert saved.read_bytes() == new_image
    assert not list(served.images.rglob("*evil*"))  # the photo folder is left alone
    best = upload(client, new_image, name="again.png", k=1, method="cosine").json()["results"][0]
    assert best["id"] == added["id"] and best["score"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("files", "label", "status"),
    [
        ([("images", ("a.png", b"not an image", "image/png"))], None, 415),
        ([("images", ("a.png", encode(Image.new("RGB", (8, 8)), "PNG"), "image/png"))], "../outside", 422),
        (
            [
                ("images", ("good.png", encode(Image.new("RGB", (8, 8)), "PNG"), "image/png")),
                ("images", ("bomb.png", crafted_png(50_000, 50_000), "image/png")),
            ],
            None,
            422,
        ),
    ],
)
def test_adding_bad_input_changes_nothing(
    client: httpx.Client, served: Served, files: list, label: str | None, status: int
) -> None:
    count = client.get("/api/health").json()["count"]
    files_before = sorted(served.images.rglob("*")), sorted((served.index_dir / "uploads").rglob("*.*"))
    response = client.post("/api/images", files=files, data={"label": label} if label else {})
    assert response.status_code == status
    assert isinstance(response.json()["detail"], str)
    assert client.get("/api/health").json()["count"] == count
    files_after = sorted(served.images.rglob("*")), sorted((served.index_dir / "uploads").rglob("*.*"))
    assert files_after == files_before
    assert not (served.images.parent / "outside").exists()


def test_a_file_gone_from_disk_is_404_not_a_crash(client: httpx.Client, served: Served) -> None:
    path = "umbrella/image_0008.jpg"
    image_id = id_of(client, served, path)
    (served.images / path).unlink()
    for url in (f"/api/images/{image_id}", f"/api/images/{image_id}/thumbnail"):
        response = client.get(url)
        assert response.status_code == 404
        assert path in response.json()["detail"]


def test_page_and_docs_are_served(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<title>imagerank" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/search", "/api/images", "/api/images/{image_id}", "/api/health", "/api/stats"} <= set(paths)
    content = paths["/api/search"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(content)


def test_the_collection_lists_every_image_by_label_a_page_at_a_time(client: httpx.Client) -> None:
    counts = {item["label"]: item["count"] for item in client.get("/api/stats").json()["labels"]}
    total = sum(counts.values())  # other tests in this module add images
    pages, offset = [], 0
    while True:
        page = client.get("/api/collection", params={"offset": offset, "limit": 30}).json()
        assert page["total"] == total
        pages.append(page)
        offset += 30
        if not page["has_more"]:
            break
    images = [image for page in pages for image in page["images"]]
    assert [len(page["images"]) for page in pages[:-1]] == [30] * (len(pages) - 1)
    assert len(images) == len({image["id"] for image in images}) == total >= 80
    order = [(image["label"] is None, image["label"] or "", image["path"]) for image in images]
    assert order == sorted(order)

    llamas = client.get("/api/collection", params={"label": "llama"}).json()
    assert (llamas["total"], llamas["has_more"]) == (counts["llama"], False)
    assert {image["label"] for image in llamas["images"]} == {"llama"}
    thumbnail = client.get(llamas["images"][0]["thumbnail_url"])
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"

    unknown = client.get("/api/collection", params={"label": "no such label"})
    assert unknown.status_code == 422 and "'no such label'" in unknown.json()["detail"]
    assert client.get("/api/collection", params={"limit": 0}).status_code == 422


def test_the_server_says_which_index_it_serves(served: Served) -> None:
    assert f"serving the index at {served.index_dir.resolve()} on http://127.0.0.1:" in served.log.read_text()
