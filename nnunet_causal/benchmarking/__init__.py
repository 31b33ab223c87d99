"""Performance benchmarks against stock nnU-Net."""
