"""``nnunet_causal parse-command``: print one JSON parse per command (see :func:`parse_command`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def run_parse_command(args) -> int:
    from nnunet_causal.errors import ModelError
    from nnunet_causal.intervention.commands import as_vocabulary, parse_command
    from nnunet_causal.intervention.commands.llm_backends import make_backend

    confounders = args.confounders
    if args.model_folder:
        folder = Path(args.model_folder)
        if not folder.is_dir():
            raise ModelError(f"model folder {folder} does not exist")
        vocabulary = as_vocabulary(folder)
        if confounders is None:
            from nnunet_causal.confounders.dictionary import dictionary_for_dataset
            dataset_json = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
            confounders = dictionary_for_dataset(dataset_json)
    else:
        vocabulary = as_vocabulary(args.vocabulary)
    backend = None if args.offline else make_backend(args.llm_url, args.llm_model, args.llm_local, args.llm_timeout)
    encoder = None
    if args.encoder:
        from nnunet_causal.text.embedding_cache import get_text_encoder
        encoder = get_text_encoder(args.encoder)
    for command in args.commands:
        result = parse_command(command, vocabulary, confounders=confounders, style_description=args.style,
                               backend=backend, encoder=encoder)
        print(json.dumps(result), flush=True)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "parse-command", help="turn a clinician's correction into structured edit actions (JSON)",
        description="Parse each COMMAND into {\"command\", \"actions\": [{\"action\": expand|shrink|remove|add|"
                    "ignore_confounder, \"target\": [structures], \"strength\": slight|moderate|strong, "
                    "\"location\", \"confounder\", \"why\"}], \"refused\"} and print one JSON object per line. "
                    "\"actions\" is empty for questions, approvals and text that is not an edit (\"refused\" says "
                    "why). The default parser is offline (grammar + vocabulary + causal knowledge base); "
                    "--llm-url / --llm-local use an LLM whose answer is validated the same way. Commands are "
                    "data: never executed, never used as paths.",
        epilog="Examples:\n"
               "  nnunet_causal parse-command \"shrink the liver a bit and remove the spleen\"\n"
               "  nnunet_causal parse-command --vocabulary btcv \"the left kidney is way too small\"\n"
               "  nnunet_causal parse-command -m $nnUNet_results/Dataset001_X/nnUNetTrainerText__nnUNetPlans__2d "
               "\\\n      --style \"many specular highlights\" \"ignore the artefact\"\n"
               "  nnunet_causal parse-command --llm-url http://localhost:8000/v1 --llm-model qwen2.5-7b "
               "\"make the polyp bigger\"",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("commands", nargs="+", metavar="COMMAND")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--vocabulary", default="all", help="total|btcv|amos|chaos|brats|endoscopy|all (default all)")
    src.add_argument("-m", "--model-folder", default=None,
                     help="trained model folder: its structures and its confounder dictionary")
    p.add_argument("--confounders", default=None,
                   help="confounder dictionary: ct|mri|endoscopy or a file (default: the model's, else all shipped)")
    p.add_argument("--style", default=None, help="the case's style description (resolves vague commands)")
    p.add_argument("--llm-url", default=None, help="OpenAI-compatible endpoint (default $nnUNet_causal_llm_url)")
    p.add_argument("--llm-model", default=None, help="model name at the endpoint (default $nnUNet_causal_llm_model)")
    p.add_argument("--llm-local", default=None, help="local transformers causal-LM folder instead of an endpoint")
    p.add_argument("--llm-timeout", type=float, default=20.0, help="seconds to wait for the endpoint (default 20)")
    p.add_argument("--offline", action="store_true",
                   help="use the offline parser even if $nnUNet_causal_llm_url is set")
    p.add_argument("--encoder", default=None, help="text encoder for the resolver's similarity stage (e.g. minilm)")
    p.set_defaults(func=run_parse_command)
