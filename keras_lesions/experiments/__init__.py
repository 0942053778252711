"""Experiments as plans of runs, and the executors that run them.

``plan`` (run specifications and their dependencies), ``layout`` (every path
of an experiment folder), ``context`` (opening a folder, its fingerprint),
one module per experiment kind (``classic_curve``, ``gan_curve``,
``mixture``: the plan builder, the step functions, the report), the
``registry`` of kinds, ``executors`` (sequential, processes, Ray),
``run`` (``run_experiment``, what ``kl experiment`` calls), ``final`` (the
final model, ``kl train-final``), ``compare`` (two finished experiments'
CNN-AUG arms, ``kl compare``) and ``table6`` (the non-network baselines on an
experiment's cells, ``kl baselines --config``).
"""
