"""The page's "save marked as label" in headless Chromium against real servers: one that accepts writes
(the action labels the marked results and the query image, and the label counts change) and a read-only
one (the action is not offered)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from browser import CHROMIUM, launched_chromium
from server_fixtures import SAMPLE_LABELS, Served, sample_server
from test_server_browser import TIMEOUT_MS, card_ids, search_with_file, wait_for_new_results

from imagerank import Embedder

QUERY = "pizza/image_0001.jpg"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def writable(tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder) -> Iterator[Served]:
    with sample_server(tmp_path_factory, "browser-labels", mobilenet, ["--allow-uploads"]) as running:
        yield running


@pytest.fixture(scope="module")
def read_only(tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder) -> Iterator[Served]:
    with sample_server(tmp_path_factory, "browser-read-only", mobilenet) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with launched_chromium() as chromium:
        yield chromium


def open_page(browser: sync_api.Browser, served: Served) -> sync_api.Page:
    page = browser.new_context(viewport={"width": 1000, "height": 900}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(served.url)
    page.wait_for_function("() => document.querySelector('#label-filter').options.length > 1")
    return page


def mark_relevant(page: sync_api.Page, position: int) -> str:
    card = page.locator("#grid .card").nth(position)
    card_id = card.get_attribute("data-id")
    card.get_by_role("button", name="Relevant", exact=True).click()
    page.wait_for_selector(f"#grid .card[data-id='{card_id}'] .relevant[aria-pressed='true']")
    page.wait_for_function("() => !document.querySelector('#results').hasAttribute('aria-busy')")
    return str(card_id)


def test_marked_results_and_the_query_are_saved_as_a_label(
    browser: sync_api.Browser, writable: Served
) -> None:
    page = open_page(browser, writable)
    assert page.locator("#save-label").is_visible()
    assert page.locator("#save-label-button").is_disabled()
    assert "(10 labels)" in page.locator("#method-help").inner_text()
    first_ids = search_with_file(page, writable.images / QUERY)

    page.locator("#grid .card").nth(3).locator(".more-like-this").click()  # the query is an indexed image
    like_ids = wait_for_new_results(page, first_ids)
    query_id = page.evaluate("state.query.id")
    marked = [mark_relevant(page, 0), mark_relevant(page, 1)]
    assert page.locator("#save-label-button").inner_text() == "Save 3 images"

    page.fill("#label-name", "my favourites")
    page.locator("#save-label-button").click()
    page.wait_for_function("() => document.querySelector('#label-status').textContent.startsWith('Saved')")
    status = page.locator("#label-status").inner_text()
    quoted = "\N{LEFT DOUBLE QUOTATION MARK}my favourites\N{RIGHT DOUBLE QUOTATION MARK}"
    assert status == f"Saved 3 images as {quoted}. The ranking has learned it."
    for menu in ("#label-filter", "#collection-label"):
        page.wait_for_function(
            "menu => [...document.querySelector(menu).options].some(o => o.text === 'my favourites (3)')",
            arg=menu,
        )
    page.wait_for_function(
        f"() => document.querySelector('#method-help').textContent.includes('({SAMPLE_LABELS + 1} labels)')"
    )
    assert (
        page.evaluate("[...document.querySelectorAll('#known-labels option')].map(o => o.value)").count(
            "my favourites"
        )
        == 1
    )
    page.wait_for_function("() => !document.querySelector('#results').hasAttribute('aria-busy')")
    assert len(card_ids(page)) == len(like_ids)
    assert "ranked by" in page.locator("#status").inner_text()  # searched again

    stats = httpx.get(f"{writable.url}/api/stats").json()
    assert {"label": "my favourites", "count": 3} in stats["labels"]
    page_of_label = httpx.get(f"{writable.url}/api/collection", params={"label": "my favourites"}).json()
    assert sorted(image["id"] for image in page_of_label["images"]) == sorted([query_id, *map(int, marked)])
    page.context.close()


def test_a_refused_label_shows_the_servers_reason(browser: sync_api.Browser, writable: Served) -> None:
    page = open_page(browser, writable)
    search_with_file(page, writable.images / QUERY)
    mark_relevant(page, 0)
    page.fill("#label-name", "unlabelled")
    page.locator("#save-label-button").click()
    page.wait_for_selector("#error:not([hidden])")
    assert "means no label" in page.locator("#error").inner_text()
    page.context.close()


def test_a_read_only_server_offers_no_label_saving(browser: sync_api.Browser, read_only: Served) -> None:
    page = open_page(browser, read_only)
    search_with_file(page, read_only.images / QUERY)
    mark_relevant(page, 0)
    assert page.locator("#save-label").is_hidden()
    page.context.close()
