"""The one chat-LLM client of the package, shared by MGCL's caption extractor (:mod:`nnunet_causal.mgcl.llm`)
and the command parser's LLM backend (:mod:`nnunet_causal.intervention.commands.llm_backends`).

Two backends with the same ``complete(messages) -> str`` method:

* :class:`HttpChatClient`: an OpenAI-compatible ``POST .../chat/completions`` endpoint (vLLM, llama.cpp server,
  Ollama, a hosted API), ``temperature 0``, through :mod:`urllib`. The URL is the API base
  (``http://host:8000/v1``) or the full ``.../chat/completions`` address. URL, model and key come from the
  arguments or the environment: ``nnUNet_causal_llm_url``, ``nnUNet_causal_llm_model`` and
  ``nnUNet_causal_llm_api_key`` (sent as a bearer token when set).
* :class:`LocalChatModel`: a local transformers causal-LM folder, loaded once, greedy decoding, the
  tokenizer's chat template when it has one.

Safety rules of the HTTP client:

* **one wall-clock deadline per call**: ``timeout`` bounds the whole call (connect, headers, body), not each
  socket read -- a watchdog shuts the connection down when the deadline passes, so a server that drips one
  byte at a time cannot hold a call longer than its deadline;
* **the key goes only where it was meant to go**: a redirect is never followed (the key would travel to the
  redirect's target; the error names the target so the user can set it as the endpoint), and the key is
  never sent over plain ``http://`` to a host other than the loopback (use ``https://``);
* **answers are checked**: ``choices[0].message.content`` must be a string (``null``, a number or a list is
  an error naming the endpoint);
* **no URL in identifiers**: :attr:`HttpChatClient.id` (which keys caches written to shared folders) holds a
  digest of the URL and the model name, never the URL, which may carry a key as a query parameter; messages
  show the URL without its user info, query and fragment.

Every failure raises the caller's error class with one message; the callers validate the *content* of the
answer against their own schemas. Written by hand: urllib is enough for one POST, and no kept library offers
both backends without pulling in a client SDK.
"""
from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import os
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import List, Optional, Type

from nnunet_causal.environment import read_variable
from nnunet_causal.errors import NnunetCausalError

# read through nnunet_causal.environment: the former upper-case names still work (deprecated)
URL_VARIABLE, MODEL_VARIABLE, KEY_VARIABLE = "nnUNet_causal_llm_url", "nnUNet_causal_llm_model", "nnUNet_causal_llm_api_key"
MAX_ANSWER_BYTES = 1_000_000


def endpoint_from_environment() -> str:
    """The endpoint URL set in the environment ('' when none)."""
    return read_variable(URL_VARIABLE, "").strip()


def redact_url(url: str) -> str:
    """``url`` without user info, query and fragment (which may carry credentials): safe to show and log."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "<unparsable URL>"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = (host or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Watchdog:
    """Shuts down every socket a call opened once the call's deadline passes (the wall-clock bound)."""

    def __init__(self):
        self.sockets, self.expired, self.lock = [], False, threading.Lock()

    def add(self, sock) -> None:
        with self.lock:
            self.sockets.append(sock)
            if self.expired:
                self._shutdown(sock)

    def expire(self) -> None:
        with self.lock:
            self.expired = True
            for sock in self.sockets:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed: nothing left to stop
            pass


def _watched(base: type, watchdog: _Watchdog) -> type:
    class Connection(base):
        def connect(self):
            super().connect()
            watchdog.add(self.sock)
    return Connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self.connection = _watched(http.client.HTTPConnection, watchdog)

    def http_open(self, req):
        return self.do_open(self.connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog):
        import ssl
        self.context = ssl.create_default_context()
        super().__init__(context=self.context)
        self.connection = _watched(http.client.HTTPSConnection, watchdog)

    def https_open(self, req):
        return self.do_open(self.connection, req, context=self.context)


class _Redirected(Exception):
    def __init__(self, code: int, location: str):
        super().__init__(location)
        self.code, self.location = code, location


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: the bearer key would travel with it to wherever it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise _Redirected(code, newurl)


