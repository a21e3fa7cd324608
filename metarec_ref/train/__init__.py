"""Training: the meta-trainer and distributed meta-training.

This face holds what a chapter, a benchmark or a reader uses; ``train.distributed`` holds the
process-group plumbing (gradient all-reduce, sharding, broadcasting) the distributed trainer uses.
"""

from metarec_ref.train.distributed import (
    DistributedContext,
    DistributedMetaTrainer,
    free_port,
    init_distributed,
    run_local,
    shutdown_distributed,
)
from metarec_ref.train.meta_trainer import (
    EarlyStopping,
    MetaTrainConfig,
    MetaTrainer,
    TrainingDivergedError,
    validation_metrics,
)

__all__ = [
    "DistributedContext",
    "DistributedMetaTrainer",
    "EarlyStopping",
    "MetaTrainConfig",
    "MetaTrainer",
    "TrainingDivergedError",
    "free_port",
    "init_distributed",
    "run_local",
    "shutdown_distributed",
    "validation_metrics",
]
