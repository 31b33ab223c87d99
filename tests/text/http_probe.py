"""A local HTTP server whose answers are functions of the request (threads, loopback only, no internet).

Each entry of :attr:`ProbeServer.script` is called with the request handler and writes the whole answer:
use :func:`chat`, :func:`redirect` or :func:`drip`, or any function of your own."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def chat(content):
    """A chat-completions answer whose ``choices[0].message.content`` is ``content`` (any JSON value)."""
    def answer(handler):
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


def redirect(location: str, code: int = 302):
    def answer(handler):
        handler.send_response(code)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


def drip(n_bytes: int, every_s: float, stop: threading.Event, in_headers: bool = False):
    """Send the answer one byte every ``every_s`` seconds (in the body, or in the header block), until
    ``n_bytes`` are out or ``stop`` is set."""
    def answer(handler):
        body = json.dumps({"choices": [{"message": {"content": "x" * n_bytes}}]}).encode()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"X-Pad: {'p' * n_bytes}\r\n\r\n").encode()
        slow, fast = (head, body) if in_headers else (body, head)
        try:
            if not in_headers:
                handler.wfile.write(fast)
            for i in range(len(slow)):
                if stop.is_set():
                    return
                handler.wfile.write(slow[i:i + 1])
                handler.wfile.flush()
                time.sleep(every_s)
            if in_headers:
                handler.wfile.write(fast)
        except OSError:  # the client hung up: the point of the probe
            return
    return answer


class ProbeServer:
    """Serves :attr:`script` answers in order and records each request's path, headers and body."""

    def __init__(self, host: str = "127.0.0.1"):
        self.script, self.requests = [], []
        probe = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                probe.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                       "body": self.rfile.read(length) if length else b""})
                probe.script.pop(0)(self)
                self.close_connection = True

            do_POST = do_GET = _serve  # noqa: N815 (http.server's names)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
