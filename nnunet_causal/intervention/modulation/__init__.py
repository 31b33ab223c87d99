"""Learned test-time modulation of the decoder (seed 000's TCI): FiLM generator, ``train-tci``, cached-feature
editing sessions and ``intervene``."""
