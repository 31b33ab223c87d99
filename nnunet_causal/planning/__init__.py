"""Extra plans derived from nnU-Net's own (STU-Net architectures on the same preprocessed data)."""
