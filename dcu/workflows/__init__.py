"""Orchestration: what the command line and the benchmarks run, on top of the method packages.

The layers run one way: ``dcu`` (data, models, the training loop, checkpoints, ledgers) is the ground;
``condense``, ``unlearn`` and ``inversion_attacks`` stand on it and never import each other; this package
stands on all of them: answering a forget request (``request``), evaluating (``evaluate``), tuning
(``tune``), the per-example audit (``audit``), the preset benchmarks (``pipeline``) and the CLI (``cli``).
"""
