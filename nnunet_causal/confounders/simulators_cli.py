"""``nnunet_causal simulators``: the registered confounder simulators, or a check of a dictionary file."""
from __future__ import annotations


def _run(args) -> int:
    from nnunet_causal.confounders.dictionary import load_confounder_entries
    from nnunet_causal.confounders.registry import describe_simulators

    if args.check:
        entries = load_confounder_entries(args.check)
        for e in entries:
            sims = " + ".join(map(repr, e.simulators)) or "(text only)"
            print(f"[{e.group}] {e.description}  ::  {sims}")
        print(f"{args.check}: {len(entries)} entries, {sum(bool(e.simulators) for e in entries)} with a simulator")
        return 0
    print(describe_simulators())
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("simulators", help="list the confounder simulators a dictionary line may name",
                              description="List every registered simulator (dimensions, channels, parameter "
                                          "defaults and bounds), or parse a dictionary and show what each line does.",
                              epilog="Example: nnunet_causal simulators --check my_confounders.txt")
    p.add_argument("--check", default=None, help="a dictionary (family name or file) to parse and show")
    p.set_defaults(func=_run)
