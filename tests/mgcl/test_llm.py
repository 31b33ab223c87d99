"""The LLM extractor against a local OpenAI-compatible stub: schema parsing, the filter, bad endpoints."""
import json
import socket

import pytest

from nnunet_causal.errors import TextEncoderError
from nnunet_causal.mgcl.llm import LLMExtractor
from nnunet_causal.synthetic.ct3d import LABELS, PROMPTS
from nnunet_causal.text.vocabulary import vocabulary_from_labels
from tests.text.fake_llm import FakeLLM

VOCAB = vocabulary_from_labels(LABELS, PROMPTS)


def serve(answer: str):
    """The shared chat-completions stub answering ``answer``; returns (url, server, received requests)."""
    fake = FakeLLM()
    fake.answers.append(answer)
    return fake.url, fake, fake.requests


def test_answers_are_parsed_and_captions_that_miss_their_organ_are_dropped_and_counted():
    answer = "```json\n" + json.dumps({"captions": [
        {"structure": "liver", "caption": "The liver is enlarged.", "absent": False},
        {"structure": "kidney_left", "caption": "The right kidney is small."},      # names the wrong side
        {"structure": "pancreas", "caption": "It is normal."},                       # does not name its organ
        {"structure": "heart", "caption": "The heart is normal."},                   # not a dataset structure
        {"structure": "gallbladder", "caption": "The gallbladder has been removed.", "absent": True}]}) + "\n```"
    url, server, received = serve(answer)
    try:
        ex = LLMExtractor(VOCAB, url=url, model="stub-model", timeout_s=5)
        caps = ex.extract("Liver enlarged. Status post cholecystectomy.")
    finally:
        server.close()
    assert [(c.structure, c.negated, c.source) for c in caps] == [("liver", False, "llm"), ("gallbladder", True, "llm")]
    assert ex.dropped == {"does not name its structure": 2, "unknown structure": 1}
    path, request = received[0]
    assert path == "/v1/chat/completions" and request["model"] == "stub-model"
    assert "kidney_left" in request["messages"][-1]["content"] and len(request["messages"]) == 6  # few-shot


def test_off_schema_and_unreachable_endpoints_are_one_clear_error():
    url, server, _ = serve("Sure! The liver looks fine.")
    try:
        with pytest.raises(TextEncoderError, match="answered off-schema"):
            LLMExtractor(VOCAB, url=url, model="m", timeout_s=5).extract("Liver normal.")
    finally:
        server.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed again: nothing listens there
    with pytest.raises(TextEncoderError, match="is unreachable"):
        LLMExtractor(VOCAB, url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=2).extract("Liver normal.")
    with pytest.raises(TextEncoderError, match="needs a model name"):
        LLMExtractor(VOCAB, url="http://127.0.0.1:1/v1")
