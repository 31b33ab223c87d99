"""Sentence grounding: does a structure written inside a sentence ground like its plain name?

Positives are generated from sentence shapes (templates of the kind that text-guided segmentation
challenges and clinicians write: a verb of delineation, the structure, an imaging modality, a body region,
a phase or sequence) crossed with structure phrases (plain names, laterality forms, plural / collective
forms, short forms and part-of phrases). Every positive has an expected set of canonical structures and is
judged on the knowledge base's ``all`` vocabulary without the embedding stage:

* like plain -- the sentence grounds to exactly the expected set;
* refused    -- it grounds to nothing;
* wrong      -- it grounds to another non-empty set (the clinically dangerous answer).

Negatives (lesion asked of an organ-only model and the reverse, look-alikes, structures a model was not
trained on, other body regions, nonsense) must be refused. The time per 1,000 sentences is measured on
the positives, resolved one by one, with no text encoder.

    python benchmarks/sentence_grounding_benchmark.py                 # the working tree
    python benchmarks/sentence_grounding_benchmark.py --before REF    # REF's package beside the working tree

``--before REF`` extracts ``nnunet_causal/`` of git revision REF into a temporary folder (``git archive``),
runs the same sentences there in a subprocess and prints both side by side. ``--totalseg-map FILE`` adds a
coverage table of every class name in TotalSegmentator's ``map_to_binary.py`` (read as text with ``ast``,
never imported).
"""
from __future__ import annotations

import argparse
import ast
import itertools
import json
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.sentence_grounding_data import (COVERAGE, NEGATIVE_SHAPES, NEGATIVES, SHAPES,  # noqa: E402
                                                positive_phrases)

Case = Tuple[str, str, str, str, List[str]]  # family, shape id, sentence, vocabulary key, expected terms


def _fill(shape: str, phrase: str, i: int, family: str) -> str:
    from benchmarks.sentence_grounding_data import context_for
    ctx = context_for(family, i)
    text = shape.format(s=phrase, S=phrase[:1].upper() + phrase[1:], **ctx)
    return text


def positive_cases(per_phrase: int) -> List[Case]:
    """Each phrase in ``per_phrase`` shapes (rotating through all shapes, deterministic)."""
    cases: List[Case] = []
    k = 0
    for family, phrase, expected in positive_phrases():
        for j in range(per_phrase):
            sid, shape = SHAPES[(k + j) % len(SHAPES)]
            cases.append((family, sid, _fill(shape, phrase, k + j, family), "all", sorted(expected)))
        k += 1
    return cases


def negative_cases() -> List[Case]:
    cases: List[Case] = []
    k = 0
    for kind, phrase, vocab_key in NEGATIVES:
        for j in range(len(NEGATIVE_SHAPES)):
            sid, shape = NEGATIVE_SHAPES[(k + j) % len(NEGATIVE_SHAPES)]
            if j >= 6:
                break
            cases.append((kind, sid, _fill(shape, phrase, k + j, "abdomen"), vocab_key, []))
        k += 1
    return cases


# ------------------------------------------------------------------ worker: runs inside one package version
def _vocabularies():
    from nnunet_causal.text.vocabulary import load_vocabulary, vocabulary_from_labels
    organs = ["spleen", "kidney_right", "kidney_left", "gallbladder", "esophagus", "liver", "stomach", "aorta",
              "inferior_vena_cava", "portal_vein_and_splenic_vein", "pancreas", "adrenal_gland_right",
              "adrenal_gland_left"]
    return {"all": load_vocabulary("all"), "btcv": load_vocabulary("btcv"),
            "organs": vocabulary_from_labels({n: i + 1 for i, n in enumerate(["background", *organs])}),
            "lesions": vocabulary_from_labels({"background": 0, "liver_tumor": 1, "kidney_tumor": 2},
                                              {"liver_tumor": ["liver tumor"], "kidney_tumor": ["kidney tumor"]}),
            "brats": load_vocabulary("brats")}


