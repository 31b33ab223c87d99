"""Prompt grounding on the extended development set: precision and recall with and without the
embedding stage, side by side.

Per prompt the resolver returns a set of terms (or none). With the answers of the TSV
(``prompt<TAB>answers<TAB>kind``, answers as in ``tests/text/prompts_dev.tsv``):

* correct -- the returned set is one of the accepted answers (an empty set for '-' prompts);
* wrong   -- a non-empty set that is not accepted (a wrong structure: the clinically dangerous error);
* missed  -- nothing returned for a prompt that names a structure.

precision = non-empty correct / non-empty returned (1 - the rate of wrong structures);
recall = correct / prompts that name a structure. Negatives ('-') count against precision only when
something is returned.

    python benchmarks/grounding_benchmark.py [--data TSV] [--vocabulary all] [--errors] [--before REF]

``--before REF`` adds the resolver of git revision REF (``nnunet_causal/text/resolver.py`` as it was there,
with today's vocabulary) as two more columns, e.g. a revision whose resolver lacks list splitting and spelling correction.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict, List, Tuple

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "tests" / "text" / "data" / "grounding_dev.tsv"


def read_cases(path: Path) -> List[Tuple[str, str, str]]:
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) not in (2, 3):
            raise SystemExit(f"{path}:{n}: expected 2 or 3 tab-separated columns, got {len(cols)}")
        cases.append((cols[0], cols[1], cols[2] if len(cols) == 3 else "dev"))
    return cases


def judge(terms: List[str], answer: str) -> str:
    if answer == "-":
        return "correct" if not terms else "wrong"
    if not terms:
        return "missed"
    return "correct" if sorted(terms) in [sorted(a.split("+")) for a in answer.split("|")] else "wrong"


def summarise(outcomes: List[Tuple[str, str]]) -> Dict[str, float]:
    """``outcomes``: (answer, verdict) pairs -> counts, precision and recall."""
    positives = [v for a, v in outcomes if a != "-"]
    returned = sum(1 for a, v in outcomes if v == "wrong" or (v == "correct" and a != "-"))
    right = sum(1 for a, v in outcomes if v == "correct" and a != "-")
    wrong = sum(1 for _, v in outcomes if v == "wrong")
    return {"n": len(outcomes), "wrong": wrong, "missed": sum(1 for v in positives if v == "missed"),
            "precision": right / returned if returned else float("nan"),
            "recall": right / len(positives) if positives else float("nan")}


def resolver_at(ref: str) -> Callable:
    """``resolve_prompt`` of ``nnunet_causal/text/resolver.py`` at git revision ``ref``."""
    root = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(["git", "-C", str(root), "show", f"{ref}:nnunet_causal/text/resolver.py"],
                                check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"--before {ref}: {e.stderr.strip()}") from e
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(f"resolver_at_{ref}", f.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    Path(f.name).unlink()
    return module.resolve_prompt


def main() -> int:
    from nnunet_causal.text.resolver import resolve_prompt
    from nnunet_causal.text.vocabulary import load_vocabulary

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--vocabulary", default="all")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--errors", action="store_true", help="list every prompt that is not correct")
    ap.add_argument("--before", metavar="REF", help="also measure the resolver of git revision REF")
    args = ap.parse_args()
    cases = read_cases(args.data)
    vocab = load_vocabulary(args.vocabulary)
    from nnunet_causal.text.embedding_cache import get_text_encoder
    encoder = get_text_encoder(args.encoder)
    settings = OrderedDict([("no embedding", (resolve_prompt, None)),
                            (f"embedding ({args.encoder})", (resolve_prompt, encoder))])
    if args.before:
        old = resolver_at(args.before)
        settings[f"{args.before}: no embedding"] = (old, None)
        settings[f"{args.before}: embedding"] = (old, encoder)
    verdicts: Dict[str, List[Tuple[str, str, str, List[str]]]] = {}
    for label, (resolve, enc) in settings.items():
        verdicts[label] = []
        for prompt, answer, kind in cases:
            terms = resolve(prompt, vocab, encoder=enc).terms
            verdicts[label].append((kind, answer, judge(terms, answer), terms))
    kinds = list(dict.fromkeys(k for _, _, k in cases)) + ["all"]
    head = f"{'kind':<11}{'n':>4} | " + " | ".join(f"{lab:^34}" for lab in settings)
    print(f"vocabulary '{args.vocabulary}', {len(cases)} prompts from {args.data}")
    print(head)
    print(f"{'':<11}{'':>4} | " + " | ".join(f"{'precision':>9} {'recall':>7} {'wrong':>6} {'missed':>7} "
                                          for _ in settings))
    for kind in kinds:
        row, n = [], 0
        for label in settings:
            sel = [(a, v) for k, a, v, _ in verdicts[label] if kind == "all" or k == kind]
            s = summarise(sel)
            n = s["n"]
            row.append(f"{s['precision']:>9.3f} {s['recall']:>7.3f} {s['wrong']:>6d} {s['missed']:>7d} ")
        print(f"{kind:<11}{n:>4} | " + " | ".join(row))
    if args.errors:
        for label in settings:
            print(f"\nnot correct, {label}:")
            for (prompt, answer, _), (kind, _, v, terms) in zip(cases, verdicts[label]):
                if v != "correct":
                    print(f"  [{kind}] {v:<6} {prompt!r} -> {terms or '-'} (expected {answer})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
