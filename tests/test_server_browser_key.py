"""The page asks for the API key only when the server needs one (headless Chromium against real servers).

Against a server started with `--protect-reads` the page asks once, on the first 401, then searches and shows
thumbnails (which reach the server with the key in a cookie). Against an open server it never asks.
Skipped when Chromium or Playwright is missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser import CHROMIUM, launched_chromium
from server_fixtures import Served, sample_server

from imagerank import Embedder

KEY = "browser-test-key"
QUERY = "pizza/image_0001.jpg"
TIMEOUT_MS = 30_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with launched_chromium() as chromium:
        yield chromium


def open_page(
    browser: sync_api.Browser, served: Served, answer: str | None
) -> tuple[sync_api.Page, list[str]]:
    """The page at `served`, answering every prompt with `answer`; also returns the prompts' messages."""
    page = browser.new_context().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    prompts: list[str] = []

    def on_dialog(dialog: sync_api.Dialog) -> None:
        prompts.append(dialog.message)
        if answer is None:
            dialog.dismiss()
        else:
            dialog.accept(answer)

    page.on("dialog", on_dialog)
    page.goto(served.url)
    return page, prompts


def search_and_wait_for_thumbnails(page: sync_api.Page, served: Served) -> None:
    page.set_input_files("#file-input", str(served.images / QUERY))
    page.wait_for_function(
        "() => { const images = [...document.querySelectorAll('#grid .card img')];"
        " return images.length > 0 && images.every(image => image.complete && image.naturalWidth > 0); }"
    )


def test_the_page_asks_once_for_the_key_of_a_protected_server(
    browser: sync_api.Browser, tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder
) -> None:
    with sample_server(
        tmp_path_factory, "browser-key", mobilenet, ["--protect-reads"], {"IMAGERANK_API_KEY": KEY}
    ) as served:
        page, prompts = open_page(browser, served, KEY)
        page.wait_for_function("() => document.querySelector('#stats').textContent.includes('80 images')")
        assert prompts == ["This server needs an API key:"]
        search_and_wait_for_thumbnails(page, served)
        assert page.locator("#error").is_hidden()
        assert len(prompts) == 1

        wrong, wrong_prompts = open_page(browser, served, "not the key")
        wrong.wait_for_function("() => document.querySelector('#stats').textContent.includes('Could not')")
        assert wrong_prompts == ["This server needs an API key:", "That API key was refused. API key:"]


def test_the_page_never_asks_an_open_server(
    browser: sync_api.Browser, tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder
) -> None:
    with sample_server(tmp_path_factory, "browser-open", mobilenet) as served:
        page, prompts = open_page(browser, served, None)
        page.wait_for_function("() => document.querySelector('#stats').textContent.includes('80 images')")
        search_and_wait_for_thumbnails(page, served)
        assert prompts == []
