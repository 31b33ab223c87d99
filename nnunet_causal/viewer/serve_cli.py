"""``nnunet_causal serve``: the local web viewer (see :mod:`nnunet_causal.viewer`).

Binding: ``127.0.0.1`` by default, and then only requests whose ``Host`` is that address are answered. Any
other ``--host`` needs a token: ``--token VALUE``, or ``--token`` alone / nothing to have one generated and
printed (with the address to open). Saved masks go to ``-o`` (default ``IMAGES_FOLDER/viewer_masks``): a
label map named ``CASE<ending>`` inside the images folder itself would be read as a new case by nnU-Net's
prediction commands.
"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Optional

from nnunet_causal.errors import DatasetError, NnunetCausalError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
GENERATE = ""   # the value argparse gives a bare --token


def _require_web_packages() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise NnunetCausalError(f"the viewer needs fastapi and uvicorn ({e.name} is missing): "
                                f"pip install 'nnunet_causal[viewer]'") from e


def build_config(model_folder: str, images_folder: Optional[str] = None, out_folder: Optional[str] = None,
                 fold: str = "0", checkpoint: str = "checkpoint_final.pth", device: str = "cpu",
                 use_mirroring: bool = True, host: str = "127.0.0.1", port: int = 8765,
                 token: Optional[str] = None):
    """Check everything and list the cases before any server starts; returns a :class:`ViewerConfig`."""
    from nnunet_causal.viewer.app import ViewerConfig
    from nnunet_causal.viewer.cases import list_cases
    from nnunet_causal.viewer.model_context import ModelContext

    model = ModelContext(model_folder, fold, checkpoint, device, use_mirroring)
    if images_folder is None:
        images = model.default_images_folder()
        if images is None:
            raise DatasetError("give the images folder with -i (no $nnUNet_raw/<dataset>/imagesTs to default to)")
    else:
        images = Path(images_folder)
    if not images.is_dir():
        raise DatasetError(f"images folder {images} does not exist")
    images = images.resolve()
    cases = list_cases(images, model.file_ending)
    if not cases:
        raise DatasetError(f"{images} holds no case in nnU-Net's naming: expected CASE_0000{model.file_ending} "
                           f"(and CASE_0001{model.file_ending} ... for more channels)")
    out = Path(out_folder).resolve() if out_folder else images / "viewer_masks"
    if token is not None and token != GENERATE and len(token) < 12:
        raise NnunetCausalError("--token: use at least 12 characters (or give --token alone to generate one)")
    if host not in LOOPBACK and token is None:
        token = GENERATE
    if token == GENERATE:
        token = secrets.token_urlsafe(24)
    allowed = [] if host not in LOOPBACK else [f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")]
    return ViewerConfig(model, {c.case: c for c in cases}, images, out, token, allowed)


def serve(config, host: str, port: int) -> None:
    import uvicorn

    from nnunet_causal.viewer.app import create_app

    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={config.token}" if config.token else "")
    print(f"nnunet_causal viewer: {len(config.cases)} case(s) of {config.images_folder}, model "
          f"{config.model.folder.name} fold {config.model.fold}; saving to {config.out_folder}\n"
          f"open {url}   (Ctrl+C stops)", flush=True)
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")


def _run(args) -> int:
    _require_web_packages()
    config = build_config(args.m, args.i, args.o, args.f, args.chk, args.device, not args.disable_tta,
                          args.host, args.port, args.token)
    serve(config, args.host, args.port)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="local web viewer: prompts, test-time intervention commands, undo/redo, save",
        description="Serve a web page that lists the cases of an images folder, shows their slices with the "
                    "masks as coloured overlays, segments what the prompt box names (as nnUNetv2_predict_text) "
                    "and edits the result with natural-language commands (as nnunet_causal intervene), with "
                    "undo / redo, an edit log, save and download. Needs the [viewer] extra (fastapi, uvicorn).",
        epilog="Examples:\n"
               "  nnunet_causal serve -m MODEL_FOLDER -i imagesTs\n"
               "  nnunet_causal serve -m MODEL_FOLDER -i imagesTs --host 0.0.0.0 --port 9000 --token\n",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("-m", required=True, help="trained model folder (…/TRAINER__PLANS__CONFIG)")
    p.add_argument("-i", default=None, help="images folder (nnU-Net naming; default $nnUNet_raw/<dataset>/imagesTs)")
    p.add_argument("-o", default=None, help="where Save writes (default IMAGES_FOLDER/viewer_masks)")
    p.add_argument("-f", default="0", help="fold (default 0)")
    p.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint name (default checkpoint_final.pth)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--disable_tta", action="store_true", help="no mirroring (faster)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--token", nargs="?", const=GENERATE, default=None,
                   help="require this token on every request; alone: generate one (default for non-loopback hosts)")
    p.set_defaults(func=_run)
