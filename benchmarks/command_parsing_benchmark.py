"""Command-parsing accuracy per category on a development command set (target >= 90 % overall).

    PYTHONPATH=. python benchmarks/command_parsing_benchmark.py [--set tests/intervention/data/commands_dev.tsv]
        [--vocabulary all] [--encoder minilm] [--llm-url URL --llm-model NAME] [--failures]

Parses every command with the chosen backend (default: the offline grammar), compares with the expected
parse (format: nnunet_causal/intervention/commands/command_set.py) and prints one row per category plus
the overall accuracy, and the time per command.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from nnunet_causal.intervention.commands import parse_command
from nnunet_causal.intervention.commands.command_set import check_case, load_command_set
from nnunet_causal.text.vocabulary import load_vocabulary

DEFAULT_SET = Path(__file__).resolve().parent.parent / "tests" / "intervention" / "data" / "commands_dev.tsv"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", default=str(DEFAULT_SET))
    p.add_argument("--vocabulary", default="all")
    p.add_argument("--encoder", default=None, help="text encoder for the resolver's similarity stage")
    p.add_argument("--llm-url", default=None)
    p.add_argument("--llm-model", default=None)
    p.add_argument("--failures", action="store_true", help="print every wrong parse")
    args = p.parse_args()
    vocabulary = load_vocabulary(args.vocabulary)
    encoder = None
    if args.encoder:
        from nnunet_causal.text.embedding_cache import get_text_encoder
        encoder = get_text_encoder(args.encoder)
    backend = None
    if args.llm_url:
        from nnunet_causal.intervention.commands.llm_backends import HttpChatBackend
        backend = HttpChatBackend(args.llm_url, args.llm_model)
    cases = load_command_set(args.set)
    per = defaultdict(lambda: [0, 0])
    failures = []
    start = time.perf_counter()
    for case in cases:
        ok, what = check_case(case, lambda c, s: parse_command(c, vocabulary, style_description=s, backend=backend,
                                                               encoder=encoder))
        per[case.category][0] += ok
        per[case.category][1] += 1
        if not ok:
            failures.append((case, what))
    elapsed = time.perf_counter() - start
    name = f"llm {args.llm_url}" if backend else "offline grammar"
    print(f"command set: {args.set} ({len(cases)} commands), backend: {name}")
    print(f"| category | commands | correct | accuracy |\n|---|---|---|---|")
    for cat, (ok, n) in per.items():
        print(f"| {cat} | {n} | {ok} | {100 * ok / n:.1f} % |")
    total_ok, total = sum(v[0] for v in per.values()), sum(v[1] for v in per.values())
    print(f"| **overall** | {total} | {total_ok} | **{100 * total_ok / total:.1f} %** |")
    print(f"time per command: {1000 * elapsed / max(len(cases), 1):.1f} ms")
    if args.failures:
        for case, what in failures:
            print(f"FAIL line {case.line} [{case.category}] {case.command!r}: expected {case.expected!r}; got {what}")


if __name__ == "__main__":
    main()
