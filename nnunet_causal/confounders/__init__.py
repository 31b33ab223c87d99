"""Confounders: the dictionary (descriptions + simulators), the simulator registry per imaging family
(endoscopy, CT, MRI) and counterfactual views do(z) for training and the causal audit."""
