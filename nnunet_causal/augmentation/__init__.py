"""Image-level augmentations (GIN, IPA)."""
