"""Test-time causal intervention (seed 000 TCI): command parsing, causal retrieval, learned decoder modulation."""
