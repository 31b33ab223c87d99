"""Multi-domain synthetic datasets in nnU-Net v2 raw format, for tests, the demo and benchmarks.

* :mod:`.endoscopy2d` -- RGB colonoscopy-like frames per site, optional specular spurious cue
  (:func:`~.endoscopy2d.make_endoscopy_dataset`);
* :mod:`.ct3d` -- CT-like abdominal phantoms per scanner, LPS orientation (:func:`~.ct3d.make_ct_dataset`);
* :mod:`.styles` -- style descriptions as text and :func:`~.styles.measure_image_statistics`;
* :mod:`.synth_cli` -- the ``nnunet_causal synth`` command.
"""
