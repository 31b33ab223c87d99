"""``nnunet_causal pretrain-text``: MGCL pretraining of a text encoder against a trained model's encoder."""
from __future__ import annotations

import argparse

from nnunet_causal.mgcl.pretrain import PretrainSettings, pretrain_text


def run_pretrain_text(args) -> int:
    settings = PretrainSettings(
        dataset=args.dataset, model_folder=args.model_folder, encoder=args.encoder, output=args.output,
        epochs=args.epochs, tune=args.tune, last_k=args.last_k, lora_rank=args.lora_rank, fold=args.fold,
        checkpoint=args.chk, reports=args.reports, extractor=args.extractor, llm_url=args.llm_url,
        llm_model=args.llm_model, llm_folder=args.llm_folder, llm_timeout=args.llm_timeout,
        iterations=args.iterations, batch_size=args.batch_size, captions_per_organ=args.k, text_lr=args.text_lr,
        seed=args.seed, device=args.device, continue_training=args.c, overwrite=args.overwrite,
        position=not args.no_position, laterality_negatives=not args.no_laterality_negatives,
        text_contrast_weight=0.0 if args.no_text_contrast else args.text_contrast_weight)
    out = pretrain_text(settings)
    print(f"wrote {out}; use it with nnUNet_causal_text_encoder=mgcl:{out} (e.g. nnUNetv2_train ... -tr "
          f"nnUNetTrainerText_FrozenEncoders)")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain-text", help="MGCL: align a text encoder with a trained model's frozen image encoder",
        description="OpenVocabCT's second stage: organ features (mask pooling of a trained model's frozen "
                    "encoder on nnU-Net's preprocessed patches) against organ-level captions of each case's "
                    "report (or of its labels), plus CLIP between whole reports and global features. Writes a "
                    "text-encoder folder that every text backend loads as mgcl:FOLDER.",
        epilog="Examples:\n"
               "  nnunet_causal synth ct3d -d 991 -n 8 --reports\n"
               "  nnUNetv2_plan_and_preprocess -d 991 -c 2d && nnUNetv2_train 991 2d 0 -tr nnUNetTrainerText\n"
               "  nnunet_causal pretrain-text -d 991 -m $nnUNet_results/Dataset991_SynthCT/"
               "nnUNetTrainerText__nnUNetPlans__2d --epochs 20 --tune lora\n"
               "  nnunet_causal pretrain-text -d 991 -m MODEL --c            # resume after an interruption\n"
               "  nnUNet_causal_text_encoder=mgcl:MODEL/mgcl_text_encoder nnUNetv2_train 991 2d 0 "
               "-tr nnUNetTrainerText_FrozenEncoders",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", dest="dataset", required=True, help="dataset id or name (preprocessed for the model's plans)")
    p.add_argument("-m", dest="model_folder", required=True, help="trained model folder whose encoder is frozen")
    p.add_argument("-e", dest="encoder", default="minilm",
                   help="text encoder to start from: minilm (default), st:FOLDER or mgcl:FOLDER")
    p.add_argument("-o", dest="output", default=None, help="encoder folder to write (default MODEL/mgcl_text_encoder)")
    p.add_argument("-f", dest="fold", default="0", help="fold of the model (default 0)")
    p.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint of that fold")
    p.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    p.add_argument("--iterations", type=int, default=None,
                   help="steps per epoch (default: training cases / batch size, rounded up)")
    p.add_argument("--batch-size", type=int, default=None, help="patches per step (default: the plans', >= 2)")
    p.add_argument("--tune", choices=("full", "last-k", "lora", "none"), default="full",
                   help="what of the text encoder trains (none: only the image projection; a baseline)")
    p.add_argument("--last-k", type=int, default=2, help="layers trained with --tune last-k (default 2)")
    p.add_argument("--lora-rank", type=int, default=8, help="LoRA rank with --tune lora (default 8)")
    p.add_argument("--text-lr", type=float, default=None, help="text-encoder learning rate (default per --tune)")
    p.add_argument("-k", type=int, default=3, help="captions sampled per organ and step (default 3)")
    p.add_argument("--reports", default=None,
                   help="CT-RATE-style .csv (VolumeName, Findings_EN, Impressions_EN) or .jsonl ({image, report}); "
                        "default: dataset.json \"reports\", else captions from the labels")
    p.add_argument("--extractor", choices=("rules", "llm"), default="rules",
                   help="caption extraction: offline sentence grounding (default) or an LLM")
    p.add_argument("--llm-url", default=None, help="OpenAI-compatible endpoint (default $nnUNet_causal_llm_url)")
    p.add_argument("--llm-model", default=None, help="model name at the endpoint ($nnUNet_causal_llm_model)")
    p.add_argument("--llm-folder", default=None, help="local transformers causal-LM folder instead of an endpoint")
    p.add_argument("--llm-timeout", type=float, default=60.0, help="seconds per LLM request (default 60)")
    p.add_argument("-device", dest="device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-position", action="store_true",
                   help="organ features without the position term (mask centroid in the case frame; on by default "
                        "so that left/right organs that look alike can be told apart)")
    p.add_argument("--no-laterality-negatives", action="store_true",
                   help="no left/right-mirrored captions as hard negatives of lateral structures (on by default)")
    p.add_argument("--text-contrast-weight", type=float, default=1.0,
                   help="weight of the text-side term: supervised contrast among caption embeddings, one "
                        "structure's captions (side included) together, other structures' and the mirrored "
                        "captions apart (default 1; 0 = the seed's loss, as --no-text-contrast)")
    p.add_argument("--no-text-contrast", action="store_true", help="no text-side term (weight 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--c", action="store_true", help="continue from the last epoch's checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run_pretrain_text)
