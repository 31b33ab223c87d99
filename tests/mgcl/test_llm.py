"""The LLM extractor against a local OpenAI-compatible stub: schema parsing, the filter, bad endpoints."""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from nnunet_causal.errors import TextEncoderError
from nnunet_causal.mgcl.llm import LLMExtractor
from nnunet_causal.synthetic.ct3d import LABELS, PROMPTS
from nnunet_causal.text.vocabulary import vocabulary_from_labels

VOCAB = vocabulary_from_labels(LABELS, PROMPTS)


def serve(answer: str):
    """A chat-completions stub answering ``answer``; returns (url, server, received requests)."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            received.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/v1", server, received


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
        server.shutdown()
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
        server.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed again: nothing listens there
    with pytest.raises(TextEncoderError, match="is unreachable"):
        LLMExtractor(VOCAB, url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=2).extract("Liver normal.")
    with pytest.raises(TextEncoderError, match="needs a model name"):
        LLMExtractor(VOCAB, url="http://127.0.0.1:1/v1")
