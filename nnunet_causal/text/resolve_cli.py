"""``nnunet_causal resolve``: ground prompts in a vocabulary and print one JSON object per line."""
from __future__ import annotations

import json
import sys

from nnunet_causal.errors import PromptError
from nnunet_causal.text.resolver import EMBEDDING_THRESHOLD, resolve_prompt
from nnunet_causal.text.vocabulary import VOCABULARY_NAMES, load_vocabulary


def run_resolve(args) -> int:
    from nnunet_causal.text.prompt_file import parse_prompts

    vocabulary = load_vocabulary(args.vocabulary)
    specs = parse_prompts(args.prompts)
    encoder = None
    if not args.no_embedding:
        from nnunet_causal.text.embedding_cache import get_text_encoder
        encoder = get_text_encoder(args.encoder)
    failed = 0
    for spec in specs:
        try:
            res = resolve_prompt(spec.text, vocabulary, encoder=encoder, threshold=args.threshold)
        except PromptError as e:  # one bad prompt: its one-line error, the others still resolved
            print(f"error: {e}", file=sys.stderr, flush=True)
            failed += 1
            continue
        print(json.dumps(res.as_dict()), flush=True)
    return 1 if failed else 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "resolve", help="ground free-text prompts in the anatomical vocabulary",
        description="Resolve each PROMPT -- a name or a sentence (context words such as modality, region and "
                    "phase are recorded, not matched) -- to canonical structure names: exact name, then the knowledge base "
                    "(synonyms, abbreviations, Latin/adjectival forms, laterality, merged categories), lists "
                    "(\"A and B\", \"A, B and C\", \"A + B\": the union of the parts), spelling correction "
                    "towards the vocabulary's words, then text-embedding similarity (only with lexical evidence). "
                    "Prints {\"prompt\", \"terms\", \"score\", \"method\", \"used\", \"ignored\"} per line, "
                    "plus \"unknown\", \"corrected\", \"message\" and \"parts\" where they apply, and \"explanation\" "
                    "(structure, side and context words, widened parts, corrections, contradictions); terms is "
                    "empty when nothing matches (exit code 0), and message then names the words not understood and "
                    "the nearest terms. A malformed prompt (empty, too long, control characters, both sides of one "
                    "structure) prints a one-line error and gives exit code 1; the other prompts are still resolved.",
        epilog="Examples:\n  nnunet_causal resolve liver \"kidney on the left\" \"renal organs\"\n"
               "  nnunet_causal resolve \"Segmentation of the left kidney on contrast-enhanced abdominal CT\"\n"
               "  nnunet_causal resolve \"left kidney and adrenal\" spleeen \"kidney stone\"\n"
               "  nnunet_causal resolve --vocabulary btcv --no-embedding \"portal vein\"\n"
               "  nnunet_causal resolve --vocabulary $nnUNet_results/Dataset001_X/nnUNetTrainerText__nnUNetPlans__2d"
               " polyp",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("prompts", nargs="+", metavar="PROMPT")
    p.add_argument("--vocabulary", default="all",
                   help=f"{'|'.join(VOCABULARY_NAMES)} or a trained model folder (default: all)")
    p.add_argument("--encoder", default=None, help="text encoder for the similarity stage (default: minilm)")
    p.add_argument("--no-embedding", action="store_true", help="skip the similarity stage (no model loading)")
    p.add_argument("--threshold", type=float, default=EMBEDDING_THRESHOLD,
                   help=f"minimum cosine similarity of the embedding stage (default {EMBEDDING_THRESHOLD})")
    p.set_defaults(func=run_resolve)
