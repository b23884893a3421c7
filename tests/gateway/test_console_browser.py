"""The web console in a real browser: Debian's Chromium, driven by Playwright (no browser download)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from gateway.app import create_app
from tests.conftest import LiveServer, make_settings
from tests.gateway.console_home import DEPARTMENTS, console_server

# Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    path = os.environ.get("SWITCHBOARD_CHROMIUM") or shutil.which("chromium")
    if path is None:
        pytest.fail("no Chromium: `make test` installs Debian's chromium package "
                    "(or point SWITCHBOARD_CHROMIUM at a Chromium binary)")
    return path


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory) -> Iterator[str]:
    with console_server(tmp_path_factory.mktemp("browser-home"), tiny_model_dir, max_new_tokens=6) as (live, _):
        yield live.url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    yield page
    context.close()


def test_a_message_streams_in_with_its_department_and_route(server, page) -> None:
    page.goto(server + "/")
    page.locator("#tabs button[data-view=models]").wait_for()  # admin tabs shown: no key asked for
    assert page.locator("#key-form").is_hidden()
    page.select_option("#department", "hr")
    page.fill("#text", "How many casual leaves do I get?")
    page.click("#send")
    reply = page.locator("#messages li.bot").last
    meta = reply.locator(".meta")
    meta.wait_for(timeout=60_000)
    assert meta.inner_text().startswith("hr · confidence 1.00 · requested")
    assert reply.locator(".text").inner_text().strip()  # the streamed answer
    assert page.locator("#messages li.user").last.inner_text() == "How many casual leaves do I get?"


def test_reset_forgets_the_conversation(server, page) -> None:
    page.goto(server + "/")
    page.fill("#text", "/finance")
    page.press("#text", "Enter")
    page.locator("#messages li.bot .meta").first.wait_for(timeout=60_000)
    page.click("#reset")
    page.wait_for_function("document.querySelectorAll('#messages li').length === 0", timeout=30_000)


def test_the_models_view_lists_every_department_and_the_eval_view_filters_misses(server, page) -> None:
    page.goto(server + "/")
    page.click("#tabs button[data-view=models]")
    rows = page.locator("#models-rows tr")
    rows.first.wait_for()
    assert [rows.nth(i).get_attribute("data-department") for i in range(rows.count())] == list(DEPARTMENTS)
    hr = page.locator("#models-rows tr[data-department=hr]").inner_text()
    assert "25.0% → 50.0%" in hr and "previous: lora lora-20261120 · 2026-11-20 09:00:00 · 50.0%" in hr
    assert page.locator("#history-chart svg polyline").count() == 1  # hr's two versions over time
    page.click("#tabs button[data-view=evals]")
    page.select_option("#eval-model", "1")
    page.locator("#eval-rows tr").nth(3).wait_for()
    page.check("#misses")
    assert page.locator("#eval-rows tr").count() == 2
    assert "4 questions, 2 missed" in page.locator("#eval-summary").inner_text()
    page.click("#tabs button[data-view=status]")
    page.locator("#status-list dd").first.wait_for()
    assert "ready" in page.locator("#status-list").inner_text()


def test_the_chat_fits_a_phone_screen(server, browser) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(server + "/")
    page.fill("#text", "/base hello")
    page.click("#send")
    page.locator("#messages li.bot .meta").wait_for(timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.locator("#send").is_visible()
    context.close()


def test_a_server_with_an_api_key_gets_it_from_the_page(tiny_model_dir, tmp_path, browser) -> None:
    settings = make_settings(tmp_path, tiny_model_dir, router="commands", api_key="s3cret", max_new_tokens=4,
                             reload_interval_seconds=0)
    with LiveServer(create_app(settings)) as live:
        page = browser.new_page()
        page.goto(live.url + "/")
        page.locator("#key-form").wait_for()
        assert page.locator("#tabs button[data-view=models]").is_hidden()
        page.fill("#key", "s3cret")
        page.click("#key-form button")
        page.locator("#tabs button[data-view=models]").wait_for()
        assert page.locator("#key-form").is_hidden()
        page.close()
