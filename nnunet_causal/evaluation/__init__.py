"""Metrics (Dice, HD95 in mm), per-domain tables and plots."""
