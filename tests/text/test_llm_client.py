"""The shared LLM client: URL forms, environment, bearer key, the caller's error class, bad endpoints, and
hostile ones: redirects, clear-text keys, dripping servers, non-text content, URLs in identifiers."""
import threading
import time

import pytest

from nnunet_causal.errors import PromptError, TextEncoderError
from nnunet_causal.text.llm_client import HttpChatClient, LocalChatModel, redact_url
from tests.text.fake_llm import FakeLLM
from tests.text.http_probe import ProbeServer, chat, drip, redirect


@pytest.fixture
def llm():
    fake = FakeLLM()
    yield fake
    fake.close()


def test_base_url_and_full_address_reach_the_same_endpoint_with_the_key_from_the_environment(llm, monkeypatch):
    monkeypatch.setenv("NNUNET_CAUSAL_LLM_API_KEY", "secret-key")
    llm.answers += ["one", "two"]
    assert HttpChatClient(llm.url, "m", timeout=5).complete([{"role": "user", "content": "hi"}]) == "one"
    assert HttpChatClient(llm.url + "/chat/completions", "m", timeout=5).complete([]) == "two"
    assert [p for p, _ in llm.requests] == ["/v1/chat/completions"] * 2
    assert llm.requests[0][1] == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    assert all(h.get("Authorization") == "Bearer secret-key" for h in llm.headers)


def test_url_and_model_come_from_the_environment(llm, monkeypatch):
    monkeypatch.setenv("NNUNET_CAUSAL_LLM_URL", llm.url)
    monkeypatch.setenv("NNUNET_CAUSAL_LLM_MODEL", "env-model")
    monkeypatch.delenv("NNUNET_CAUSAL_LLM_API_KEY", raising=False)
    llm.answers.append("ok")
    client = HttpChatClient()
    assert client.complete([]) == "ok" and llm.requests[0][1]["model"] == "env-model"
    assert "Authorization" not in llm.headers[0]


@pytest.mark.parametrize("error", [PromptError, TextEncoderError])
def test_failures_raise_the_callers_error_class(llm, monkeypatch, error):
    monkeypatch.delenv("NNUNET_CAUSAL_LLM_URL", raising=False)
    monkeypatch.delenv("NNUNET_CAUSAL_LLM_MODEL", raising=False)
    with pytest.raises(error, match="no LLM endpoint"):
        HttpChatClient(error=error)
    with pytest.raises(error, match="not an http"):
        HttpChatClient("ftp://host/v1", "m", error=error)
    with pytest.raises(error, match="no LLM model name"):
        HttpChatClient(llm.url, error=error)
    llm.answers.append(503)
    with pytest.raises(error, match="HTTP 503"):
        HttpChatClient(llm.url, "m", timeout=5, error=error).complete([])
    llm.delay = 1.0
    llm.answers.append("late")
    with pytest.raises(error, match="unreachable within 0.3 s.*HINT"):
        HttpChatClient(llm.url, "m", timeout=0.3, error=error, unreachable_hint="; HINT").complete([])
    with pytest.raises(error, match="no config.json"):
        LocalChatModel(str(llm.url.replace("http://", "/nonexistent/")), error=error)


# ---------------------------------------------------------------- hostile or broken endpoints
@pytest.fixture
def probe():
    server = ProbeServer()
    yield server
    server.close()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_refused_and_the_key_never_reaches_it(probe, monkeypatch, code):
    monkeypatch.setenv("NNUNET_CAUSAL_LLM_API_KEY", "secret-key")
    other = ProbeServer()
    try:
        other.script.append(chat("stolen answer"))
        target = f"http://localhost:{other.port}/v1/chat/completions?token=abc"
        probe.script.append(redirect(target, code))
        with pytest.raises(PromptError, match=rf"redirect \(HTTP {code}\) to http://localhost:{other.port}/v1/chat/"
                                              r"completions; redirects are not followed") as info:
            HttpChatClient(probe.url, "m", timeout=5, error=PromptError).complete([])
        assert "token=abc" not in str(info.value)
        assert other.requests == []                            # the other host saw nothing, key or not
        assert probe.requests[0]["headers"]["Authorization"] == "Bearer secret-key"  # the endpoint itself did
    finally:
        other.close()


@pytest.mark.parametrize("url", ["http://llm.example.org/v1", "http://10.1.2.3:8000/v1", "http://[2001:db8::1]/v1"])
def test_the_key_is_never_sent_in_clear_text_to_a_remote_host(monkeypatch, url):
    monkeypatch.setenv("NNUNET_CAUSAL_LLM_API_KEY", "secret-key")
    with pytest.raises(TextEncoderError, match="refusing to send .*nnUNet_causal_llm_api_key in clear text .*https"):
        HttpChatClient(url, "m", timeout=5, error=TextEncoderError).complete([])


def test_plain_http_with_a_key_is_allowed_on_the_loopback(probe, monkeypatch):
    monkeypatch.setenv("NNUNET_CAUSAL_LLM_API_KEY", "secret-key")
    probe.script.append(chat("fine"))
    assert HttpChatClient(probe.url.replace("127.0.0.1", "localhost"), "m", timeout=5).complete([]) == "fine"


@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
def test_one_wall_clock_deadline_bounds_a_dripping_server(probe, in_headers):
    stop = threading.Event()
    probe.script.append(drip(40, 0.3, stop, in_headers))       # 40+ bytes, 0.3 s apart: 12 s or more
    start = time.monotonic()
    try:
        with pytest.raises(PromptError, match="unreachable within 0.5 s"):
            HttpChatClient(probe.url, "m", timeout=0.5, error=PromptError).complete([])
        elapsed = time.monotonic() - start
    finally:
        stop.set()
    assert elapsed < 6.0, f"a 0.5 s call was held {elapsed:.1f} s by a server dripping a byte every 0.3 s"


@pytest.mark.parametrize("content", [None, 3, ["a"], {"text": "x"}])
def test_content_that_is_not_text_is_one_clear_error(probe, content):
    probe.script.append(chat(content))
    with pytest.raises(TextEncoderError, match=r"answered without text: choices\[0\]\.message\.content is "):
        HttpChatClient(probe.url, "m", timeout=5, error=TextEncoderError).complete([])


def test_the_id_and_the_messages_never_carry_the_url_query_or_user_info(probe):
    url = f"http://127.0.0.1:{probe.port}/v1?api_key=SECRET123"
    client = HttpChatClient(url, "m", timeout=5, error=PromptError)
    assert "SECRET123" not in client.id and "127.0.0.1" not in client.id and client.id.endswith("#m")
    assert client.id != HttpChatClient(probe.url, "m", timeout=5).id
    probe.script.append(lambda h: (h.send_response(500), h.send_header("Content-Length", "0"), h.end_headers()))
    with pytest.raises(PromptError, match="HTTP 500") as info:
        client.complete([])
    assert "SECRET123" not in str(info.value)
    assert redact_url("https://u:pw@h.org:8443/v1?k=SECRET#f") == "https://h.org:8443/v1"
    assert probe.requests[0]["path"] == "/v1/chat/completions?api_key=SECRET123"  # the query still reaches it
