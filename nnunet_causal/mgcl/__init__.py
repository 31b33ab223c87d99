"""MGCL text-encoder pretraining (OpenVocabCT, seed 002): organ-level captions from reports or labels,
multi-granularity contrastive alignment of a text encoder with a frozen segmentation encoder, and the
encoder folder it writes (``mgcl:FOLDER``).

* :mod:`.reports` -- CT-RATE-style CSV / JSONL report sources mapped to cases;
* :mod:`.captions`, :mod:`.llm`, :mod:`.label_captions`, :mod:`.corpus` -- organ-level captions (rules,
  LLM, labels) and their cache;
* :mod:`.image_features` -- the frozen encoder of a trained model and mask pooling;
* :mod:`.organ_position` -- where an organ lies in its case (the organ feature's position term, unmirrored
  patches); :mod:`.laterality` -- left/right-mirrored captions as hard negatives;
* :mod:`.losses` -- CLIP + MGCL; :mod:`.text_model` -- full / last-k / LoRA tuning;
* :mod:`.data`, :mod:`.pretrain`, :mod:`.encoder_folder`, :mod:`.pretrain_cli` -- ``nnunet_causal pretrain-text``.
"""