class HttpChatClient:
    """``complete(messages) -> str`` through an OpenAI-compatible chat-completions endpoint.

    ``timeout`` (seconds) is the wall-clock deadline of one whole call."""

    def __init__(self, url: Optional[str] = None, model: Optional[str] = None, timeout: float = 20.0,
                 error: Type[NnunetCausalError] = NnunetCausalError, flag_hint: str = "--llm-url",
                 unreachable_hint: str = ""):
        url = (url or endpoint_from_environment()).strip()
        model = (model or read_variable(MODEL_VARIABLE, "")).strip()
        self.error = error
        if not url:
            raise error(f"no LLM endpoint: pass {flag_hint} or set ${URL_VARIABLE}")
        if not re.match(r"^https?://[^\s/]+", url):
            raise error(f"LLM endpoint '{redact_url(url)}' is not an http(s) URL")
        if not model:
            raise error(f"no LLM model name: the endpoint {redact_url(url)} needs a model name; pass --llm-model "
                        f"or set ${MODEL_VARIABLE}")
        if not timeout or timeout <= 0:
            raise error(f"LLM timeout must be positive, got {timeout}")
        parts = urllib.parse.urlsplit(url)
        if not parts.path.rstrip("/").endswith("/chat/completions"):
            parts = parts._replace(path=parts.path.rstrip("/") + "/chat/completions")
        self.url = urllib.parse.urlunsplit(parts)
        self.model, self.timeout, self.unreachable_hint = model, float(timeout), unreachable_hint

    @property
    def shown_url(self) -> str:
        """The endpoint without user info, query and fragment (for messages)."""
        return redact_url(self.url)

    @property
    def id(self) -> str:
        """Identifies endpoint and model without revealing the URL: a digest of the URL, then the model."""
        return f"endpoint-{hashlib.sha256(self.url.encode('utf-8')).hexdigest()[:16]}#{self.model}"

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        key = read_variable(KEY_VARIABLE, "").strip()
        if key:
            parts = urllib.parse.urlsplit(self.url)
            if parts.scheme != "https" and not is_loopback(parts.hostname or ""):
                raise self.error(f"refusing to send ${KEY_VARIABLE} in clear text to {self.shown_url}: use an "
                                 f"https:// endpoint (plain http is allowed only for localhost), or unset the "
                                 f"key for a server that needs none")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def complete(self, messages: List[dict]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0}).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, headers=self._headers(), method="POST")
        watchdog = _Watchdog()
        opener = urllib.request.build_opener(_NoRedirect(), _HTTPHandler(watchdog), _HTTPSHandler(watchdog))
        timer = threading.Timer(self.timeout, watchdog.expire)
        timer.daemon = True
        timer.start()
        try:
            with opener.open(request, timeout=self.timeout) as response:
                raw = response.read(MAX_ANSWER_BYTES)
        except _Redirected as e:
            raise self.error(f"LLM endpoint {self.shown_url} answered a redirect (HTTP {e.code}) to "
                             f"{redact_url(e.location)}; redirects are not followed (the API key would travel "
                             f"with them): set the final address as the endpoint") from None
        except urllib.error.HTTPError as e:
            raise self.error(f"LLM endpoint {self.shown_url} answered HTTP {e.code} ({e.reason})") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            if watchdog.expired:
                raise self._late() from None
            raise self.error(f"LLM endpoint {self.shown_url} is unreachable within {self.timeout:g} s "
                             f"({getattr(e, 'reason', e)}){self.unreachable_hint}") from None
        finally:
            timer.cancel()
        if watchdog.expired:
            raise self._late()
        return self._content(raw)

    def _late(self) -> NnunetCausalError:
        return self.error(f"LLM endpoint {self.shown_url} is unreachable within {self.timeout:g} s (no complete "
                          f"answer before the deadline){self.unreachable_hint}")

    def _content(self, raw: bytes) -> str:
        try:
            message = json.loads(raw.decode("utf-8"))["choices"][0]["message"]
            content = message["content"]
        except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
            raise self.error(f"LLM endpoint {self.shown_url} did not answer in the chat-completions format "
                             f"(choices[0].message.content): {raw[:200]!r}") from None
        if not isinstance(content, str):
            raise self.error(f"LLM endpoint {self.shown_url} answered without text: choices[0].message.content "
                             f"is {json.dumps(content)[:80]} (expected a string); the model may have refused or "
                             f"answered with a tool call")
        return content


class LocalChatModel:
    """``complete(messages) -> str`` with a local transformers causal-LM folder (loaded on first use)."""

    def __init__(self, folder: str, max_new_tokens: int = 512, device: str = "cpu",
                 error: Type[NnunetCausalError] = NnunetCausalError):
        self.folder, self.max_new_tokens, self.device, self.error = Path(folder), int(max_new_tokens), device, error
        if not (self.folder.is_dir() and (self.folder / "config.json").is_file()):
            raise error(f"local LLM folder {self.folder} does not exist or has no config.json")
        self._model = self._tokenizer = None

    @property
    def id(self) -> str:
        return str(self.folder)

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
                self._model = AutoModelForCausalLM.from_pretrained(str(self.folder), local_files_only=True)
            except (OSError, ValueError) as e:
                raise self.error(f"cannot load the local LLM in {self.folder}: {e}") from None
            self._model = self._model.to(self.device).eval()
        return self._model, self._tokenizer

    def complete(self, messages: List[dict]) -> str:
        import torch
        model, tok = self._load()
        if getattr(tok, "chat_template", None):
            prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            prompt = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant:"
        ids = tok(prompt, return_tensors="pt").to(self.device)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad)
        return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