def run_worker(per_phrase: int, totalseg_map: Optional[str]) -> dict:
    from nnunet_causal.text.resolver import resolve_prompt
    vocabs = _vocabularies()
    out = {"positives": [], "negatives": [], "coverage": []}
    for vocab in vocabs.values():  # warm caches (indices) outside the timing
        resolve_prompt("liver", vocab)
    pos = positive_cases(per_phrase)
    start = time.perf_counter()
    for family, sid, text, key, expected in pos:
        out["positives"].append([family, sid, text, expected, _terms(resolve_prompt, text, vocabs[key])])
    out["seconds_per_1000"] = (time.perf_counter() - start) / max(1, len(pos)) * 1000
    for kind, sid, text, key, _ in negative_cases():
        out["negatives"].append([kind, sid, text, key, _terms(resolve_prompt, text, vocabs[key])])
    try:  # TotalSegmentator's own names in the vocabulary of its tasks (union labels such as "lung" held)
        from nnunet_causal.text.vocabulary import load_vocabulary
        vocabs["totalseg"] = load_vocabulary("totalseg")
    except Exception:  # noqa: BLE001 - a package without that vocabulary: the full one
        vocabs["totalseg"] = vocabs["all"]
    for source, name, expected in coverage_cases(totalseg_map):
        vocab = vocabs["totalseg"] if source == "TotalSegmentator" else vocabs["all"]
        out["coverage"].append([source, name, expected, _terms(resolve_prompt, name, vocab)])
    return out


def _terms(resolve, text: str, vocab) -> List[str]:
    try:
        return sorted(resolve(text, vocab).terms)
    except Exception as e:  # noqa: BLE001 - a crash is reported as its own verdict
        return [f"ERROR: {type(e).__name__}: {e}"]


