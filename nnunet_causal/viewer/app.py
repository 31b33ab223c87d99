"""The viewer's web application (FastAPI): the page, its static files and a small JSON / PNG API.

Security (the server may hold patient images):
- every request passes :meth:`Guard.check`: with a token (required for any non-loopback host) the request must
  carry it (header ``X-Viewer-Token``, or the ``?token=`` of the first page load, which sets a SameSite=Strict
  HttpOnly cookie); on loopback without a token the ``Host`` header must name the loopback address (a
  DNS-rebinding page cannot reach the API);
- API calls must carry the ``X-Viewer: 1`` header, which a foreign web page cannot add without a CORS
  pre-flight this server never grants (no cross-site form posts);
- files: cases are looked up by name in the listing made at start-up, downloads by a fixed kind, static files
  by a fixed table -- no request text is ever joined into a path;
- prompts and commands are untrusted text: length-limited at the door (a request body over
  :data:`MAX_BODY_BYTES`, or without a length, is refused before it is read; each prompt and command is checked
  against its limit when the request is parsed), parsed by the offline grounding / command parser, never
  evaluated;
- load: the job queue is bounded (HTTP 429 with ``Retry-After`` when full), and opening a case reads its
  volume outside the lock that the other requests take, so a large volume does not hold up the rest.
"""
from __future__ import annotations

import hmac
import threading
from contextlib import asynccontextmanager
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Dict, List, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, StringConstraints

from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.intervention.commands.schema import MAX_COMMAND_CHARS
from nnunet_causal.viewer.case_state import MAX_PROMPT_CHARS, MAX_PROMPTS, CaseState
from nnunet_causal.viewer.cases import CaseFiles, check_view, label_slice_png
from nnunet_causal.viewer.jobs import JobRunner, QueueFull

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"viewer.js": "text/javascript", "viewer.css": "text/css"}
COOKIE = "nnunet_causal_viewer_token"
OPEN_CASES = 4   # cases kept in memory (their sessions cache encoder features)
MAX_BODY_BYTES = 64 * 1024   # the largest request body: 32 prompts of 200 characters need under 8 KiB
RETRY_AFTER_S = 2
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Referrer-Policy": "no-referrer",
           "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                                      "frame-ancestors 'none'"}


@dataclass
class ViewerConfig:
    model: object                       # ModelContext
    cases: Dict[str, CaseFiles]
    images_folder: Path
    out_folder: Path
    token: Optional[str] = None
    allowed_hosts: List[str] = field(default_factory=list)   # empty: any Host (a token guards the server)


class PromptRequest(BaseModel):
    prompts: List[Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS)]] = Field(max_length=MAX_PROMPTS)
    open_vocabulary: bool = False


class CommandRequest(BaseModel):
    command: str = Field(max_length=MAX_COMMAND_CHARS)


