"""The page's "Search by words" box in headless Chromium, against a real server on a tiny open_clip index.

The results in the grid must be those of the API for the same words (and the same feedback marks); the label
filter and "more like this" work from a text search as from an image search. Skipped without Chromium or
Playwright.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser import CHROMIUM, launched_chromium
from conftest import copy_sample
from server_fixtures import Served, running_server
from tiny_clip import index_with_tiny_clip, write_tiny_clip

TIMEOUT_MS = 30_000
LABELS = ("dalmatian", "laptop", "pizza", "starfish")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytest.importorskip("open_clip")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("browser-text")
    photos = copy_sample(sample_dir, root / "photos", labels=LABELS, per_label=4)
    index_dir = index_with_tiny_clip(write_tiny_clip(root), photos, root / "clip.index")
    with running_server(index_dir, photos, root / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: sync_api.Browser, served: Served):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(served.url)
    yield page
    context.close()


def card_ids(page: sync_api.Page) -> list[int]:
    return [int(i) for i in page.locator("#grid .card").evaluate_all("cards => cards.map(c => c.dataset.id)")]


def wait_for_new_results(page: sync_api.Page, before: list[int]) -> list[int]:
    page.wait_for_function(
        "before => { const cards = [...document.querySelectorAll('#grid .card')];"
        " const ids = cards.map(c => Number(c.dataset.id));"
        " return ids.length > 0 && ids.join() !== before.join(); }",
        arg=before,
    )
    page.wait_for_function("() => !document.querySelector('#results').hasAttribute('aria-busy')")
    return card_ids(page)


def api_ids(served: Served, text: str, **options: object) -> list[int]:
    response = httpx.post(f"{served.url}/api/search", json={"text": text, "k": 24, **options}, timeout=60)
    assert response.status_code == 200, response.text
    return [result["id"] for result in response.json()["results"]]


def search_words(page: sync_api.Page, text: str) -> None:
    page.fill("#text-query", text)
    page.press("#text-query", "Enter")


def test_words_show_the_apis_results_then_more_like_this_searches_by_image(
    page: sync_api.Page, served: Served
) -> None:
    search_words(page, "a dog on a sofa")
    ids = wait_for_new_results(page, [])
    assert ids == api_ids(served, "a dog on a sofa") and len(ids) == 16
    assert "matching “a dog on a sofa”" in page.locator("#status").inner_text()
    assert page.locator("#query-caption").inner_text() == "Words: “a dog on a sofa”"
    assert page.locator("#query-image").is_hidden()

    page.locator("#grid .card").nth(0).get_by_role("button", name="Not relevant", exact=True).click()
    refined = wait_for_new_results(page, ids)
    assert ids[0] not in refined
    assert refined == api_ids(served, "a dog on a sofa", relevant=[], not_relevant=[ids[0]])
    assert "1 not relevant" in page.locator("#feedback-summary").inner_text()

    search_words(page, "a slice of pizza")  # new words, no feedback
    pizza_ids = wait_for_new_results(page, refined)
    assert pizza_ids == api_ids(served, "a slice of pizza")

    chosen = page.locator("#grid .card").nth(1)
    chosen_id = int(chosen.get_attribute("data-id"))
    chosen.locator(".more-like-this").click()
    like_ids = wait_for_new_results(page, pizza_ids)
    assert chosen_id not in like_ids
    assert page.locator("#query-caption").inner_text().startswith("More like ")
    assert page.locator("#query-image").is_visible()
    assert page.locator("#grid .card .feedback").first.is_visible()


def test_the_label_filter_applies_to_words(page: sync_api.Page, served: Served) -> None:
    page.wait_for_function("() => document.querySelector('#label-filter').options.length > 1")
    search_words(page, "a laptop")
    ids = wait_for_new_results(page, [])
    page.select_option("#label-filter", "starfish")
    starfish_ids = wait_for_new_results(page, ids)
    assert starfish_ids == api_ids(served, "a laptop", labels=["starfish"]) and len(starfish_ids) == 4
    assert set(page.locator("#grid .card .card-label").all_inner_texts()) == {"starfish"}


def test_blank_or_too_long_words_say_what_is_wrong(page: sync_api.Page) -> None:
    search_words(page, "   ")
    assert "Type a few words" in page.locator("#error").inner_text()
    assert card_ids(page) == []
    # The box stops typing at 1000 characters; a longer value set by script gets the server's answer.
    page.evaluate("document.querySelector('#text-query').value = 'x'.repeat(10000)")
    page.press("#text-query", "Enter")
    page.wait_for_function("() => document.querySelector('#error').textContent.includes('at most 1000')")
    assert page.locator("#error").is_visible()
