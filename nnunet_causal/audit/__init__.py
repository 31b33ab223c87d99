"""Causal audit: how a trained nnU-Net model's prediction moves under do(z) for every dictionary confounder."""
