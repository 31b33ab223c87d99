"""The viewer's building blocks without a browser: case listing, slicing of 3D volumes, the worker thread and
its tile progress."""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from nnunet_causal.errors import DatasetError, PromptError
from nnunet_causal.viewer.cases import CaseImage, check_view, label_slice_png, list_cases


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_list_cases_takes_complete_cases_in_nnunet_naming_only(tmp_path):
    for name in ("a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "c_0001.nii.gz", "d_0000.png", "notes.txt",
                 "e.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    cases = list_cases(tmp_path, ".nii.gz")
    assert [(c.case, [f.rsplit("/", 1)[1] for f in c.files]) for c in cases] == \
        [("a", ["a_0000.nii.gz", "a_0001.nii.gz"]), ("b", ["b_0000.nii.gz"])]   # c has a gap, d/e other names


def test_3d_views_cut_the_right_axes_and_labels_keep_their_values():
    z, y, x = 4, 5, 6
    vol = np.arange(z * y * x, dtype=np.float32).reshape(1, z, y, x)
    img = CaseImage(vol, {"spacing": [3.0, 1.0, 0.5]}, is_2d=False)
    info = img.view_info()
    assert info["axial"] == {"slices": 4, "size": [5, 6], "aspect": 2.0}
    assert info["coronal"] == {"slices": 5, "size": [4, 6], "aspect": 6.0}
    assert info["sagittal"] == {"slices": 6, "size": [4, 5], "aspect": 3.0}
    assert _png(img.slice_png("coronal", 2)).shape == (4, 6) and _png(img.slice_png("sagittal", 1)).shape == (4, 5)
    seg = np.zeros((z, y, x), np.uint8)
    seg[3, 2, 1] = 7            # last z is the top row of the coronal and sagittal pictures
    assert _png(label_slice_png(seg, "coronal", 2))[0, 1] == 7
    assert _png(label_slice_png(seg, "sagittal", 1))[0, 2] == 7
    assert _png(label_slice_png(seg, "axial", 3))[2, 1] == 7
    with pytest.raises(DatasetError, match="outside 0..5"):
        check_view("sagittal", 6, img.shape, False)
    with pytest.raises(DatasetError, match="axial"):
        check_view("coronal", 0, (1, 5, 6), True)


def test_rgb_2d_images_are_shown_in_colour():
    rgb = np.zeros((3, 1, 4, 4), np.float32)
    rgb[0], rgb[2, 0, 0, 0] = 255, 255
    out = _png(CaseImage(rgb, {"spacing": [999, 1, 1]}, is_2d=True).slice_png("axial", 0))
    assert out.shape == (4, 4, 3) and tuple(out[1, 1]) == (255, 0, 0) and out[0, 0, 2] == 255


def test_jobs_run_off_the_request_thread_in_order_and_report_errors():
    from nnunet_causal.viewer.jobs import JobRunner

    runner, release, order = JobRunner(), threading.Event(), []

    def slow(job):
        job.report(0.5, "halfway")
        order.append(threading.current_thread().name)
        release.wait(10)
        return {"ok": True}

    first = runner.submit("slow", None, slow)
    second = runner.submit("bad", None, lambda job: (_ for _ in ()).throw(PromptError("no such structure")))
    time.sleep(0.2)
    assert first.state == "running" and first.message == "halfway" and second.state == "queued" and runner.busy()
    release.set()
    for _ in range(100):
        if second.state not in ("queued", "running"):
            break
        time.sleep(0.02)
    assert first.as_dict()["result"] == {"ok": True} and order[0].startswith("viewer-worker")
    assert second.state == "error" and second.error == "no such structure"
    crash = runner.submit("crash", None, lambda job: 1 / 0)
    for _ in range(100):
        if crash.state == "error":
            break
        time.sleep(0.02)
    assert "internal error (ZeroDivisionError" in crash.error
    runner.shutdown()


def test_tile_progress_counts_the_sliding_window_tiles():
    import torch

    from nnunet_causal.viewer.jobs import tile_progress

    class FakePredictor:
        def _internal_predict_sliding_window_return_logits(self, data, slicers, on_device=True):
            return [self._internal_maybe_mirror_and_predict(s) for s in slicers]

        def _internal_maybe_mirror_and_predict(self, x):
            return x

    p, seen = FakePredictor(), []
    with tile_progress(p, lambda *a: seen.append(a)):
        assert p._internal_predict_sliding_window_return_logits(torch.zeros(1), [1, 2, 3]) == [1, 2, 3]
    assert seen == [(0, 3, 1), (1, 3, 1), (2, 3, 1), (3, 3, 1)]
    assert "_internal_maybe_mirror_and_predict" not in vars(p)   # restored
