"""Out-of-domain studies: trainers x held-out domains x seeds through the stock nnU-Net commands.

``nnunet_causal study STUDY.yaml`` generalises the hand-written leave-one-domain-out loop of
``benchmarks/lodo_benchmark.py``. For an already planned and preprocessed dataset it

1. finds or adds the leave-one-domain-out folds in ``splits_final.json`` (:mod:`.splits`: a user's own folds
   are kept, the study's appended after them with a backup);
2. for every seed, trainer and held-out domain has its backend (:mod:`.backends`: this machine, SLURM through
   submitit, or Ray) run the stock
   ``nnUNetv2_train DATASET CONFIG FOLD -tr TRAINER -p PLANS -device DEVICE`` with ``nnUNet_results`` pointed
   at ``OUTPUT/seed_<seed>/nnUNet_results`` (each seed its own model folders);
3. takes the predictions of the held-out domain from nnU-Net's own final validation
   (``fold_k/validation``: for a leave-one-domain-out fold the validation cases *are* the held-out domain),
   or, with ``prediction: {mode: predict}``, from a stock ``nnUNetv2_predict`` run on the held-out cases;
4. scores them against the raw ``labelsTr`` with :func:`nnunet_causal.evaluation.evaluate_folder.evaluate_folders`
   (Dice and HD95 per case and structure; the structures a case does not annotate, listed by dataset.json's
   ``"partial_labels"``, are left out of its scores);
5. collects the results from the shared study folder and writes ``results.csv``, ``table.md``, bar charts
   and overlays under ``figures/``, and ``report.md``.

The study is resumable: a run whose ``checkpoint_final.pth`` and evaluation JSON both exist is skipped
(and says so in ``study.log``); a run interrupted during training (``checkpoint_latest.pth`` only) is
continued with ``--c``; a run whose training finished but whose validation did not is completed with
``--val``. The same holds on every backend (the decision is made from the files by the worker) and for
a run whose worker was killed (it is resubmitted). Progress and per-run history (backend, job id, steps,
seconds) are kept in ``study_state.json`` (written atomically, by the study process only).

Modules (each imports only those above it): :mod:`.config` parses the file below; :mod:`.paths` and
:mod:`.state` hold the file layout and bookkeeping; :mod:`.checks` checks data and trainers; :mod:`.runs`
runs one run on whichever machine; :mod:`.splits` the folds; :mod:`.backends` the backends;
:mod:`.dispatch` submits, polls, collects and resubmits; :mod:`.report` and :mod:`.overlays` the outputs;
:mod:`.runner` the whole study; :mod:`.study_cli` the command. :mod:`nnunet_causal.evaluation` (metrics,
folder evaluation) is below all of them and imports none.

STUDY.yaml schema
-----------------
Relative paths are taken relative to the current working directory; ``$VARS`` and ``~`` are expanded in
paths and in ``env`` values. Unknown keys are errors (they are usually typos).

``dataset`` (required)
    Dataset id (``990``) or name (``Dataset990_SynthEndoscopy``). Must be planned and preprocessed
    (``$nnUNet_preprocessed/DatasetXXX/<plans>.json`` and the configuration's data folder) and its
    dataset.json must hold a ``"domains"`` record for every training case.
``trainers`` (required)
    Non-empty list. Each item is a trainer class name (``nnUNetTrainerCausalText_50epochs``) or a mapping
    ``{name: CLASS, label: "text shown in tables", env: {VAR: value}}`` (``label`` defaults to the name;
    ``env`` is added to the environment of that trainer's commands only). Names and labels must be unique.
    Each class must be findable the way ``nnUNetv2_train`` finds it (nnunetv2's own trainers, then the
    folders in ``nnUNet_extTrainer``; this package's trainer folder is always added).
``output`` (required unless given on the command line with ``--output``)
    Study folder: per-seed ``nnUNet_results``, run logs, evaluations, tables, figures and report.
``configuration`` (default ``2d``), ``plans`` (default ``nnUNetPlans``)
    nnU-Net configuration and plans identifier.
``heldout_domains`` (default ``all``)
    ``all`` or a list of domain names (values of the ``split_by`` field of dataset.json's domain records).
``split_by`` (default ``domain``)
    The domain-record field that defines the domains, passed to ``make-splits --by``: ``domain`` (site or
    source dataset), or e.g. ``modality`` for CT -> MRI folds, ``scanner``, ``source``. splits_final.json is
    shared by everything trained on the dataset: folds it already holds keep their numbers, the study's are
    appended (:mod:`.splits`); do not start two studies on the same dataset at the same moment.
``seeds`` (default ``[0]``)
    List of distinct integers. Every seed gets its own results folder. nnU-Net does not seed its
    training (weight initialisation, patch sampling and augmentation draw from unseeded generators) and
    none of this package's trainers reads a seed, so seeds are *independent repeats* labelled by the
    number; the number is exported as ``nnUNet_causal_study_seed`` for custom trainers that want it.
``device`` (default ``cuda`` when available, else ``cpu``)
    ``cpu``, ``cuda`` or ``mps``, passed as ``-device``.
``env`` (optional)
    Mapping of extra environment variables for every command (``nnUNet_raw``, ``nnUNet_preprocessed``,
    ``nnUNet_n_proc_DA``, ``nnUNet_compile``, ...). Values are strings, numbers or booleans.
    ``nnUNet_results`` is always replaced by the seed's folder under ``output``.
``num_processes`` (default 2)
    Worker processes for evaluation and for ``nnUNetv2_predict`` (``-npp``/``-nps``).
``prediction`` (optional mapping)
    ``mode``: ``validation`` (default; nnU-Net's final validation of the fold) or ``predict`` (stock
    ``nnUNetv2_predict`` on the held-out domain's training images, with the options below);
    ``disable_tta`` (bool, default false), ``step_size`` (float in (0, 1], default 0.5);
    ``prompt_file`` (a prompt file with one line per trained structure, in label order) or ``prompts``
    (a list of such lines): text trainers then segment the trained structures through these wordings
    (``nnUNet_causal_prompt_file``; other trainers ignore it). Prompt options need ``mode: predict``.
``backend`` (default ``local``)
    ``local`` (every run on this machine, one after the other), ``slurm`` or ``ray``, or a mapping
    ``{name: slurm, ...}`` with that backend's settings inline (:mod:`.backends.slurm`,
    :mod:`.backends.ray`; unknown settings are errors). ``nnunet_causal study --backend NAME`` overrides
    the name. Cluster backends need ``pip install "nnunet_causal[cluster]"`` and an output folder every node
    can see. Without ``device``, runs on a cluster backend use ``cuda`` when they are given GPUs, else ``cpu``.
``backend_settings`` (optional)
    ``{slurm: {...}, ray: {...}}``: settings for each backend, so that one file runs on any of them
    (``--backend`` picks). A backend's settings go either inline under ``backend`` or here, not both.
``title`` (optional)
    Report title. ``overlay_cases`` (default 3): cases per domain shown in the overlay figures.

Example::

    dataset: 990
    configuration: 2d
    trainers:
      - nnUNetTrainer_CPUDemo
      - {name: nnUNetTrainerCausalText_CPUDemo, label: causal + text}
    heldout_domains: all
    seeds: [0, 1, 2]
    device: cpu
    output: studies/synthetic_endoscopy
    env: {nnUNet_n_proc_DA: 2}
    backend: local
    backend_settings:
      slurm: {partition: gpu, gpus_per_run: 1, time_min: 720, mem_gb: 48}
      ray: {address: auto, resources_per_run: {num_cpus: 8, num_gpus: 1}}"""
