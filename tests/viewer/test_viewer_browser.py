"""End to end in a real browser: Debian's Chromium, headless, driven by Playwright (never a downloaded browser).

Open the page, pick a case, type prompts, wait for the overlay, type a command, see the mask grow, undo, see it
back, redo, save, find the file on disk. Screenshots go to ``$NNUNET_CAUSAL_TEST_ARTEFACTS`` (default: the
test's temporary folder)."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the viewer needs the [viewer] extra (fastapi, uvicorn)")

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def system_chromium():
    given = os.environ.get("NNUNET_CAUSAL_CHROMIUM")
    if given:
        return given
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@pytest.fixture
def server(viewer_model, env, tmp_path):
    """The viewer on a free loopback port, served by uvicorn in a thread of this process."""
    import uvicorn

    from nnunet_causal.viewer.app import create_app
    from nnunet_causal.viewer.serve_cli import build_config

    model, images, _ = viewer_model
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = build_config(str(model), str(images), str(tmp_path / "saved"), port=port)
    srv = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    end = time.time() + 20
    while not srv.started:
        if time.time() > end or not thread.is_alive():
            raise RuntimeError("the viewer's server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", config
    srv.should_exit = True
    thread.join(10)


def _voxels(page, value: int) -> int:
    return int(page.get_attribute(f"#layers li[data-value='{value}']", "data-voxels"))


def _overlay(page) -> int:
    return int(page.get_attribute("canvas[data-view='axial']", "data-overlay-pixels"))


def test_prompt_command_undo_save_in_chromium(server, tmp_path):
    chromium = system_chromium()
    if chromium is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium; or set NNUNET_CAUSAL_CHROMIUM): "
                    "the browser test uses the system browser and never downloads one")
    from PIL import Image
    from playwright.sync_api import sync_playwright

    url, config = server
    artefacts = Path(os.environ.get("NNUNET_CAUSAL_TEST_ARTEFACTS") or tmp_path)
    artefacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            requests, errors = [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.click("#case-list button[data-case='tiny_006']")
            page.wait_for_selector("#prompt-run:not([disabled])")
            page.fill("#prompt-input", "lesion\nmarker")
            page.click("#prompt-run")
            page.wait_for_selector("#viewer:not([data-mask-version='0'])", timeout=60000)
            n0, p0 = _voxels(page, 1), _overlay(page)
            assert n0 > 0 and p0 > 0, "the prompt's overlay is drawn"
            assert "present" in page.inner_text("#layers li[data-value='1']")

            page.fill("#command-input", "make the lesion much bigger")
            page.click("#command-run")
            page.wait_for_selector("#edit-log li", timeout=60000)
            page.wait_for_selector("#undo:not([disabled])")
            n1, p1 = _voxels(page, 1), _overlay(page)
            assert n1 > n0 and p1 > p0, "the command grows the lesion on screen"
            assert "expand lesion" in page.inner_text("#edit-log")

            page.click("#undo")
            page.wait_for_selector("#edit-log li.undone", timeout=60000)
            page.wait_for_selector("#redo:not([disabled])")
            assert (_voxels(page, 1), _overlay(page)) == (n0, p0), "undo restores the prediction"
            page.click("#redo")
            page.wait_for_selector("#edit-log li:not(.undone)", timeout=60000)
            page.wait_for_selector("#save:not([disabled])")
            assert (_voxels(page, 1), _overlay(page)) == (n1, p1)

            page.click("#save")
            page.wait_for_selector("#saved:has-text('saved')", timeout=60000)
            page.screenshot(path=str(artefacts / "viewer_e2e.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    saved = np.asarray(Image.open(config.out_folder / "tiny_006.png"))
    assert int((saved == 1).sum()) == n1
    assert (config.out_folder / "tiny_006.prompts.json").is_file() and (config.out_folder / "tiny_006.edits.json").is_file()
    assert requests and all(r.startswith(url) for r in requests), "the page fetches nothing from elsewhere"
