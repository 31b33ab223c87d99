"""Focused helpers of the prompt resolver (:mod:`nnunet_causal.text.resolver`): list splitting
(:mod:`.lists`), spelling tolerance (:mod:`.spelling`) and the lexical evidence that the embedding stage
must show before it may name a structure (:mod:`.evidence`)."""