def body_refusal(request: Request) -> Optional[Response]:
    """413 for a body over :data:`MAX_BODY_BYTES`, 411 for a body without a ``Content-Length`` (so the size is
    known before a byte is read); None otherwise."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    length = request.headers.get("content-length")
    if length is None:
        if request.headers.get("transfer-encoding"):
            return Response("send the request body with a Content-Length", status_code=411)
        return None
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        return Response(f"request body over {MAX_BODY_BYTES} bytes", status_code=413)
    return None


class Guard:
    def __init__(self, token: Optional[str], allowed_hosts: List[str]):
        self.token, self.allowed_hosts = token, allowed_hosts

    def check(self, request: Request) -> Optional[Response]:
        if self.allowed_hosts and request.headers.get("host", "") not in self.allowed_hosts:
            return Response("this viewer only answers on its own address", status_code=403)
        if self.token is not None:
            given = (request.headers.get("x-viewer-token") or request.query_params.get("token")
                     or request.cookies.get(COOKIE) or "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return Response("missing or wrong token: open the address the server printed", status_code=401)
        if request.url.path.startswith("/api/") and request.headers.get("x-viewer") != "1":
            return Response("API calls need the X-Viewer: 1 header", status_code=403)
        return None


def create_app(config: ViewerConfig) -> FastAPI:
    guard, jobs = Guard(config.token, config.allowed_hosts), JobRunner()

    @asynccontextmanager
    async def lifespan(_app):
        yield
        jobs.shutdown()

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    states: "OrderedDict[str, CaseState]" = OrderedDict()
    lock = threading.Lock()
    app.state.jobs, app.state.config = jobs, config

    @app.middleware("http")
    async def security(request: Request, call_next):
        refused = guard.check(request) or body_refusal(request)
        response = refused or await call_next(request)
        response.headers.update(HEADERS)
        return response

    @app.exception_handler(NnunetCausalError)
    async def user_error(request: Request, e: NnunetCausalError):
        return JSONResponse({"error": str(e)}, status_code=400)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, e: QueueFull):
        return JSONResponse({"error": f"the viewer is busy: {e}"}, status_code=429,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    def files_of(case: str) -> CaseFiles:
        if case not in config.cases:
            raise HTTPException(404, f"unknown case '{case}'")
        return config.cases[case]

    loading: Dict[str, threading.Lock] = {}

    def state_of(case: str, open_it: bool = False) -> CaseState:
        files = files_of(case)
        with lock:
            if case in states:
                states.move_to_end(case)
                return states[case]
            if not open_it:
                raise HTTPException(409, f"case '{case}' is not open")
            case_lock = loading.setdefault(case, threading.Lock())
        with case_lock:  # one load per case; the shared lock stays free for every other request meanwhile
            with lock:
                if case in states:
                    return states[case]
            state = CaseState(config.model, files)
            with lock:
                states[case] = state
                while len(states) > OPEN_CASES:
                    states.popitem(last=False)
            return state

    def job_response(kind: str, case: str, fn) -> dict:
        return jobs.submit(kind, case, fn).as_dict()

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        response = HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))
        if config.token is not None and request.query_params.get("token"):
            response.set_cookie(COOKIE, config.token, httponly=True, samesite="strict")
        return response

    @app.get("/static/{name}")
    def static(name: str):
        if name not in STATIC_FILES:
            raise HTTPException(404, "no such file")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name])

    @app.get("/api/info")
    def info():
        return {**config.model.info(), "images_folder": config.images_folder.name,
                "out_folder": str(config.out_folder), "busy": jobs.busy()}

    @app.get("/api/cases")
    def cases():
        return {"cases": [{"case": c.case, "files": [Path(f).name for f in c.files]} for c in config.cases.values()]}

    @app.post("/api/cases/{case}/open")
    def open_case(case: str):
        return state_of(case, open_it=True).state()

    @app.get("/api/cases/{case}/state")
    def case_state(case: str):
        return state_of(case).state()

    @app.get("/api/cases/{case}/image/{view}/{index}")
    def image_slice(case: str, view: str, index: int):
        s = state_of(case)
        check_view(view, index, s.image.shape, s.image.is_2d)
        return Response(s.image.slice_png(view, index), media_type="image/png")

    @app.get("/api/cases/{case}/mask/{view}/{index}")
    def mask_slice(case: str, view: str, index: int):
        s = state_of(case)
        seg = s.seg
        if seg is None:
            raise HTTPException(404, "no mask yet: type a prompt")
        check_view(view, index, s.image.shape, s.image.is_2d)
        return Response(label_slice_png(seg, view, index), media_type="image/png",
                        headers={"X-Mask-Version": str(s.version)})

    @app.post("/api/cases/{case}/prompts")
    def prompts(case: str, body: PromptRequest):
        s = state_of(case, open_it=True)
        return job_response("prompts", case, lambda job: s.predict_prompts(body.prompts, body.open_vocabulary,
                                                                           job.report))

    @app.post("/api/cases/{case}/command")
    def command(case: str, body: CommandRequest):
        s = state_of(case, open_it=True)
        return job_response("command", case, lambda job: s.apply_command(body.command, job.report))

    @app.post("/api/cases/{case}/undo")
    def undo(case: str):
        s = state_of(case)
        return job_response("undo", case, lambda job: s.undo())

    @app.post("/api/cases/{case}/redo")
    def redo(case: str):
        s = state_of(case)
        return job_response("redo", case, lambda job: s.redo())

    @app.post("/api/cases/{case}/save")
    def save(case: str):
        s = state_of(case)
        return job_response("save", case, lambda job: {**s.state(), "saved": s.save(config.out_folder)})

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str):
        j = jobs.get(job_id)
        if j is None:
            raise HTTPException(404, f"unknown job '{job_id}'")
        return j.as_dict()

    @app.get("/api/cases/{case}/download/{kind}")
    def download(case: str, kind: str):
        files_of(case)
        s = state_of(case)
        paths = s.output_paths(config.out_folder)
        if kind not in paths:
            raise HTTPException(404, f"unknown download '{kind}' (mask, prompts, edits)")
        if not paths[kind].is_file():
            raise HTTPException(404, f"{paths[kind].name} is not saved yet: press Save first")
        return FileResponse(paths[kind], filename=paths[kind].name)

    return app
