"""The shared LLM client: URL forms, environment, bearer key, the caller's error class, bad endpoints."""
import pytest

from nnunet_causal.errors import PromptError, TextEncoderError
from nnunet_causal.text.llm_client import HttpChatClient, LocalChatModel
from tests.text.fake_llm import FakeLLM


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
