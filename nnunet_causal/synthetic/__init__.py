"""Multi-domain synthetic datasets (2D endoscopy frames, 3D CT phantoms) in nnU-Net raw format."""