def totalseg_names(path: str) -> Dict[str, List[str]]:
    """``{task: [class names]}`` from TotalSegmentator's ``map_to_binary.py`` (the literal dict only)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "class_map":
            maps = ast.literal_eval(node.value)
            return {t: list(m.values()) for t, m in maps.items()
                    if not (t.startswith("test") or "LEGACY" in t or "auxiliary" in t or t.endswith("_test"))}
    raise SystemExit(f"{path}: no class_map literal")


def coverage_cases(totalseg_map: Optional[str]) -> List[Tuple[str, str, List[str]]]:
    """(source, name as the source writes it, accepted canonical terms; [] = any non-empty answer)."""
    cases = [(src, name, sorted(exp)) for src, name, exp in COVERAGE]
    if totalseg_map:
        seen = set()
        for task, names in totalseg_names(totalseg_map).items():
            for n in names:
                if n not in seen:
                    seen.add(n)
                    cases.append(("TotalSegmentator", n, [n]))
    return cases


# ------------------------------------------------------------------ judging and printing
def verdict(expected: List[str], got: List[str]) -> str:
    if got and got[0].startswith("ERROR"):
        return "error"
    if not got:
        return "refused"
    return "like plain" if got == expected else "wrong"


def _table(rows: Dict[str, Dict[str, Dict[str, int]]], labels: Sequence[str], title: str) -> List[str]:
    cols = ["like plain", "refused", "wrong"]
    head = f"| {title} | n | " + " | ".join(f"{c} ({l})" for l in labels for c in cols) + " |"
    out = [head, "|" + "---|" * (2 + len(cols) * len(labels))]
    keys = list(dict.fromkeys(k for lab in labels for k in rows[lab]))
    for k in keys + ["all"]:
        cells = []
        n = 0
        for lab in labels:
            c = rows[lab][k] if k != "all" else _sum(rows[lab])
            n = sum(c.values())
            cells += [f"{100 * c.get(v, 0) / max(1, n):.1f} %" if v != "wrong" else str(c.get(v, 0)) for v in cols]
        out.append(f"| {k} | {n} | " + " | ".join(cells) + " |")
    return out


def _sum(rows: Dict[str, Dict[str, int]]) -> Dict[str, int]:
    total: Dict[str, int] = defaultdict(int)
    for c in rows.values():
        for k, v in c.items():
            total[k] += v
    return total


def report(results: "OrderedDict[str, dict]", show_errors: int) -> str:
    labels = list(results)
    fam = {lab: defaultdict(lambda: defaultdict(int)) for lab in labels}
    shp = {lab: defaultdict(lambda: defaultdict(int)) for lab in labels}
    neg = {lab: defaultdict(lambda: defaultdict(int)) for lab in labels}
    for lab, r in results.items():
        for family, sid, _, expected, got in r["positives"]:
            v = verdict(expected, got)
            v = "wrong" if v == "error" else v
            fam[lab][family][v] += 1
            shp[lab][sid][v] += 1
        for kind, _, _, _, got in r["negatives"]:
            neg[lab][kind]["refused" if not got else "grounded"] += 1
    lines = [f"positives: {len(results[labels[0]]['positives'])} sentences; negatives: "
             f"{len(results[labels[0]]['negatives'])} sentences", "", "### Per family", ""]
    lines += _table(fam, labels, "family") + ["", "### Per sentence shape", ""] + _table(shp, labels, "shape")
    lines += ["", "### Negatives (must be refused)", "",
              "| kind | n | " + " | ".join(f"refused ({l}) | grounded ({l})" for l in labels) + " |",
              "|" + "---|" * (2 + 2 * len(labels))]
    kinds = list(dict.fromkeys(k for lab in labels for k in neg[lab]))
    for k in kinds + ["all"]:
        cells, n = [], 0
        for lab in labels:
            c = neg[lab][k] if k != "all" else _sum(neg[lab])
            n = sum(c.values())
            cells += [f"{100 * c.get('refused', 0) / max(1, n):.1f} %", str(c.get("grounded", 0))]
        lines.append(f"| {k} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "### Time", "", "| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels),
              "| s per 1,000 sentences (no embedding stage) | "
              + " | ".join(f"{results[l]['seconds_per_1000']:.2f}" for l in labels) + " |"]
    lines += ["", "### Coverage per vocabulary source (every name grounds to its structure)", "",
              "| source | names | " + " | ".join(f"grounds ({l}) | wrong ({l})" for l in labels) + " |",
              "|" + "---|" * (2 + 2 * len(labels))]
    cov = {lab: defaultdict(lambda: defaultdict(int)) for lab in labels}
    for lab, r in results.items():
        for source, _, expected, got in r["coverage"]:
            v = verdict(expected, got)
            cov[lab][source][v] += 1
    for src in dict.fromkeys(s for lab in labels for s in cov[lab]):
        cells, n = [], 0
        for lab in labels:
            c = cov[lab][src]
            n = sum(c.values())
            cells += [f"{c.get('like plain', 0)}/{n}", str(c.get("wrong", 0) + c.get("error", 0))]
        lines.append(f"| {src} | {n} | " + " | ".join(cells) + " |")
    if show_errors:
        for lab, r in results.items():
            bad = [(e, g, t) for f, s, t, e, g in r["positives"] if verdict(e, g) in ("wrong", "error")]
            miss = [(e, g, t) for f, s, t, e, g in r["positives"] if verdict(e, g) == "refused"]
            negs = [(k, g, t) for k, s, t, _, g in r["negatives"] if g]
            covs = [(s, n, e, g) for s, n, e, g in r["coverage"] if verdict(e, g) != "like plain"]
            lines += ["", f"### Failures ({lab})", ""]
            lines += [f"- wrong: {t!r} -> {g} (expected {e})" for e, g, t in bad[:show_errors]]
            lines += [f"- refused: {t!r} (expected {e})" for e, g, t in miss[:show_errors]]
            lines += [f"- negative grounded: [{k}] {t!r} -> {g}" for k, g, t in negs[:show_errors]]
            lines += [f"- coverage: [{s}] {n!r} -> {g} (expected {e})" for s, n, e, g in covs[:show_errors]]
    return "\n".join(lines)


def _run_in(package_root: Path, args) -> dict:
    cmd = [sys.executable, str(package_root / "benchmarks" / Path(__file__).name), "--worker", "--per-phrase",
           str(args.per_phrase)]
    if args.totalseg_map:
        cmd += ["--totalseg-map", args.totalseg_map]
    env = {**__import__("os").environ, "PYTHONPATH": str(package_root)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(package_root))
    if proc.returncode != 0:
        raise SystemExit(f"worker in {package_root} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", metavar="REF", help="also run the package of git revision REF, side by side")
    p.add_argument("--per-phrase", type=int, default=10, help="sentence shapes per structure phrase (default 10)")
    p.add_argument("--totalseg-map", help="TotalSegmentator's map_to_binary.py, for the coverage table")
    p.add_argument("--errors", type=int, default=0, help="list up to N failures of each kind")
    p.add_argument("--save", help="also write the raw results (JSON) here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.per_phrase, args.totalseg_map)))
        return 0
    results: "OrderedDict[str, dict]" = OrderedDict()
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "nnunet_causal", "benchmarks"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            for f in ("sentence_grounding_benchmark.py", "sentence_grounding_data.py"):  # today's sentences
                (Path(tmp) / "benchmarks" / f).write_bytes((ROOT / "benchmarks" / f).read_bytes())
            results[f"before {args.before}"] = _run_in(Path(tmp), args)
    results["working tree"] = _run_in(ROOT, args)
    if args.save:
        Path(args.save).write_text(json.dumps(results))
    print(report(results, args.errors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
