"""Grounding stages, between the knowledge base (:mod:`nnunet_causal.text.knowledge`) and the resolver
(:mod:`nnunet_causal.text.resolver`): sentence roles (:mod:`.roles`), the exact and knowledge lookups and
placement in a model's vocabulary (:mod:`.lookup`), one phrase with word order and part-of widening
(:mod:`.phrase`), lists (:mod:`.lists`), spelling tolerance (:mod:`.spelling`), the lexical evidence the
embedding stage must show (:mod:`.evidence`) and the embedding stage itself (:mod:`.embedding`). Nothing
here imports the resolver or the model vocabularies above it."""
