"""``nnunet_causal serve``: a local web viewer for text-prompted prediction and test-time intervention.

Layers, top to bottom: :mod:`~nnunet_causal.viewer.serve_cli` (the command) -> :mod:`~nnunet_causal.viewer.app`
(FastAPI routes, token and host checks) -> :mod:`~nnunet_causal.viewer.case_state` (one case: prompts, edits,
undo / redo, save) and :mod:`~nnunet_causal.viewer.jobs` (the worker thread) -> :mod:`~nnunet_causal.viewer.cases`
(listing, reading and slicing images; no web code). The page (``static/``) draws server-rendered PNG slices on
a canvas; nothing is fetched from the internet at run time.
"""
