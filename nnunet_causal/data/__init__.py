"""Reading and writing nnU-Net raw datasets with the extra keys nnunet_causal uses."""
