"""Data-parallel meta-training with ``torch.distributed``: one meta-batch, its tasks split over ranks.

Meta-training is embarrassingly parallel over tasks. Every rank draws the *same* global
meta-batch (its sampler is seeded identically), keeps its shard of the tasks, computes the
meta-gradient of its shard's mean loss, and the gradients are all-reduced so that every rank
holds the gradient of the mean over the full meta-batch:

    g = sum_r (n_r / N) * g_r        (n_r tasks on rank r, N = meta_batch_size)

which is exactly the single-process gradient, also when shards are unequal (N not divisible by
the number of ranks). Every rank then steps an identical optimizer and ends with identical
meta-parameters, as in PyTorch's ``DistributedDataParallel``. The all-reduce sits in the
optimizer's ``step``, so any learner whose ``outer_step`` fills ``.grad`` and calls
``optimizer.step()`` works unchanged: MAML, first-order MAML, Meta-SGD, Reptile (which sets
``.grad`` itself) and the metric-based learners.

:class:`DistributedMetaTrainer` is a :class:`~metarec_ref.train.meta_trainer.MetaTrainer` with the same
checkpoint format: rank 0 writes, every rank loads, and a checkpoint made with any number of
ranks resumes with any other (the meta-batch size is global). Validation runs on rank 0 and its
result (and the early-stopping decision) is broadcast, so all ranks take the same branch.

Launch with ``torchrun`` (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``)::

    torchrun --nproc_per_node=2 -m metarec_ref.recipes.distributed_cli --config run.json
    python -m metarec_ref.recipes.distributed_cli --config run.json      # one process, same numbers
    python -m metarec_ref.recipes.distributed_cli --help

(the command line and its run configuration live in :mod:`metarec_ref.recipes.distributed_cli`).

Backend ``gloo`` on CPU, ``nccl`` on GPUs (one GPU per rank, ``cuda:LOCAL_RANK``). If a rank
fails (e.g. the loss becomes NaN), ``torchrun`` stops the others.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from metarec_ref.batch import TaskBatch
from metarec_ref.runtime import resolve_device
from metarec_ref.train.meta_trainer import MetaTrainConfig, MetaTrainer, clone_state

# --------------------------------------------------------------------------- process group


@dataclass
class DistributedContext:
    """Where this process stands: its rank, the number of ranks, its device and backend.

    ``backend`` is None for a single process without a process group (every collective is
    then a no-op), so the same code runs with and without ``torchrun``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when a process group is up (collectives really communicate)."""
        return self.backend is not None and dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer (torchrun sets it)") from None


def init_distributed(device: str | torch.device = "auto", backend: str | None = None) -> DistributedContext:
    """Join the process group described by torchrun's environment variables, if any.

    Without ``WORLD_SIZE`` in the environment (a plain ``python`` run) this returns a single-process
    context and starts nothing. device: "auto" (``cuda:LOCAL_RANK`` when CUDA is available, else
    CPU), "cpu" or "cuda". backend: default "nccl" on CUDA, "gloo" on CPU.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside 0..WORLD_SIZE-1={world_size - 1}; launch with torchrun")
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                "use --nproc_per_node <= the number of GPUs, or device='cpu'"
            )
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    if "WORLD_SIZE" not in os.environ:
        return DistributedContext(0, 1, 0, resolved, None)
    backend = backend or ("nccl" if resolved.type == "cuda" else "gloo")
    if backend == "nccl" and resolved.type != "cuda":
        raise ValueError("backend 'nccl' needs CUDA devices; use backend='gloo' on CPU")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"{name} is not set; launch with torchrun or set it (e.g. {name}=127.0.0.1)")
    if not dist.is_initialized():
        kwargs = {"device_id": resolved} if backend == "nccl" else {}
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size, **kwargs)
    return DistributedContext(rank, world_size, local_rank, resolved, backend)


def shutdown_distributed(ctx: DistributedContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if ctx.active:
        dist.destroy_process_group()


def free_port() -> int:
    """A free TCP port on the loopback interface (for MASTER_PORT of a local run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_env(world_size: int, port: int | None = None) -> dict[str, str]:
    """Environment of a one-machine run on loopback only (what torchrun would set, minus the ranks)."""
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port or free_port()),
        "WORLD_SIZE": str(world_size),
        "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo"),  # keep gloo's pairs on loopback
    }


def _local_worker(local_rank: int, fn: Callable, env: dict[str, str], args: tuple) -> None:
    os.environ.update(env)
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank))
    torch.set_num_threads(1)  # ranks share the cores
    fn(*args)


def run_local(fn: Callable, world_size: int, *args) -> None:
    """Run ``fn(*args)`` in ``world_size`` fresh processes on this machine, as torchrun would.

    ``fn`` must be importable (a module-level function); it calls :func:`init_distributed` itself.
    Communication stays on 127.0.0.1. Raises if any rank fails.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    mp.spawn(_local_worker, args=(fn, local_env(world_size), args), nprocs=world_size, join=True)


# --------------------------------------------------------------------------- gradient all-reduce


def shard(index: Tensor, rank: int, world_size: int) -> Tensor:
    """Rank ``rank``'s contiguous part of ``index``; sizes differ by at most one."""
    return torch.tensor_split(index, world_size)[rank]


class AllReduceOptimizer:
    """Wrap an optimizer so ``step()`` first averages ``.grad`` over the ranks, weighted by shard size.

    Set ``weight = n_r / N`` before each step (the trainer does): every rank multiplies its
    gradients by its weight and the sum over ranks is the gradient of the full meta-batch mean.
    All gradients travel in one flat buffer per dtype, with one presence flag per parameter, so
    a parameter with ``.grad = None`` on every rank stays None (the optimizer skips it, exactly
    like a single process). ``state_dict`` / ``load_state_dict`` are the wrapped optimizer's.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, ctx: DistributedContext):
        self.optimizer = optimizer
        self.ctx = ctx
        self.weight = 1.0

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def all_reduce_gradients(self) -> None:
        """Replace every ``.grad`` by the weighted sum over the ranks (collective)."""
        if not self.ctx.active:
            return
        params = [p for group in self.param_groups for p in group["params"]]
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for p in params:
            by_dtype.setdefault(p.dtype, []).append(p)
        for dtype, group in by_dtype.items():
            parts = [
                (p.grad.detach() * self.weight).reshape(-1) if p.grad is not None
                else torch.zeros(p.numel(), dtype=dtype, device=p.device)
                for p in group
            ]
            flags = torch.tensor([p.grad is not None for p in group], dtype=dtype, device=group[0].device)
            buffer = torch.cat([*parts, flags])
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            present = buffer[-len(group):] > 0
            for p, values, has in zip(group, buffer[: -len(group)].split([p.numel() for p in group]),
                                      present.tolist()):
                p.grad = values.view_as(p).clone() if has else None

    def step(self, closure=None):
        self.all_reduce_gradients()
        return self.optimizer.step(closure)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


def broadcast_module(module: nn.Module, ctx: DistributedContext, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (all start identical)."""
    if not ctx.active:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=src)


