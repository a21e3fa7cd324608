"""The meta-trainer: meta-batches, the outer optimizer, validation, early stopping, checkpoints.

:class:`MetaTrainer` drives any :class:`~metarec_ref.meta.learners.MetaLearner` that is an
``nn.Module`` (``outer_step(batch, optimizer)``, ``adapt``, ``score``). The outer update is the
optimizer the trainer is given (an optimizer or a factory of one), Adam at ``config.outer_lr`` by
default; ``outer_update="learner"`` calls ``outer_step(batch, None)`` instead, for a learner that
says it has its own update rule (``own_outer_update``: Reptile's step of size ``outer_lr``).
Every ``eval_every`` steps it adapts the learner on
validation tasks and records the mean query loss and AUC; it stops when the monitored value has
not improved for ``patience`` evaluations and (by default) restores the best meta-parameters.

Determinism: meta-batches are drawn with the trainer's own ``torch.Generator`` seeded by
``config.seed``, so the same seed gives the same numbers on CPU. A checkpoint holds everything
needed to continue bit for bit: the learner's ``state_dict`` (Meta-SGD learning rates included),
the optimiser state, the python / numpy / torch / sampler RNG states, the step counter, the
early-stopping state and the history. It is stored with plain types only, so it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from metarec_ref.batch import TaskBatch
from metarec_ref.eval.metrics import per_task_auc
from metarec_ref.meta.functional import NonFiniteInnerLoopError
from metarec_ref.meta.losses import masked_bce_loss
from metarec_ref.runtime import adam, progress_disabled

CHECKPOINT_FORMAT = 1
OUTER_UPDATES = ("optimizer", "learner")
# An optimizer, or what builds one from the learner's parameters (e.g. functools.partial(torch.optim.SGD, lr=0.1)).
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class TrainingDivergedError(FloatingPointError):
    """The meta-training loss became NaN or infinite."""


@dataclass
class MetaTrainConfig:
    """Outer loop of meta-training (the inner loop is configured on the learner)."""

    meta_batch_size: int = 16
    outer_lr: float = 1e-3
    meta_steps: int = 1000
    eval_every: int = 50
    patience: int | None = 5  # evaluations without improvement before stopping; None: never stop
    monitor: str = "val_loss"  # or "val_auc"
    restore_best: bool = True
    eval_chunk_size: int = 256  # validation tasks adapted at once
    seed: int = 0
    # "optimizer": the trainer's optimizer (Adam at outer_lr unless given one); "learner": the
    # learner's own rule, outer_step(batch, None), for a learner with own_outer_update (Reptile).
    outer_update: str = "optimizer"

    def __post_init__(self) -> None:
        for name in ("meta_batch_size", "meta_steps", "eval_every", "eval_chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not self.outer_lr > 0:
            raise ValueError(f"outer_lr must be > 0, got {self.outer_lr!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience!r}")
        if self.monitor not in ("val_loss", "val_auc"):
            raise ValueError(f"monitor must be 'val_loss' or 'val_auc', got {self.monitor!r}")
        if self.outer_update not in OUTER_UPDATES:
            raise ValueError(f"outer_update must be one of {OUTER_UPDATES}, got {self.outer_update!r}")


def validation_metrics(
    learner: nn.Module, tasks: TaskBatch, loss_fn=None, chunk_size: int = 256
) -> dict[str, float]:
    """Mean per-task query loss (and AUC for 0/1 labels) after adapting on the support sets."""
    loss_fn = loss_fn or getattr(learner, "loss_fn", masked_bce_loss)
    losses, aucs = [], []
    binary = bool(((tasks.query_y == 0) | (tasks.query_y == 1))[tasks.query_mask].all())
    for start in range(0, tasks.num_tasks, chunk_size):
        chunk = tasks.select(slice(start, start + chunk_size))
        with torch.no_grad():
            scores = learner.score(learner.adapt(chunk), chunk.query_x)
            losses += [loss_fn(s, y, m) for s, y, m in zip(scores, chunk.query_y, chunk.query_mask)]
        if binary:
            aucs.append(per_task_auc(scores, chunk.query_y, chunk.query_mask))
    out = {"val_loss": float(torch.stack(losses).mean())}
    if binary:
        out["val_auc"] = float(torch.nanmean(torch.cat(aucs)))
    return out


def _rng_state(generator: torch.Generator) -> dict:
    """Every RNG state as plain types / tensors (loadable with weights_only=True)."""
    version, mt, gauss = random.getstate()
    key, np_mt, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": [version, list(mt), gauss],
        "numpy": [key, torch.from_numpy(np_mt.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "sampler": generator.get_state(),
    }


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    key, np_mt, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((key, np_mt.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["sampler"])


def clone_state(module: nn.Module) -> dict[str, Tensor]:
    """A detached copy of ``module.state_dict()``, safe from later in-place updates."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@dataclass
