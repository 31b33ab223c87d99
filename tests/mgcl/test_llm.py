"""The LLM extractor against a local OpenAI-compatible stub: schema parsing, the filter, yes/no fields, answers
without text, bad endpoints, and no URL in the cache key."""
import json
import socket

import pytest

from nnunet_causal.errors import TextEncoderError
from nnunet_causal.mgcl.llm import LLMExtractor, parse_answer
from nnunet_causal.synthetic.ct3d import LABELS, PROMPTS
from nnunet_causal.text.vocabulary import vocabulary_from_labels
from tests.text.fake_llm import FakeLLM
from tests.text.http_probe import ProbeServer, chat

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


def test_absent_written_as_a_string_is_read_as_what_it_says():
    answer = json.dumps({"captions": [
        {"structure": "liver", "caption": "The liver is enlarged.", "absent": "false"},
        {"structure": "spleen", "caption": "The spleen is not seen.", "absent": "true"},
        {"structure": "pancreas", "caption": "The pancreas is normal.", "absent": "No"},
        {"structure": "gallbladder", "caption": "The gallbladder has been removed.", "absent": 1},
        {"structure": "kidney_left", "caption": "The left kidney is small.", "absent": "maybe"}]})
    url, server, _ = serve(answer)
    try:
        ex = LLMExtractor(VOCAB, url=url, model="m", timeout_s=5)
        caps = ex.extract("Liver enlarged.")
    finally:
        server.close()
    assert [(c.structure, c.negated) for c in caps] == [("liver", False), ("spleen", True), ("pancreas", False),
                                                       ("gallbladder", True)]
    assert ex.dropped == {"'absent' is not true or false": 1}


@pytest.mark.parametrize("content", [None, 7, [{"type": "text", "text": "{}"}]])
def test_an_answer_without_text_is_one_clear_error_not_a_traceback(content):
    probe = ProbeServer()
    probe.script.append(chat(content))
    try:
        with pytest.raises(TextEncoderError, match=r"answered without text: choices\[0\]\.message\.content is"):
            LLMExtractor(VOCAB, url=probe.url, model="m", timeout_s=5).extract("Liver normal.")
    finally:
        probe.close()
    with pytest.raises(TextEncoderError, match="answered without text"):
        parse_answer(None, "LLM x")


def test_the_extractor_id_that_keys_the_shared_caption_cache_holds_no_url():
    url = "http://127.0.0.1:9/v1?api_key=SECRET"
    ex = LLMExtractor(VOCAB, url=url, model="m", timeout_s=5)
    assert "SECRET" not in ex.id and "127.0.0.1" not in ex.id and ex.id.startswith("llm:endpoint-")
    assert ex.id != LLMExtractor(VOCAB, url="http://127.0.0.1:9/v2", model="m").id
