"""The web page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright) against a real server.

Skipped when Chromium or Playwright is missing. A failing test leaves a screenshot in
$IMAGERANK_ARTIFACTS (default: the test's temporary folder). With $IMAGERANK_SCREENSHOT set to a path,
`test_page_screenshot_for_the_readme` writes the README's screenshot there.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser import CHROMIUM, launched_chromium
from PIL import Image
from server_fixtures import Served, sample_server

from imagerank import Embedder
from imagerank.index.fitted import DEFAULT_METHOD

QUERY = "pizza/image_0001.jpg"
TIMEOUT_MS = 30_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder) -> Iterator[Served]:
    with sample_server(tmp_path_factory, "browser", mobilenet) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: sync_api.Browser, served: Served, request: pytest.FixtureRequest, tmp_path: Path):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(served.url)
    with _screenshot_on_failure(page, request.node.name, tmp_path):
        yield page
    context.close()


@contextmanager
def _screenshot_on_failure(page: sync_api.Page, name: str, tmp_path: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        artifacts = Path(os.environ.get("IMAGERANK_ARTIFACTS", tmp_path / "artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
        raise


def card_ids(page: sync_api.Page) -> list[str]:
    return page.locator("#grid .card").evaluate_all("cards => cards.map(card => card.dataset.id)")


def wait_for_new_results(page: sync_api.Page, before: list[str]) -> list[str]:
    """Wait until the grid shows results other than `before`, and return their ids."""
    page.wait_for_function(
        "before => { const ids = [...document.querySelectorAll('#grid .card')].map(c => c.dataset.id);"
        " return ids.length > 0 && ids.join() !== before.join(); }",
        arg=before,
    )
    page.wait_for_function("() => !document.querySelector('#results').hasAttribute('aria-busy')")
    return card_ids(page)


def search_with_file(page: sync_api.Page, path: Path) -> list[str]:
    before = card_ids(page)
    page.set_input_files("#file-input", str(path))
    return wait_for_new_results(page, before)


def test_upload_more_like_this_and_feedback(page: sync_api.Page, served: Served) -> None:
    page.wait_for_function("() => document.querySelector('#label-filter').options.length > 1")
    first_ids = search_with_file(page, served.images / QUERY)
    assert len(first_ids) == 24
    top = page.locator("#grid .card").first
    assert top.locator(".card-label").inner_text() == "pizza"
    assert top.locator(".card-label").get_attribute("title") == QUERY  # the indexed copy of the query

    second = page.locator("#grid .card").nth(1)
    second_id = second.get_attribute("data-id")
    second.locator(".more-like-this").click()  # "more like this"
    like_ids = wait_for_new_results(page, first_ids)
    assert second_id not in like_ids
    assert "More like pizza/" in page.locator("#query-caption").inner_text()
    assert page.locator("#grid .card .card-label").first.inner_text() == "pizza"

    dropped = like_ids[0]
    page.locator("#grid .card").first.get_by_role("button", name="Not relevant").click()
    refined_ids = wait_for_new_results(page, like_ids)
    assert dropped not in refined_ids
    assert refined_ids != like_ids
    assert "1 not relevant" in page.locator("#feedback-summary").inner_text()


def test_choosing_a_method_changes_the_ranking(page: sync_api.Page, served: Served) -> None:
    page.wait_for_function("() => document.querySelector('#method').options.length > 1")
    assert page.input_value("#method") == DEFAULT_METHOD
    learned_ids = search_with_file(page, served.images / QUERY)
    assert f"ranked by {DEFAULT_METHOD}" in page.locator("#status").inner_text()

    page.select_option("#method", "cosine")
    cosine_ids = wait_for_new_results(page, learned_ids)
    assert "ranked by cosine" in page.locator("#status").inner_text()
    top = page.locator("#grid .card").first
    assert float(top.locator(".card-score").inner_text()) == pytest.approx(1.0, abs=1e-3)
    assert cosine_ids[0] == learned_ids[0]  # both find the query's own indexed copy first

    page.select_option("#method", DEFAULT_METHOD)
    assert wait_for_new_results(page, cosine_ids) == learned_ids


def test_keyboard_alone(page: sync_api.Page, served: Served) -> None:
    """Tab to the file picker and open it with the keyboard, then use result buttons without a mouse."""
    # Waiting for the chooser starts first: Playwright switches on file chooser interception
    # asynchronously, and a key pressed before that opens a (headless, invisible) native dialog instead.
    with page.expect_file_chooser() as chooser:
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "file-input":
                break
        assert page.evaluate("document.activeElement.id") == "file-input"
        page.keyboard.press("Space")
    chooser.value.set_files(str(served.images / QUERY))
    ids = wait_for_new_results(page, [])

    page.locator("#grid .card .more-like-this").first.focus()
    page.keyboard.press("Enter")
    ids = wait_for_new_results(page, ids)
    assert page.evaluate("document.activeElement.id") == "results"  # focus is not lost to <body>

    page.keyboard.press("Tab")  # from the results section into the first card
    assert page.evaluate("document.activeElement.classList.contains('more-like-this')")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Relevant"
    page.keyboard.press("Space")
    page.wait_for_selector("#grid .card .relevant[aria-pressed='true']")


def test_label_filter_and_paging(page: sync_api.Page, served: Served) -> None:
    first_ids = search_with_file(page, served.images / QUERY)
    page.select_option("#label-filter", "llama")
    llama_ids = wait_for_new_results(page, first_ids)
    assert len(llama_ids) == 8
    assert set(page.locator("#grid .card .card-label").all_inner_texts()) == {"llama"}
    assert page.locator("#next-page").is_disabled()

    page.select_option("#label-filter", "")
    all_ids = wait_for_new_results(page, llama_ids)
    page.locator("#next-page").click()
    next_ids = wait_for_new_results(page, all_ids)
    assert not set(next_ids) & set(all_ids)
    assert page.locator("#page-label").inner_text() == "Results 25\N{EN DASH}48"


def test_phone_sized_screen(browser: sync_api.Browser, served: Served) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(served.url)
    search_with_file(page, served.images / QUERY)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing overflows sideways
    columns = page.evaluate("getComputedStyle(document.querySelector('#grid')).gridTemplateColumns")
    assert len(columns.split()) == 2
    context.close()


@pytest.mark.skipif(not os.environ.get("IMAGERANK_SCREENSHOT"), reason="set IMAGERANK_SCREENSHOT=path.png")
def test_page_screenshot_for_the_readme(page: sync_api.Page, served: Served, tmp_path: Path) -> None:
    """The README's screenshot: a query, its results, one marked relevant; 1000 px wide, palette PNG."""
    search_with_file(page, served.images / QUERY)
    page.wait_for_function("() => [...document.querySelectorAll('#grid img')].every(i => i.complete)")
    page.locator("#grid .card").nth(2).get_by_role("button", name="Relevant", exact=True).click()
    page.wait_for_selector("#grid .card .relevant[aria-pressed='true']")
    page.wait_for_function("() => [...document.querySelectorAll('#grid img')].every(i => i.complete)")
    page.evaluate("window.scrollTo(0, 0)")
    raw = page.screenshot(clip={"x": 0, "y": 0, "width": 1000, "height": 900})
    image = Image.open(io.BytesIO(raw)).convert("RGB").quantize(colors=128, dither=Image.Dither.NONE)
    target = Path(os.environ["IMAGERANK_SCREENSHOT"])
    partial = tmp_path / target.name
    image.save(partial, optimize=True)
    assert partial.stat().st_size < 300_000
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(partial, target)


def test_the_collection_shows_before_any_query_and_a_click_searches_more_like_it(
    page: sync_api.Page, served: Served
) -> None:
    shown = "n => document.querySelectorAll('#collection-grid .collection-item').length === n"
    page.wait_for_function(shown, arg=24)
    assert "Images 1\N{EN DASH}24 of 80" in page.locator("#collection-status").inner_text()
    page.wait_for_function("() => document.querySelector('#collection-label').options.length > 1")
    page.select_option("#collection-label", "llama")
    page.wait_for_function(shown, arg=8)
    assert set(page.locator("#collection-grid .collection-label").all_inner_texts()) == {"llama"}
    assert page.locator("#collection-next").is_disabled()

    chosen = page.locator("#collection-grid .collection-item").first
    chosen_id = chosen.get_attribute("data-id")
    chosen.get_by_role("button").click()
    ids = wait_for_new_results(page, [])
    assert chosen_id not in ids
    assert page.locator("#query-caption").inner_text().startswith("More like llama/")
    assert page.locator("#grid .card .card-label").first.inner_text() == "llama"
