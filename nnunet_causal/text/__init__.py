"""Text side: encoders, embedding cache, prompt files, anatomical vocabulary, confounder dictionaries."""
