"""metarec_ref: the tested meta-learning library behind the metarec book.

Subpackages name the layers; imports only flow upwards (``tests/unit/test_import_rules.py``):

- ``batch`` (the task-batch contract) and ``runtime`` (seeding, devices, progress bars): the ground;
- ``meta`` (fast weights, MAML and first-order MAML, Meta-SGD, Reptile, ProtoNet, MatchingNet), ``models``
  (recommenders and their layers) and ``data`` (event logs to tasks): side by side, blind to
  each other;
- ``eval`` (metrics, evaluation, paired statistics, baselines) and then ``train`` (meta-training);
- ``recipes`` (end-to-end pipelines) and ``book`` (glue and plots for the chapters): on top.
"""

__version__ = "0.1.0"
