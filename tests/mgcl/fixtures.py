"""Tiny inputs for the MGCL tests: a random BERT-like sentence-transformers model (MiniLM's tokenizer, 2 layers
of width 32), a fabricated nnU-Net preprocessed 2D dataset with reports, and a model folder for it."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from tests.inference.tiny_model import DATASET_JSON, PLANS, make_model_folder

TINY_DIM = 32
DATASET = "Dataset001_Tiny2D"


WORDS = ("a an the is are in of on at and no not with without seen present lies part image body upper lower "
         "middle left right central small large enlarged normal size round free fluid red spot blue square lesion "
         "marker centre liver kidney side lung heart . , ;").split()


def make_tiny_sentence_transformer(folder: Path) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32, a word-level vocabulary of the test texts plus single
    letters) with mean pooling and normalisation, saved as a sentence-transformers folder. Deterministic."""
    import string

    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    bert = folder / "bert"
    bert.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(WORDS + list(string.ascii_lowercase)),
             *[f"##{c}" for c in string.ascii_lowercase]]
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(str(bert / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=TINY_DIM, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(str(bert))
    tok.save_pretrained(str(bert))
    word = models.Transformer(str(bert), max_seq_length=64)
    st = SentenceTransformer(modules=[word, models.Pooling(TINY_DIM), models.Normalize()], device="cpu")
    out = folder / "tiny_st"
    st.save(str(out))
    return out


REPORTS = {
    "tiny_000": "A large lesion in the upper left part. The marker is small.",
    "tiny_001": "The lesion is small and round. A marker is seen at the lower right.",
    "tiny_002": "A red spot is present. The blue square is large.",
    "tiny_003": "The lesion is enlarged. No free fluid. The marker is normal in size.",
    "tiny_004": "Small lesion. The marker lies in the centre.",
    "tiny_005": "The lesion is normal in size. The marker is enlarged.",
}


def make_preprocessed(root: Path, n_cases: int = 6, with_reports: bool = True) -> Path:
    """``root/preprocessed/Dataset001_Tiny2D`` with ``nnUNetPlans_2d/tiny_XXX.{npz,pkl}`` (RGB 32x32, a lesion
    disc = 1 and a marker square = 2 per case) and, if asked, ``root/reports.jsonl``. Returns ``root``."""
    rng = np.random.default_rng(0)
    pre = Path(root) / "preprocessed" / DATASET
    data_folder = pre / "nnUNetPlans_2d"
    data_folder.mkdir(parents=True)
    (pre / "dataset.json").write_text(json.dumps(DATASET_JSON))
    (pre / "nnUNetPlans.json").write_text(json.dumps(PLANS))
    yy, xx = np.mgrid[:32, :32]
    for i in range(n_cases):
        seg = np.zeros((1, 1, 32, 32), np.int8)
        cy, cx, r = rng.integers(8, 24), rng.integers(8, 24), rng.integers(3, 7)
        seg[0, 0][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        sy, sx = rng.integers(0, 26, 2)
        seg[0, 0, sy:sy + 5, sx:sx + 5] = 2
        data = rng.normal(0, 1, (3, 1, 32, 32)).astype(np.float32) + 2.0 * (seg == 1) - 2.0 * (seg == 2)
        locations = {v: np.argwhere(seg == v) for v in (1, 2)}
        case = f"tiny_{i:03d}"
        np.savez_compressed(data_folder / f"{case}.npz", data=data, seg=seg)
        with open(data_folder / f"{case}.pkl", "wb") as f:
            pickle.dump({"class_locations": locations, "spacing": [999.0, 1.0, 1.0]}, f)
    if with_reports:
        with open(Path(root) / "reports.jsonl", "w") as f:
            for case, text in list(REPORTS.items())[:n_cases]:
                f.write(json.dumps({"image": f"{case}_0000.png", "report": text}) + "\n")
    return Path(root)


def setup_tiny(root: Path, monkeypatch):
    """Preprocessed data + model folder under ``root``; environment pointing at them. Returns the model folder."""
    make_preprocessed(root)
    monkeypatch.setenv("nnUNet_preprocessed", str(Path(root) / "preprocessed"))
    monkeypatch.delenv("nnUNet_raw", raising=False)
    return make_model_folder(Path(root))
