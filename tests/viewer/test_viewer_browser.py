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
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def system_chromium():
    given = os.environ.get("NNUNET_CAUSAL_CHROMIUM")
    if given:
        return given
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@contextmanager
def running(app):
    """``app`` on a free loopback port, served by uvicorn in a thread of this process; yields its address."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.state.config.allowed_hosts[:] = [f"127.0.0.1:{port}"]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    end = time.time() + 20
    while not srv.started:
        if time.time() > end or not thread.is_alive():
            raise RuntimeError("the viewer's server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@contextmanager
def browser_page():
    chromium = system_chromium()
    if chromium is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium; or set NNUNET_CAUSAL_CHROMIUM): "
                    "the browser test uses the system browser and never downloads one")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            page.requests, page.errors = [], []
            page.on("request", lambda r: page.requests.append(r.url))
            page.on("pageerror", lambda e: page.errors.append(str(e)))
            yield page
        finally:
            browser.close()


@pytest.fixture
def server(viewer_model, env, tmp_path):
    from nnunet_causal.viewer.app import create_app
    from nnunet_causal.viewer.serve_cli import build_config

    model, images, _ = viewer_model
    config = build_config(str(model), str(images), str(tmp_path / "saved"))
    with running(create_app(config)) as url:
        yield url, config


def _voxels(page, value: int) -> int:
    return int(page.get_attribute(f"#layers li[data-value='{value}']", "data-voxels"))


def _overlay(page) -> int:
    return int(page.get_attribute("canvas[data-view='axial']", "data-overlay-pixels"))


def test_prompt_command_undo_save_in_chromium(server, tmp_path):
    from PIL import Image

    url, config = server
    artefacts = Path(os.environ.get("NNUNET_CAUSAL_TEST_ARTEFACTS") or tmp_path)
    artefacts.mkdir(parents=True, exist_ok=True)
    with browser_page() as page:
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
        assert not page.errors, page.errors
        requests = page.requests
    saved = np.asarray(Image.open(config.out_folder / "tiny_006.png"))
    assert int((saved == 1).sum()) == n1
    assert (config.out_folder / "tiny_006.prompts.json").is_file() and (config.out_folder / "tiny_006.edits.json").is_file()
    assert requests and all(r.startswith(url) for r in requests), "the page fetches nothing from elsewhere"


def test_3d_case_shows_three_views_with_the_overlay_in_chromium(tmp_path, monkeypatch):
    """A CT-like volume: axial / coronal / sagittal canvases in the right shapes, the mask on each, a layer
    hidden by its checkbox. (No 3D model in the tests: the prompt step reads the case's reference label map.)"""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from nnunet_causal.inference.prompt_assignment import PromptAssignment
    from nnunet_causal.viewer.app import ViewerConfig, create_app
    from nnunet_causal.viewer.case_state import CaseState
    from nnunet_causal.viewer.cases import list_cases
    from tests.conftest import make_tiny_3d_dataset

    raw = make_tiny_3d_dataset(tmp_path / "raw")

    class VolumeModel:
        reader_writer_class, file_ending, structures = SimpleITKIO, ".nii.gz", ["liver", "spleen"]
        folder, fold = raw, 0

        def info(self):
            return {"model": "reference labels", "fold": 0, "structures": self.structures, "confounders": [],
                    "intervention_weights": False, "file_ending": ".nii.gz", "channels": ["CT"]}

    def reference_labels(self, prompts, open_vocabulary, report):
        seg, _ = SimpleITKIO().read_seg(str(raw / "labelsTs" / f"{self.case}.nii.gz"))
        self.assignments = [PromptAssignment(n, i + 1, [n], 1.0, "exact", "trained", [n])
                            for i, n in enumerate(self.model.structures)]
        self.max_probability, self.prompt_seg = [1.0, 1.0], seg[0]
        self._compose()
        return self.state()

    monkeypatch.setattr(CaseState, "predict_prompts", reference_labels)
    cases = list_cases(raw / "imagesTs", ".nii.gz")
    config = ViewerConfig(VolumeModel(), {c.case: c for c in cases}, raw / "imagesTs", tmp_path / "saved",
                          allowed_hosts=[])
    with running(create_app(config)) as url, browser_page() as page:
        page.goto(url + "/")
        page.click("#case-list button[data-case='vol_005']")
        page.wait_for_selector("#prompt-run:not([disabled])")
        sizes = {v: [int(page.get_attribute(f"canvas[data-view='{v}']", a)) for a in ("height", "width")]
                 for v in ("axial", "coronal", "sagittal")}
        # (Z, Y, X) = (20, 20, 16) at spacing (2, 1, 1) mm: pictures of 20 x 16, 40 x 16 and 40 x 20 mm
        ratios = {v: h / w for v, (h, w) in sizes.items()}
        assert all(abs(ratios[v] - r) < 0.02 for v, r in (("axial", 1.25), ("coronal", 2.5), ("sagittal", 2.0))), sizes
        page.click("#prompt-run")
        page.wait_for_selector("#viewer:not([data-mask-version='0'])", timeout=30000)
        pixels = {v: int(page.get_attribute(f"canvas[data-view='{v}']", "data-overlay-pixels"))
                  for v in ("axial", "coronal", "sagittal")}
        assert all(n > 0 for n in pixels.values()), pixels      # middle slices cut both spheres
        artefacts = Path(os.environ.get("NNUNET_CAUSAL_TEST_ARTEFACTS") or tmp_path)
        artefacts.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(artefacts / "viewer_3d.png"), full_page=True)
        page.uncheck("#layers li[data-value='1'] input")
        page.uncheck("#layers li[data-value='2'] input")
        page.wait_for_selector("canvas[data-view='axial'][data-overlay-pixels='0']")
        assert not page.errors, page.errors