# --------------------------------------------------------------------------- trainer


class DistributedMetaTrainer(MetaTrainer):
    """:class:`~metarec_ref.train.meta_trainer.MetaTrainer` over several ranks; same arguments plus ``ctx``.

    Every rank gets the same ``train_tasks`` and ``config`` (``meta_batch_size`` is the global
    meta-batch); ``val_tasks`` are only used on rank 0. ``save_checkpoint`` and ``fit`` are
    collective: call them on every rank. Rank 0 writes the checkpoint; every rank reads it, so the
    path must be visible to all ranks (a shared file system across machines).
    """

    def __init__(self, learner: nn.Module, train_tasks: TaskBatch, val_tasks: TaskBatch | None = None,
                 config: MetaTrainConfig | None = None, *, ctx: DistributedContext | None = None, **kwargs):
        self.ctx = ctx or DistributedContext()
        config = config or MetaTrainConfig()
        if config.meta_batch_size < self.ctx.world_size:
            raise ValueError(
                f"meta_batch_size={config.meta_batch_size} is smaller than the {self.ctx.world_size} ranks; "
                "every rank needs at least one task: raise meta_batch_size or use fewer ranks"
            )
        if not self.ctx.is_main:
            kwargs["disable"] = True
        super().__init__(learner, train_tasks, val_tasks if self.ctx.is_main else None, config, **kwargs)
        broadcast_module(self.learner, self.ctx)
        self.optimizer = AllReduceOptimizer(self.optimizer, self.ctx)
        self._loss_weights: list[float] = []
        self._synced = 0  # leading entries of _train_losses already averaged over ranks

    def sample_batch(self) -> TaskBatch:
        """This rank's shard of the global meta-batch (the same draw on every rank)."""
        index = torch.randperm(self.train_tasks.num_tasks, generator=self.generator)[: self.config.meta_batch_size]
        mine = shard(index, self.ctx.rank, self.ctx.world_size)
        weight = len(mine) / self.config.meta_batch_size
        self.optimizer.weight = weight
        self._loss_weights.append(weight)
        return self.train_tasks.select(mine.to(self.device))

    def _sync_train_losses(self) -> None:
        """Turn this rank's shard losses into the meta-batch means (collective)."""
        pending = self._train_losses[self._synced:]
        if self.ctx.active:
            weights = self._loss_weights[self._synced:len(self._train_losses)]
            values = torch.tensor([l * w for l, w in zip(pending, weights)], dtype=torch.float64)
            values = values.to(self.ctx.device)
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
            self._train_losses[self._synced:] = values.tolist()
        self._synced = len(self._train_losses)

    def _evaluate(self) -> None:
        self._sync_train_losses()
        if self.ctx.is_main:
            super()._evaluate()
        es = self.early_stopping
        payload = ([self.rows[-1], es.best_score, es.best_step, es.evals_since_best, es.stopped]
                   if self.ctx.is_main else [None] * 5)
        if self.ctx.active:
            dist.broadcast_object_list(payload, src=0)
        if not self.ctx.is_main:
            row, es.best_score, es.best_step, es.evals_since_best, es.stopped = payload
            self.rows.append(row)
            self._train_losses = []
            if es.best_step == self.step:  # parameters are identical on every rank
                es.best_state = clone_state(self.learner)
        self._loss_weights, self._synced = [], 0

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Rank 0 writes the checkpoint (MetaTrainer's format); collective."""
        self._sync_train_losses()
        if self.ctx.is_main:
            super().save_checkpoint(path)
        self.ctx.barrier()

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Every rank resumes from the same checkpoint (from any number of ranks)."""
        super().load_checkpoint(path)
        self._loss_weights = [1.0] * len(self._train_losses)
        self._synced = len(self._train_losses)


__all__ = [
    "AllReduceOptimizer",
    "DistributedContext",
    "DistributedMetaTrainer",
    "broadcast_module",
    "free_port",
    "init_distributed",
    "local_env",
    "run_local",
    "shard",
    "shutdown_distributed",
]
