"""A server safe to expose: writes off by default, the API key (401 / 403 / right), read protection, the
start-up refusal, uploads kept apart from the photo folder, security headers, CORS and ETags.

Every test talks to a real `imagerank serve` process (uvicorn) over loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from conftest import CliRunner
from corpus import encode
from PIL import Image
from server_fixtures import SAMPLE_LABELS, SAMPLE_PER_LABEL, Served, sample_server

from imagerank import Embedder, Index

KEY = "s3cret-key-for-tests"
QUERY = "pizza/image_0001.jpg"
ORIGIN = "https://photos.example.org"


def random_png(seed: int, size: int = 48) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder) -> Iterator[Served]:
    """A server started with no options at all."""
    with sample_server(tmp_path_factory, "plain", mobilenet) as running:
        yield running


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder) -> Iterator[Served]:
    """Uploads on, reads protected, one CORS origin, and a key."""
    args = ["--allow-uploads", "--protect-reads", "--cors-origin", ORIGIN]
    with sample_server(tmp_path_factory, "guarded", mobilenet, args, {"IMAGERANK_API_KEY": KEY}) as running:
        yield running


def test_writes_are_off_by_default(plain: Served) -> None:
    files = [("images", ("new.png", random_png(1), "image/png"))]
    response = httpx.post(f"{plain.url}/api/images", files=files, headers=bearer("anything"))
    assert response.status_code == 403
    assert "--allow-uploads" in response.json()["detail"]
    assert httpx.get(f"{plain.url}/api/health").json()["count"] == SAMPLE_LABELS * SAMPLE_PER_LABEL
    assert not (plain.index_dir / "uploads").exists()


def test_reads_are_open_by_default_and_carry_etag_and_cache_control(plain: Served) -> None:
    with httpx.Client(base_url=plain.url, timeout=60) as client:
        query = (plain.images / QUERY).read_bytes()
        best = client.post("/api/search", files={"image": ("q.jpg", query, "image/jpeg")}, data={"k": 1})
        image_id = best.json()["results"][0]["id"]
        for url in (f"/api/images/{image_id}", f"/api/images/{image_id}/thumbnail"):
            first = client.get(url)
            assert first.status_code == 200 and first.content
            assert first.headers["cache-control"] == "private, no-cache"
            tag = first.headers["etag"]
            assert tag.startswith('"') and tag.endswith('"')
            again = client.get(url, headers={"If-None-Match": tag})
            assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
            assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
        image_tag = client.get(f"/api/images/{image_id}").headers["etag"]
        assert image_tag != client.get(f"/api/images/{image_id}/thumbnail").headers["etag"]


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/health", "/api/stats", "/api/images/987654"])
def test_every_response_has_the_security_headers(plain: Served, path: str) -> None:
    response = httpx.get(f"{plain.url}{path}", headers={"Origin": ORIGIN})
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in response.headers  # no CORS unless configured


def test_no_cors_preflight_unless_configured(plain: Served, guarded: Served) -> None:
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    refused = httpx.options(f"{plain.url}/api/search", headers=preflight)
    assert "access-control-allow-origin" not in refused.headers
    allowed = httpx.options(f"{guarded.url}/api/search", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.options(
        f"{guarded.url}/api/search", headers={**preflight, "Origin": "https://evil.example.com"}
    )
    assert "access-control-allow-origin" not in other.headers


def test_writes_need_the_key_401_without_403_wrong(guarded: Served) -> None:
    count = httpx.get(f"{guarded.url}/api/health").json()["count"]
    files = [("images", ("new.png", random_png(2), "image/png"))]
    missing = httpx.post(f"{guarded.url}/api/images", files=files)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(f"{guarded.url}/api/images", files=files, headers=bearer(KEY + "x"))
    assert wrong.status_code == 403 and wrong.json()["detail"] == "wrong API key"
    basic = httpx.post(f"{guarded.url}/api/images", files=files, auth=("user", KEY))
    assert basic.status_code == 401
    # The page's cookie opens reads only, never writes.
    cookie = httpx.post(f"{guarded.url}/api/images", files=files, cookies={"imagerank_key": KEY})
    assert cookie.status_code == 401
    assert httpx.get(f"{guarded.url}/api/health").json()["count"] == count
    assert not list((guarded.index_dir / "uploads").rglob("*.png"))


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/api/stats"), ("GET", "/api/images/1"), ("GET", "/api/images/1/thumbnail")]
)
def test_protected_reads_need_the_key(guarded: Served, method: str, path: str) -> None:
    url = f"{guarded.url}{path}"
    assert httpx.request(method, url).status_code == 401
    assert httpx.request(method, url, headers=bearer("nope")).status_code == 403
    assert httpx.request(method, url, headers=bearer(KEY)).status_code == 200
    assert httpx.request(method, url, cookies={"imagerank_key": KEY}).status_code == 200
    assert httpx.request(method, url, cookies={"imagerank_key": "nope"}).status_code == 403


def test_protected_search_needs_the_key_but_health_and_page_do_not(guarded: Served) -> None:
    body = {"id": 1, "k": 3}
    assert httpx.post(f"{guarded.url}/api/search", json=body).status_code == 401
    assert httpx.post(f"{guarded.url}/api/search", json=body, headers=bearer("nope")).status_code == 403
    found = httpx.post(f"{guarded.url}/api/search", json=body, headers=bearer(KEY))
    assert found.status_code == 200 and len(found.json()["results"]) == 3
    assert httpx.get(f"{guarded.url}/api/health").status_code == 200
    assert httpx.get(f"{guarded.url}/").status_code == 200  # the page loads, then asks for the key


def test_an_upload_goes_to_the_index_keeping_a_safe_name_and_its_label(
    guarded: Served, mobilenet: Embedder, cli: CliRunner
) -> None:
    data = random_png(3)
    files = [("images", ("../../Été photo <1>.png", data, "image/png"))]
    with httpx.Client(base_url=guarded.url, headers=bearer(KEY), timeout=60) as client:
        response = client.post("/api/images", files=files, data={"label": "holiday"})
        assert response.status_code == 201, response.text
        (added,) = response.json()["added"]
        assert added["label"] == "holiday"
        assert added["path"].startswith("uploads://holiday/Été_photo_1-") and added["path"].endswith(".png")
        saved = guarded.index_dir / "uploads" / added["path"].removeprefix("uploads://")
        assert saved.read_bytes() == data
        assert not list(guarded.images.rglob("*.png"))  # nothing written into the photo folder
        assert not list(guarded.index_dir.parent.glob("Été*"))
        assert client.get(f"/api/images/{added['id']}").content == data
        best = client.post("/api/search", files={"image": ("q.png", data, "image/png")}, data={"k": 1})
        assert best.json()["results"][0]["id"] == added["id"]
        stats = client.get("/api/stats").json()
        assert stats["uploads"] == 1 and stats["count"] == SAMPLE_LABELS * SAMPLE_PER_LABEL + 1

    info = cli("info", "--index", guarded.index_dir, "--json")
    assert info.returncode == 0, info.stderr
    uploads = json.loads(info.stdout)["uploads"]
    assert uploads == {"folder": str((guarded.index_dir / "uploads").resolve()), "count": 1}
    table = cli("info", "--index", guarded.index_dir)
    assert "uploads" in table.stdout and "1 in" in table.stdout
    # Re-indexing the photo folder keeps the upload: it is not a file of that folder.
    with Index.open(guarded.index_dir, embedder=mobilenet) as index:
        report = index.sync(guarded.images)
        assert report.removed == [] and not report.indexed
        assert index.upload_count() == 1


@pytest.mark.parametrize(
    ("host", "args", "env", "reason"),
    [
        ("0.0.0.0", ["--allow-uploads"], {}, "refusing to serve uploads on 0.0.0.0 without a key"),
        ("192.168.1.7", ["--allow-uploads"], {"IMAGERANK_API_KEY": ""}, "Set IMAGERANK_API_KEY"),
        ("127.0.0.1", ["--protect-reads"], {}, "--protect-reads needs a key"),
    ],
)
def test_serve_refuses_an_unsafe_start_and_says_why(
    plain: Served, cli: CliRunner, host: str, args: list[str], env: dict, reason: str
) -> None:
    environment = {"IMAGERANK_API_KEY": "", **env}
    result = cli(
        "serve", "--index", plain.index_dir, "--host", host, "--port", "1", *args, env=environment, timeout=60
    )
    assert result.returncode == 1
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
