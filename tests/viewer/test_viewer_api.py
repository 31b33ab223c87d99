"""The viewer's HTTP API on a tiny 2D text model with trained intervention weights: prompts (as
nnUNetv2_predict_text), commands, undo / redo, save; the token, host and header checks; no path escapes."""
from __future__ import annotations

import io
import json
import time

import numpy as np
from PIL import Image


from tests.viewer.conftest import wait_for_job

H = {"X-Viewer": "1"}


def _client(model, images, tmp_path, **kwargs):
    from fastapi.testclient import TestClient

    from nnunet_causal.viewer.app import create_app
    from nnunet_causal.viewer.serve_cli import build_config

    host = kwargs.pop("host", "127.0.0.1")
    config = build_config(str(model), str(images), str(tmp_path / "saved"), host=host, port=8765, **kwargs)
    return TestClient(create_app(config), base_url=f"http://{host}:8765"), config


def _run(client, path, body=None, headers=H):
    return wait_for_job(client, client.post(path, json=body, headers=headers).json(), headers)


def _mask(client, case="tiny_006"):
    r = client.get(f"/api/cases/{case}/mask/axial/0", headers=H)
    assert r.status_code == 200
    return np.asarray(Image.open(io.BytesIO(r.content)))


def test_prompts_commands_undo_redo_and_save(viewer_model, env, tmp_path):
    from nnunet_causal.inference.text_predictor import nnUNetTextPredictor
    from nnunet_causal.text.prompt_file import parse_prompts

    model, images, _ = viewer_model
    client, config = _client(model, images, tmp_path)
    assert [c["case"] for c in client.get("/api/cases", headers=H).json()["cases"]] == ["tiny_006", "tiny_007"]
    assert client.post("/api/cases/tiny_006/open", headers=H).json()["has_mask"] is False

    job = _run(client, "/api/cases/tiny_006/prompts", {"prompts": ["red spot", "marker"]})
    assert job["state"] == "done", job
    layers = job["result"]["layers"]
    assert [(l["prompt"], l["trained_structures"], l["resolution"]) for l in layers] == \
        [("red spot", ["lesion"], "knowledge"), ("marker", ["marker"], "exact")]
    base = _mask(client)
    assert base.shape == (32, 32) and set(np.unique(base)) <= {0, 1, 2}
    assert layers[0]["voxel_count"] == int((base == 1).sum()) > 0
    assert layers[0]["present"] is None and "no presence head" in layers[0]["presence_calibration"]

    # the same label map as nnU-Net's predictor with these prompts (what nnUNetv2_predict_text writes)
    p = nnUNetTextPredictor(use_mirroring=True, device=__import__("torch").device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model), (0,), "checkpoint_final.pth")
    p.set_prompts(parse_prompts(["red spot", "marker"]))
    image = np.asarray(Image.open(images / "tiny_006_0000.png")).transpose(2, 0, 1)[:, None].astype(np.float32)
    stock = p.predict_single_npy_array(image, {"spacing": (999, 1, 1)})
    assert np.array_equal(stock[0], base)

    job = _run(client, "/api/cases/tiny_006/command", {"command": "make the lesion much bigger"})
    assert job["state"] == "done", job
    edited = _mask(client)
    assert (edited == 1).sum() > (base == 1).sum()
    assert job["result"]["edit"]["voxels_changed"]["lesion"] == int(((edited == 1) != (base == 1)).sum())
    assert job["result"]["can_undo"] and job["result"]["layers"][0]["voxels_changed_by_edits"] > 0

    assert _run(client, "/api/cases/tiny_006/undo")["result"]["can_redo"]
    assert np.array_equal(_mask(client), base)            # undo gives the prediction back bit for bit
    state = _run(client, "/api/cases/tiny_006/redo")["result"]
    assert np.array_equal(_mask(client), edited) and state["edit_log"][0]["undone"] is False

    saved = _run(client, "/api/cases/tiny_006/save")["result"]["saved"]
    assert np.array_equal(np.asarray(Image.open(saved["mask"])), edited)
    sidecar = json.loads(open(saved["prompts"]).read())
    assert sidecar["edited"] and sidecar["prompts"][0]["voxel_count"] == int((edited == 1).sum())
    log = json.loads(open(saved["edits"]).read())
    assert log["applied"] == 1 and log["edits"][0]["command"] == "make the lesion much bigger"
    assert not list((tmp_path / "saved").glob(".tmp_*"))   # atomic writes leave no temporary file
    r = client.get("/api/cases/tiny_006/download/mask", headers=H)
    assert r.status_code == 200 and r.content == open(saved["mask"], "rb").read()


