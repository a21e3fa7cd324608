"""Training: the meta-trainer and distributed meta-training."""

from metarec_ref.train.distributed import (
    AllReduceOptimizer,
    broadcast_module,
    DistributedContext,
    DistributedMetaTrainer,
    free_port,
    init_distributed,
    local_env,
    run_local,
    shard,
    shutdown_distributed,
)
from metarec_ref.train.meta_trainer import (
    clone_state,
    EarlyStopping,
    MetaTrainConfig,
    MetaTrainer,
    TrainingDivergedError,
    validation_metrics,
)

__all__ = [
    "AllReduceOptimizer",
    "broadcast_module",
    "clone_state",
    "DistributedContext",
    "EarlyStopping",
    "DistributedMetaTrainer",
    "free_port",
    "init_distributed",
    "local_env",
    "MetaTrainConfig",
    "MetaTrainer",
    "run_local",
    "shard",
    "shutdown_distributed",
    "TrainingDivergedError",
    "validation_metrics",
]
