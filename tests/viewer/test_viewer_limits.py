"""The viewer under load and hostile requests, on a fake model (no training): body and prompt limits at the
door, the bounded job queue answering 429, a slow case load that does not hold up other requests, and the
security headers on every kind of answer."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from nnunet_causal.viewer import app as viewer_app  # noqa: E402
from nnunet_causal.viewer.app import HEADERS, MAX_BODY_BYTES, ViewerConfig, create_app  # noqa: E402
from nnunet_causal.viewer.case_state import MAX_PROMPT_CHARS, MAX_PROMPTS  # noqa: E402
from nnunet_causal.viewer.cases import CaseFiles  # noqa: E402
from nnunet_causal.viewer.jobs import MAX_QUEUED, JobRunner, QueueFull  # noqa: E402

H = {"X-Viewer": "1"}


class FakeModel:
    def info(self):
        return {"model": "fake"}


class FakeState:
    """A case that opens at once, or waits for ``gate`` (a large volume being read)."""
    gate: threading.Event = None
    started = threading.Event()
    calls: list = []

    def __init__(self, model, files):
        self.case = files.case
        FakeState.started.set()
        if FakeState.gate is not None and files.case == "big":
            assert FakeState.gate.wait(60), "the test never released the slow load"

    def state(self):
        return {"case": self.case}

    def predict_prompts(self, prompts, open_vocabulary, report):
        FakeState.calls.append(list(prompts))
        release = FakeState.gate
        if release is not None:
            release.wait(60)
        return {"prompts": prompts}


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setattr(viewer_app, "CaseState", FakeState)
    FakeState.gate, FakeState.calls = None, []
    FakeState.started = threading.Event()
    cases = {c: CaseFiles(c, (f"{c}_0000.nii.gz",)) for c in ("small", "big")}
    config = ViewerConfig(FakeModel(), cases, tmp_path, tmp_path / "out", None,
                          [f"{h}:8765" for h in ("127.0.0.1", "localhost")])
    with TestClient(create_app(config), base_url="http://127.0.0.1:8765") as c:
        yield c
    if FakeState.gate is not None:
        FakeState.gate.set()


def assert_security_headers(response):
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code)


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(client):
    big = b'{"prompts": ["' + b"a" * (MAX_BODY_BYTES + 10) + b'"]}'
    r = client.post("/api/cases/small/prompts", content=big, headers={**H, "Content-Type": "application/json"})
    assert r.status_code == 413 and "request body over" in r.text
    assert client.get("/api/info", headers=H).json()["busy"] is False and FakeState.calls == []
    assert_security_headers(r)
    r = client.post("/api/cases/small/prompts", content=b"{}", headers={**H, "Content-Length": "x1"})
    assert r.status_code in (400, 413)


def test_a_body_without_a_length_is_refused(client):
    def chunks():
        yield b'{"prompts": ["liver"]}'
    r = client.post("/api/cases/small/prompts", content=chunks(), headers={**H, "Content-Type": "application/json"})
    assert r.status_code == 411 and "Content-Length" in r.text


def test_prompt_and_command_lengths_are_checked_when_the_request_is_parsed(client):
    too_long = client.post("/api/cases/small/prompts", json={"prompts": ["a" * (MAX_PROMPT_CHARS + 1)]}, headers=H)
    too_many = client.post("/api/cases/small/prompts", json={"prompts": ["liver"] * (MAX_PROMPTS + 1)}, headers=H)
    from nnunet_causal.intervention.commands.schema import MAX_COMMAND_CHARS
    command = client.post("/api/cases/small/command", json={"command": "x" * (MAX_COMMAND_CHARS + 1)}, headers=H)
    assert [too_long.status_code, too_many.status_code, command.status_code] == [422, 422, 422]
    assert FakeState.calls == [] and client.get("/api/info", headers=H).json()["busy"] is False  # nothing queued
    ok = client.post("/api/cases/small/prompts", json={"prompts": ["a" * MAX_PROMPT_CHARS]}, headers=H)
    assert ok.status_code == 200 and ok.json()["state"] in ("queued", "running", "done")


def test_a_full_queue_answers_429_with_retry_after(client):
    FakeState.gate = threading.Event()
    states = [client.post("/api/cases/small/prompts", json={"prompts": [f"p{i}"]}, headers=H)
              for i in range(MAX_QUEUED + 1)]                   # one runs (held by the gate), MAX_QUEUED wait
    assert [r.status_code for r in states] == [200] * (MAX_QUEUED + 1)
    r = client.post("/api/cases/small/prompts", json={"prompts": ["one more"]}, headers=H)
    assert r.status_code == 429 and r.headers["Retry-After"] == "2" and "busy" in r.json()["error"]
    assert_security_headers(r)
    FakeState.gate.set()


def test_the_job_runner_bounds_its_queue():
    runner, gate = JobRunner(max_queued=2), threading.Event()
    try:
        first = runner.submit("x", None, lambda job: gate.wait(60))
        deadline = threading.Event()
        for _ in range(600):                                   # until the worker has taken the first job
            if first.state == "running":
                break
            deadline.wait(0.1)
        runner.submit("x", None, lambda job: 1)
        runner.submit("x", None, lambda job: 2)
        with pytest.raises(QueueFull, match="2 jobs are waiting"):
            runner.submit("x", None, lambda job: 3)
    finally:
        gate.set()
        runner.shutdown()


def test_opening_a_large_case_does_not_hold_up_other_requests(client):
    FakeState.gate = threading.Event()
    answers = {}
    opener = threading.Thread(target=lambda: answers.update(big=client.post("/api/cases/big/open", headers=H)))
    opener.start()
    assert FakeState.started.wait(60)                          # the big case is being read now
    assert client.post("/api/cases/small/open", headers=H).json() == {"case": "small"}
    assert client.get("/api/cases/small/state", headers=H).status_code == 200
    assert client.get("/api/info", headers=H).status_code == 200
    assert opener.is_alive()                                   # ... and still is: nothing above waited for it
    FakeState.gate.set()
    opener.join(60)
    assert answers["big"].status_code == 200 and answers["big"].json() == {"case": "big"}


@pytest.mark.parametrize("method, path, headers, status", [
    ("get", "/", {}, 200),
    ("get", "/static/viewer.js", {}, 200),
    ("get", "/static/../../etc/passwd", {}, 404),
    ("get", "/api/info", H, 200),
    ("get", "/api/info", {}, 403),                             # no X-Viewer header
    ("get", "/api/cases/nope/state", H, 404),
    ("get", "/api/cases/small/state", H, 409),                 # not open
    ("get", "/api/jobs/999", H, 404),
])
def test_every_answer_carries_the_security_headers(client, method, path, headers, status):
    r = getattr(client, method)(path, headers=headers)
    assert r.status_code == status
    assert_security_headers(r)


def test_a_foreign_host_and_a_wrong_token_are_refused_with_the_headers(tmp_path, monkeypatch):
    monkeypatch.setattr(viewer_app, "CaseState", FakeState)
    cases = {"small": CaseFiles("small", ("small_0000.nii.gz",))}
    loopback = ViewerConfig(FakeModel(), cases, tmp_path, tmp_path, None, ["127.0.0.1:8765"])
    with TestClient(create_app(loopback), base_url="http://evil.example:8765") as c:
        r = c.get("/api/info", headers=H)
    assert r.status_code == 403 and "own address" in r.text
    assert_security_headers(r)
    guarded = ViewerConfig(FakeModel(), cases, tmp_path, tmp_path, "a-token-of-24-characters", [])
    with TestClient(create_app(guarded), base_url="http://10.0.0.2:8765") as c:
        wrong = c.get("/api/info", headers={**H, "X-Viewer-Token": "wrong"})
        right = c.get("/api/info", headers={**H, "X-Viewer-Token": "a-token-of-24-characters"})
        page = c.get("/?token=a-token-of-24-characters")
    assert wrong.status_code == 401 and right.status_code == 200
    assert_security_headers(wrong)
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert Path(tmp_path).is_dir()
