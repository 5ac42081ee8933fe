"""POST /api/labels against real `imagerank serve` processes: a write (off by default, the key when set),
422s for bad requests that change nothing, and the effect on stats, the fitted method and searches."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from server_fixtures import SAMPLE_LABELS, Served, sample_server

from imagerank import Embedder
from imagerank.index.fitted import DEFAULT_METHOD

KEY = "labels-key-for-tests"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def read_only(tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder) -> Iterator[Served]:
    with sample_server(tmp_path_factory, "labels-read-only", mobilenet) as running:
        yield running


@pytest.fixture(scope="module")
def writable(tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder) -> Iterator[Served]:
    args = ["--allow-uploads"]
    with sample_server(tmp_path_factory, "labels", mobilenet, args, {"IMAGERANK_API_KEY": KEY}) as running:
        yield running


def label_counts(served: Served) -> dict[str | None, int]:
    stats = httpx.get(f"{served.url}/api/stats").json()
    return {item["label"]: item["count"] for item in stats["labels"]}


def ids_labelled(served: Served, label: str) -> list[int]:
    page = httpx.get(f"{served.url}/api/collection", params={"label": label, "limit": 50}).json()
    return [image["id"] for image in page["images"]]


def test_labels_are_a_write_refused_by_a_read_only_server(read_only: Served) -> None:
    before = label_counts(read_only)
    response = httpx.post(f"{read_only.url}/api/labels", json={"ids": [1], "label": "x"}, headers=bearer("k"))
    assert response.status_code == 403 and "--allow-uploads" in response.json()["detail"]
    assert httpx.get(f"{read_only.url}/api/stats").json()["writable"] is False
    assert label_counts(read_only) == before


def test_labels_need_the_key_and_never_the_cookie(writable: Served) -> None:
    before = label_counts(writable)
    body = {"ids": [1, 2], "label": "sneaky"}
    assert httpx.post(f"{writable.url}/api/labels", json=body).status_code == 401
    wrong = httpx.post(f"{writable.url}/api/labels", json=body, headers=bearer(KEY + "x"))
    assert wrong.status_code == 403
    cookie = httpx.post(f"{writable.url}/api/labels", json=body, cookies={"imagerank_key": KEY})
    assert cookie.status_code == 401
    assert label_counts(writable) == before
    assert httpx.get(f"{writable.url}/api/stats").json()["writable"] is True


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"ids": [], "label": "x"}, "ids"),
        ({"ids": [1, 4040, 4041], "label": "x"}, "no image with ids 4040, 4041 in the index"),
        ({"ids": [1], "label": ""}, "empty"),
        ({"ids": [1], "label": "tab\there"}, "control character"),
        ({"ids": [1], "label": "y" * 201}, "at most 200"),
        ({"ids": [1]}, "label"),
        ({"ids": [-1], "label": "x"}, "ids"),
        ({"ids": [1], "label": "x", "extra": 1}, "extra"),
    ],
)
def test_bad_requests_are_422_and_change_nothing(writable: Served, body: dict, detail: str) -> None:
    before = label_counts(writable)
    response = httpx.post(f"{writable.url}/api/labels", json=body, headers=bearer(KEY))
    assert response.status_code == 422
    assert detail in response.json()["detail"]
    assert label_counts(writable) == before


def test_a_label_set_through_the_api_is_learned_searched_and_cleared(writable: Served) -> None:
    pizzas = ids_labelled(writable, "pizza")[:3]
    response = httpx.post(
        f"{writable.url}/api/labels", json={"ids": pizzas, "label": "round food"}, headers=bearer(KEY)
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["changed"], answer["unchanged"], answer["refitted"]) == (
        sorted(pizzas),
        [],
        [DEFAULT_METHOD],
    )
    assert {"label": "round food", "count": 3} in answer["labels"]
    counts = label_counts(writable)
    assert (counts["round food"], counts["pizza"]) == (3, 5)

    methods = httpx.get(f"{writable.url}/api/methods").json()
    [fit] = [fit for fit in methods["fits"] if fit["method"] == DEFAULT_METHOD]
    assert (fit["n_labels"], fit["stale"]) == (SAMPLE_LABELS + 1, False)
    assert methods["labels"] == SAMPLE_LABELS + 1
    found = httpx.post(
        f"{writable.url}/api/search", json={"id": pizzas[0], "k": 5, "labels": ["round food"]}
    ).json()
    assert sorted(result["id"] for result in found["results"]) == sorted(pizzas[1:])
    assert {result["label"] for result in found["results"]} == {"round food"}

    cleared = httpx.post(
        f"{writable.url}/api/labels", json={"ids": pizzas, "label": None}, headers=bearer(KEY)
    )
    assert cleared.status_code == 200 and cleared.json()["changed"] == sorted(pizzas)
    assert "round food" not in label_counts(writable)
    assert label_counts(writable)["pizza"] == 8
