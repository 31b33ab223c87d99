"""``nnunet_causal trainers``: the trainer catalogue by family, one line each, the recommended one marked."""
from __future__ import annotations

from typing import List


def catalogue_lines(family: str = "", deprecated: bool = False, names: bool = False) -> List[str]:
    """The lines the command prints (``names``: every ``-tr`` name, one a line, for scripts)."""
    from nnunet_causal.errors import NnunetCausalError
    from nnunet_causal.training.catalogue import (DEPRECATED, ENTRIES, FAMILIES, FAMILY_OF, RECOMMENDED, TRAINERS,
                                                  trainer_names)
    from nnunet_causal.training.schedules import SCHEDULES

    if family and family not in FAMILIES:
        raise NnunetCausalError(f"unknown trainer family '{family}' (use one of {', '.join(FAMILIES)})")
    if names:
        return [n for n in trainer_names() if not family or FAMILY_OF[n] == family]
    if deprecated:
        return [f"{n}  ->  {getattr(TRAINERS[n], 'use_instead', '') or 'use nnUNetTrainerText'}" for n in DEPRECATED]
    recommended = {}
    for imaging, (name, _) in RECOMMENDED.items():
        recommended.setdefault(name, []).append(imaging)
    lines = ["Recommended, for every imaging family: nnUNetTrainerCausalText (its counterfactual recipe is the header "
             "of the family's confounder dictionary):"]
    lines += [f"  {imaging:<10} {name}  ({why})" for imaging, (name, why) in RECOMMENDED.items()]
    width = max(len(e.name) for e in ENTRIES)
    for fam, title in FAMILIES.items():
        if family and fam != family:
            continue
        lines += ["", f"{fam}: {title}"]
        for e in (e for e in ENTRIES if e.family == fam):
            mark = f"[recommended: {', '.join(recommended[e.name])}] " if e.name in recommended else ""
            lines.append(f"  {e.name:<{width}}  {mark}{e.change}")
    lines += ["", "Schedules: append one to any trainer above (nnUNetTrainerCausalText_CPUDemo); the stock "
                  "nnUNetTrainer_Xepochs are nnU-Net's own:"]
    lines += [f"  _{s.suffix:<13} {s.describe()}" for s in SCHEDULES]
    lines += ["", f"{len(DEPRECATED)} deprecated names are kept so that models trained under them resume and "
                  f"predict (nnunet_causal trainers --deprecated lists them)."]
    return lines


def _run(args) -> int:
    print("\n".join(catalogue_lines(args.family, args.deprecated, args.names)))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("trainers", help="list the trainers (-tr names) by family, the recommended one marked",
                              description="The trainers this package adds to nnUNetv2_train, by family, one line "
                                          "each saying what it changes; the recommended trainer per imaging family; "
                                          "the schedules every trainer takes as a suffix.",
                              epilog="Examples: nnunet_causal trainers; nnunet_causal trainers --family causal; "
                                     "nnunet_causal trainers --names | grep CPUDemo")
    p.add_argument("--family", default="", help="only this family (causal, text, gin, counterfactual, stock, mgcl)")
    p.add_argument("--deprecated", action="store_true", help="the deprecated names and what to use instead")
    p.add_argument("--names", action="store_true", help="every -tr name, one a line (schedules included)")
    p.set_defaults(func=_run)
