"""Screenshots of the web console for the README, as `make run` serves it (your home, the real model).

    .venv/bin/python docs/screenshots.py     # writes docs/console-*.png

Needs Debian's chromium (`make test` installs it). Run `switchboard eval <dept>` first for an eval view.
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn

from gateway.app import create_app
from gateway.settings import load_settings

OUT = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
QUESTIONS = ["How many casual leaves do I get in a year?", "/finance When is Form 16 issued?"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(load_settings(None)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        wait_ready(page, url)
        page.goto(url + "/")
        for question in QUESTIONS:
            page.fill("#text", question)
            page.click("#send")
            page.locator("#messages li.bot .meta").nth(QUESTIONS.index(question)).wait_for(timeout=120_000)
        shot(page, "console-chat.png")
        for view in ("models", "evals", "status"):
            page.click(f"#tabs button[data-view={view}]")
            time.sleep(1.0)
            if view == "evals":
                # What chat serves: the llama.cpp model, grounded, on the answerable questions.
                labels = page.locator("#eval-model option").all_inner_texts()
                served = [i for i, label in enumerate(labels) if "llama.cpp" in label and "grounding (" in label]
                page.select_option("#eval-model", index=(served or [len(labels) - 1])[0])
                page.check("#misses")
            shot(page, f"console-{view}.png")
        browser.close()
    server.should_exit = True


def wait_ready(page, url: str) -> None:
    deadline = time.monotonic() + 300
    while page.request.get(url + "/readyz").status != 200:
        if time.monotonic() > deadline:
            sys.exit("the server did not become ready")
        time.sleep(1)


def shot(page, name: str) -> None:
    page.screenshot(path=str(OUT / name), full_page=False)
    print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
