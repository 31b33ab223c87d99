"""A local OpenAI-compatible /v1/chat/completions server for the LLM tests (no internet)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLM:
    """A local /v1/chat/completions server answering from a script (content strings, or ints = HTTP status)."""

    def __init__(self):
        self.answers, self.requests, self.headers, self.delay = [], [], [], 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                fake.requests.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
                fake.headers.append(dict(self.headers))
                time.sleep(fake.delay)
                answer = fake.answers.pop(0)
                if isinstance(answer, int):
                    self.send_response(answer)
                    self.end_headers()
                    return
                body = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
