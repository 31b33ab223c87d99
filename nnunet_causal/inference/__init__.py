"""Prediction with text prompts (nnU-Net predictor subclass and its command)."""
