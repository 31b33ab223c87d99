"""The one chat-LLM client of the package, shared by MGCL's caption extractor (:mod:`nnunet_causal.mgcl.llm`)
and the command parser's LLM backend (:mod:`nnunet_causal.intervention.commands.llm_backends`).

Two backends with the same ``complete(messages) -> str`` method:

* :class:`HttpChatClient`: an OpenAI-compatible ``POST .../chat/completions`` endpoint (vLLM, llama.cpp server,
  Ollama, a hosted API), ``temperature 0``, through :mod:`urllib` with a timeout. The URL is the API base
  (``http://host:8000/v1``) or the full ``.../chat/completions`` address. URL, model and key come from the
  arguments or the environment: ``NNUNET_CAUSAL_LLM_URL``, ``NNUNET_CAUSAL_LLM_MODEL`` and
  ``NNUNET_CAUSAL_LLM_API_KEY`` (sent as a bearer token when set).
* :class:`LocalChatModel`: a local transformers causal-LM folder, loaded once, greedy decoding, the
  tokenizer's chat template when it has one.

Every failure (no URL, not http(s), unreachable within the timeout, HTTP error, an answer that is not a chat
completion, a folder that does not load) raises the caller's error class with one message; the callers
validate the *content* of the answer against their own schemas. Written by hand: urllib is enough for one
POST, and no kept library offers both backends without pulling in a client SDK.
"""
from __future__ import annotations

import json
import os
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional, Type

from nnunet_causal.errors import NnunetCausalError

URL_VARIABLE, MODEL_VARIABLE, KEY_VARIABLE = "NNUNET_CAUSAL_LLM_URL", "NNUNET_CAUSAL_LLM_MODEL", "NNUNET_CAUSAL_LLM_API_KEY"
MAX_ANSWER_BYTES = 1_000_000


def endpoint_from_environment() -> str:
    """The endpoint URL set in the environment ('' when none)."""
    return os.environ.get(URL_VARIABLE, "").strip()


class HttpChatClient:
    """``complete(messages) -> str`` through an OpenAI-compatible chat-completions endpoint."""

    def __init__(self, url: Optional[str] = None, model: Optional[str] = None, timeout: float = 20.0,
                 error: Type[NnunetCausalError] = NnunetCausalError, flag_hint: str = "--llm-url",
                 unreachable_hint: str = ""):
        url = (url or endpoint_from_environment()).strip()
        model = (model or os.environ.get(MODEL_VARIABLE, "")).strip()
        self.error = error
        if not url:
            raise error(f"no LLM endpoint: pass {flag_hint} or set ${URL_VARIABLE}")
        if not re.match(r"^https?://[^\s/]+", url):
            raise error(f"LLM endpoint '{url}' is not an http(s) URL")
        if not model:
            raise error(f"no LLM model name: the endpoint {url} needs a model name; pass --llm-model or set ${MODEL_VARIABLE}")
        if not timeout or timeout <= 0:
            raise error(f"LLM timeout must be positive, got {timeout}")
        self.url = url if url.rstrip("/").endswith("/chat/completions") else url.rstrip("/") + "/chat/completions"
        self.model, self.timeout, self.unreachable_hint = model, float(timeout), unreachable_hint

    @property
    def id(self) -> str:
        return f"{self.url}#{self.model}"

    def complete(self, messages: List[dict]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0}).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(KEY_VARIABLE, "").strip()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read(MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as e:
            raise self.error(f"LLM endpoint {self.url} answered HTTP {e.code} ({e.reason})") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as e:
            raise self.error(f"LLM endpoint {self.url} is unreachable within {self.timeout:g} s "
                             f"({getattr(e, 'reason', e)}){self.unreachable_hint}") from None
        try:
            return json.loads(raw.decode("utf-8"))["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
            raise self.error(f"LLM endpoint {self.url} did not answer in the chat-completions format "
                             f"(choices[0].message.content): {raw[:200]!r}") from None


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