class EarlyStopping:
    """The best monitored score so far (lower is better), when it came, and the weights then."""

    best_score: float = math.inf
    best_step: int = -1
    evals_since_best: int = 0
    best_state: dict[str, Tensor] | None = None
    stopped: bool = False

    def update(self, score: float, step: int, learner: nn.Module, patience: int | None) -> None:
        """Record one evaluation; stop after ``patience`` evaluations without improvement."""
        if score < self.best_score:
            self.best_score, self.best_step, self.evals_since_best = score, step, 0
            self.best_state = clone_state(learner)
            return
        self.evals_since_best += 1
        if patience is not None and self.evals_since_best >= patience:
            self.stopped = True

    def state_dict(self) -> dict:
        # Shallow: the tensors of best_state are already private copies.
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _outer_optimizer(learner: nn.Module, optimizer, outer_lr: float) -> torch.optim.Optimizer:
    """The optimizer given, one built by the factory given, or Adam at ``outer_lr``."""
    if optimizer is None:
        return adam(learner.parameters(), lr=outer_lr)
    if isinstance(optimizer, torch.optim.Optimizer):
        mine = {id(p) for p in learner.parameters()}
        foreign = [p for group in optimizer.param_groups for p in group["params"] if id(p) not in mine]
        if foreign:
            raise ValueError(f"the optimizer holds {len(foreign)} tensor(s) that are not the learner's parameters; "
                             "build it over learner.parameters() (or pass a factory)")
        return optimizer
    if callable(optimizer):
        return optimizer(learner.parameters())
    raise ValueError(f"optimizer must be a torch.optim.Optimizer, a factory of one, or None; got {type(optimizer).__name__}")