def test_the_page_is_answered_while_a_prediction_runs(viewer_model, env, tmp_path, monkeypatch):
    import threading

    from nnunet_causal.viewer.case_state import CaseState

    model, images, _ = viewer_model
    client, _ = _client(model, images, tmp_path)
    client.post("/api/cases/tiny_007/open", headers=H)
    release = threading.Event()

    def slow_prediction(self, prompts, open_vocabulary, report):
        report(0.3, "predicting: pass 1, tile 1 of 3")
        release.wait(20)
        return self.state()

    monkeypatch.setattr(CaseState, "predict_prompts", slow_prediction)
    job = client.post("/api/cases/tiny_007/prompts", json={"prompts": ["lesion"]}, headers=H).json()
    try:
        for _ in range(100):
            time.sleep(0.02)
            running = client.get(f"/api/jobs/{job['id']}", headers=H).json()
            if running["state"] == "running":
                break
        assert running["progress"] == 0.3 and "tile 1 of 3" in running["message"]
        assert client.get("/api/cases/tiny_007/image/axial/0", headers=H).status_code == 200
        assert client.get("/api/info", headers=H).json()["busy"] is True
    finally:
        release.set()
    assert wait_for_job(client, job, H)["state"] == "done"


def test_user_mistakes_become_messages_not_tracebacks(viewer_model, env, tmp_path):
    model, images, _ = viewer_model
    client, _ = _client(model, images, tmp_path)
    client.post("/api/cases/tiny_007/open", headers=H)
    job = _run(client, "/api/cases/tiny_007/prompts", {"prompts": ["xqzv wobble"]})
    assert job["state"] == "error" and "does not name any known structure" in job["error"]
    job = _run(client, "/api/cases/tiny_007/undo")
    assert job["state"] == "error" and "nothing to undo" in job["error"]
    job = _run(client, "/api/cases/tiny_007/command", {"command": "   "})
    assert job["state"] == "error" and "empty command" in job["error"]
    assert client.post("/api/cases/tiny_007/command", json={"command": "x" * 1001}, headers=H).status_code == 422
    assert client.post("/api/cases/tiny_007/prompts", json={"prompts": ["a"] * 33}, headers=H).status_code == 422
    job = _run(client, "/api/cases/tiny_007/save")
    assert job["state"] == "error" and "nothing to save" in job["error"]


def test_requests_need_the_header_the_host_and_no_path_escapes(viewer_model, env, tmp_path):
    model, images, _ = viewer_model
    client, _ = _client(model, images, tmp_path)
    assert client.get("/api/cases").status_code == 403                      # no X-Viewer header
    assert client.get("/api/cases", headers={**H, "Host": "evil.example:8765"}).status_code == 403   # rebinding
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    for path in ("/api/cases/..%2F..%2Fetc%2Fpasswd/open", "/api/cases/tiny_006_0000.png/open",
                 "/static/..%2Fapp.py", "/static/index.html", "/api/cases/tiny_006/download/..%2F..%2Fmodel"):
        assert client.request("POST" if path.endswith("open") else "GET", path, headers=H).status_code == 404, path
    client.post("/api/cases/tiny_006/open", headers=H)
    assert client.get("/api/cases/tiny_006/image/sagittal/0", headers=H).status_code == 400   # 2D: axial only
    assert client.get("/api/cases/tiny_006/image/axial/1", headers=H).status_code == 400
    assert client.get("/api/cases/tiny_006/download/edits", headers=H).status_code == 404    # not saved yet


def test_a_token_is_required_and_checked_on_every_request(viewer_model, env, tmp_path):
    model, images, _ = viewer_model
    client, config = _client(model, images, tmp_path, host="0.0.0.0")
    assert config.token and len(config.token) >= 24 and config.allowed_hosts == []  # generated for 0.0.0.0
    assert client.get("/").status_code == 401
    assert client.get("/api/cases", headers={**H, "X-Viewer-Token": "wrong-token-value"}).status_code == 401
    page = client.get(f"/?token={config.token}")
    assert page.status_code == 200 and "samesite=strict" in page.headers["set-cookie"].lower()
    assert client.get("/api/cases", headers=H).status_code == 200               # the cookie now
    client.cookies.clear()
    assert client.get("/api/cases", headers={**H, "X-Viewer-Token": config.token}).status_code == 200
    assert client.get("/static/viewer.js").status_code == 401


def test_serve_command_errors(viewer_model, env, tmp_path, monkeypatch, capsys):
    import sys

    from nnunet_causal.cli import main

    model, images, _ = viewer_model
    assert main(["serve", "-m", str(model), "-i", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", "-m", str(model), "-i", str(images), "--token", "short"]) == 2
    assert "12 characters" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "uvicorn", None)        # as if the [viewer] extra were not installed
    assert main(["serve", "-m", str(model), "-i", str(images)]) == 2
    assert "nnunet_causal[viewer]" in capsys.readouterr().err
