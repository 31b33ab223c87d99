"""Test-time causal intervention (Causal-SAM-LLM, seed 000; causal retrieval, seed 003):
``commands/`` turns a clinician's command into structured edit actions; ``modulation/`` applies them."""