class MetaTrainer:
    """Meta-train a learner on a pool of tasks, with validation, early stopping and checkpoints.

    Args:
        learner: a :class:`~metarec_ref.meta.learners.MetaLearner` that is an ``nn.Module``
            (``outer_step``, ``adapt``, ``score``); its parameters are the meta-parameters.
        train_tasks: every meta-training task in one padded :class:`TaskBatch`; meta-batches of
            ``config.meta_batch_size`` distinct tasks are drawn from it with the trainer's own
            generator (seeded by ``config.seed``).
        val_tasks: validation tasks, adapted and scored every ``config.eval_every`` steps (loss,
            and AUC for 0/1 labels); early stopping watches ``config.monitor``. None: no validation.
        config: the outer loop (:class:`MetaTrainConfig`); None: its defaults.
        optimizer: the outer optimizer over ``learner.parameters()``, or a factory called with
            them (e.g. ``functools.partial(torch.optim.SGD, lr=0.1)``); None: Adam at
            ``config.outer_lr``. Not used with ``config.outer_update="learner"``.
        checkpoint_path: where :meth:`save_checkpoint` writes, every ``checkpoint_every`` steps
            (and at the end) when that is given.
        checkpoint_every: steps between checkpoints; needs ``checkpoint_path``.
        disable: silence the progress bar (default: ``METAREC_QUIET``).

    Example::

        trainer = MetaTrainer(MAML(model, inner_steps=2), train, val, MetaTrainConfig(meta_steps=500))
        history = trainer.fit()   # one row per evaluation; the best meta-parameters restored
    """

    def __init__(
        self,
        learner: nn.Module,
        train_tasks: TaskBatch,
        val_tasks: TaskBatch | None = None,
        config: MetaTrainConfig | None = None,
        *,
        optimizer: torch.optim.Optimizer | OptimizerFactory | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        disable: bool | None = None,
    ):
        self.config = config or MetaTrainConfig()
        if not hasattr(learner, "outer_step"):
            raise ValueError(
                f"learner {type(learner).__name__} has no outer_step(batch, optimizer); see metarec_ref.meta.MetaLearner"
            )
        if train_tasks.num_tasks < self.config.meta_batch_size:
            raise ValueError(
                f"meta_batch_size={self.config.meta_batch_size} exceeds the {train_tasks.num_tasks} "
                "training tasks; lower meta_batch_size or build more tasks"
            )
        if self.config.outer_update == "learner" and not getattr(learner, "own_outer_update", False):
            raise ValueError(
                f"outer_update='learner' needs a learner with its own outer update (own_outer_update, as Reptile "
                f"has); {type(learner).__name__} has none: use outer_update='optimizer'"
            )
        if checkpoint_every is not None and checkpoint_path is None:
            raise ValueError("checkpoint_every needs checkpoint_path")
        self.learner = learner
        param = next(learner.parameters(), None)
        self.device = param.device if param is not None else torch.device("cpu")
        self.train_tasks = train_tasks.to(self.device)
        self.val_tasks = None if val_tasks is None else val_tasks.to(self.device)
        self.optimizer = _outer_optimizer(learner, optimizer, self.config.outer_lr)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.disable = progress_disabled() if disable is None else disable
        self.step = 0
        self.rows: list[dict] = []
        self._train_losses: list[float] = []
        self.early_stopping = EarlyStopping()

    @property
    def history(self) -> pd.DataFrame:
        """One row per evaluation: step, train_loss (mean since the last row), val_loss, val_auc."""
        return pd.DataFrame(self.rows, columns=["step", "train_loss", "val_loss", "val_auc"])

    def sample_batch(self) -> TaskBatch:
        """A meta-batch of distinct tasks drawn with the trainer's own generator."""
        index = torch.randperm(self.train_tasks.num_tasks, generator=self.generator)[: self.config.meta_batch_size]
        return self.train_tasks.select(index.to(self.device))

    def _evaluate(self) -> None:
        row = {"step": self.step, "train_loss": float(np.mean(self._train_losses)) if self._train_losses else math.nan}
        self._train_losses = []
        row.update(val_loss=math.nan, val_auc=math.nan)
        if self.val_tasks is not None:
            try:
                row.update(validation_metrics(self.learner, self.val_tasks, chunk_size=self.config.eval_chunk_size))
            except NonFiniteInnerLoopError as err:
                raise TrainingDivergedError(f"meta-training diverged by step {self.step} (validation): {err}") from err
            score = row[self.config.monitor] * (-1 if self.config.monitor == "val_auc" else 1)
            self.early_stopping.update(score, self.step, self.learner, self.config.patience)
        self.rows.append(row)

    def fit(self, until: int | None = None) -> pd.DataFrame:
        """Meta-train up to ``config.meta_steps`` (or step ``until``, to pause); return the history."""
        cfg = self.config
        end = cfg.meta_steps if until is None else min(until, cfg.meta_steps)
        self.learner.train()
        bar = tqdm(total=cfg.meta_steps, initial=self.step, desc="meta-training", disable=self.disable)
        try:
            while self.step < end and not self.early_stopping.stopped:
                batch = self.sample_batch()
                try:
                    optimizer = self.optimizer if cfg.outer_update == "optimizer" else None
                    loss = self.learner.outer_step(batch, optimizer)
                except NonFiniteInnerLoopError as err:
                    raise TrainingDivergedError(f"meta-training diverged at step {self.step + 1}: {err}") from err
                self.step += 1
                if not math.isfinite(loss):
                    raise TrainingDivergedError(
                        f"meta-training diverged at step {self.step}: the meta-loss is {loss}. "
                        "Lower outer_lr or the learner's inner_lr, or check the inputs for NaN"
                    )
                self._train_losses.append(loss)
                bar.update(1)
                if self.step % cfg.eval_every == 0 or self.step == cfg.meta_steps:
                    self._evaluate()
                    bar.set_postfix({k: f"{v:.4f}" for k, v in self.rows[-1].items() if k != "step"})
                if self.checkpoint_every and (self.step % self.checkpoint_every == 0 or self.step == end):
                    self.save_checkpoint(self.checkpoint_path)
        finally:
            bar.close()
        best = self.early_stopping
        if (self.step >= cfg.meta_steps or best.stopped) and cfg.restore_best and best.best_state is not None:
            self.learner.load_state_dict(best.best_state)
        return self.history

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Everything needed to resume, in types that ``torch.load(weights_only=True)`` accepts."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": asdict(self.config),
            "step": self.step,
            "learner": clone_state(self.learner),
            "optimizer": self.optimizer.state_dict(),
            "rng": _rng_state(self.generator),
            "history": [dict(r) for r in self.rows],
            "train_losses": list(self._train_losses),
            "early_stopping": self.early_stopping.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; the learner, tasks and config must match the saved run."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')!r} is not {CHECKPOINT_FORMAT}")
        saved = dict(state["config"])
        if saved.get("outer_update") == "adam":  # the name before an optimizer could be given
            saved["outer_update"] = "optimizer"
        defaults = {f.name: f.default for f in fields(MetaTrainConfig)}
        differ = [k for k, v in asdict(self.config).items() if k != "meta_steps" and saved.get(k, defaults[k]) != v]
        if differ:
            raise ValueError(
                f"the checkpoint was made with a different config for {differ}: "
                f"saved {[saved.get(k) for k in differ]}, now {[getattr(self.config, k) for k in differ]}; "
                "build the trainer with the saved MetaTrainConfig(**checkpoint['config'])"
            )
        self.learner.load_state_dict(state["learner"])
        self.optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"], self.generator)
        self.step = int(state["step"])
        self.rows = [dict(r) for r in state["history"]]
        self._train_losses = list(state["train_losses"])
        self.early_stopping = EarlyStopping(**state["early_stopping"])

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write a checkpoint atomically (a crash mid-write leaves the previous one intact)."""
        tmp = f"{os.fspath(path)}.tmp"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Resume from :meth:`save_checkpoint`; loads with ``weights_only=True``."""
        if not os.path.exists(path):
            raise ValueError(f"no checkpoint at {os.fspath(path)!r}")
        # RNG states must stay on the CPU; load_state_dict moves the rest to the learner's device.
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


__all__ = [
    "EarlyStopping",
    "MetaTrainConfig",
    "MetaTrainer",
    "TrainingDivergedError",
    "clone_state",
    "validation_metrics",
]
