"""Trainers (text, causal, GIN/IPA), their losses and schedules."""
