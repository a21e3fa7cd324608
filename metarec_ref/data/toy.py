"""A small family of user-preference tasks for teaching the algorithms (chapters 2-4 and the tour).

Each task is one user. Users belong to one of ``n_segments`` taste segments:
``w_u = c_segment + user_noise * e_u`` in ``R^d``. Items are feature vectors ``x ~ N(0, I_d)`` and
the user's preference for an item is ``s = x . w_u / sqrt(d)``. Binary tasks draw
``y ~ Bernoulli(sigmoid(sharpness * s))`` (click / no click); rating tasks use
``y = s + noise * eps``. The segment centres depend on ``world_seed`` only, so tasks drawn with
different ``seed`` are new users of the same shop: exactly the meta-train / meta-test setting.
Two shops can share structure: with ``shared = rho`` the centres are
``sqrt(rho) * C_shared + sqrt(1 - rho) * C_own``, where ``C_shared`` is drawn from
``shared_world_seed`` and ``C_own`` from ``world_seed`` (both scaled by ``segment_scale``). Each
coordinate of a centre then has correlation ``sqrt(rho)`` with the shared world's: ``rho = 0`` (the
default) is an unrelated shop, ``rho = 1`` the shared world itself.
The inputs are plain tensors ``(tasks, k, d)``, so any model taking ``(..., d)`` fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metarec_ref.batch import TaskBatch


@dataclass(frozen=True)
class ToyConfig:
    """The shop behind the toy task family."""

    n_features: int = 8
    n_segments: int = 4
    segment_scale: float = 2.0  # spread of the segment centres
    user_noise: float = 0.5  # individual deviation from the segment centre
    sharpness: float = 3.0  # binary tasks: how deterministic clicks are
    noise: float = 0.1  # rating tasks: observation noise
    world_seed: int = 1234
    shared: float = 0.0  # fraction of the centres' variance drawn from the shared world
    shared_world_seed: int = 1234

    def __post_init__(self) -> None:
        for name in ("n_features", "n_segments"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("segment_scale", "user_noise", "sharpness", "noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.shared <= 1.0:
            raise ValueError(f"shared must be in [0, 1], got {self.shared}")
        if self.shared > 0 and self.world_seed == self.shared_world_seed:
            raise ValueError(
                f"world_seed and shared_world_seed are both {self.world_seed}: a shop cannot share structure "
                "with itself; give it another world_seed (shared=1 then reproduces the shared world)"
            )


def segment_centres(config: ToyConfig) -> torch.Tensor:
    """The ``(n_segments, d)`` taste centres of the shop (fixed by ``world_seed``)."""
    shape = (config.n_segments, config.n_features)
    own = torch.randn(shape, generator=torch.Generator().manual_seed(config.world_seed))
    if config.shared == 0:
        return config.segment_scale * own
    shared = torch.randn(shape, generator=torch.Generator().manual_seed(config.shared_world_seed))
    mixed = config.shared**0.5 * shared + (1 - config.shared) ** 0.5 * own
    return config.segment_scale * mixed


def preference_tasks(
    n_tasks: int,
    k_support: int,
    n_query: int,
    kind: str = "binary",
    config: ToyConfig | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> TaskBatch:
    """``n_tasks`` new users, each with ``k_support`` support and ``n_query`` query items.

    ``kind``: ``"binary"`` (0/1 clicks) or ``"rating"`` (real-valued). ``task_ids`` numbers the
    users ``0..n_tasks-1``; :class:`ToyOracle` knows their true preferences.
    """
    if kind not in ("binary", "rating"):
        raise ValueError(f"kind must be 'binary' or 'rating', got {kind!r}")
    for name, value in (("n_tasks", n_tasks), ("k_support", k_support), ("n_query", n_query)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    config = config or ToyConfig()
    g = torch.Generator().manual_seed(seed)
    d = config.n_features
    weights = _user_weights(n_tasks, config, g)
    x = torch.randn(n_tasks, k_support + n_query, d, generator=g)
    score = torch.einsum("tkd,td->tk", x, weights) / d**0.5
    if kind == "binary":
        y = torch.bernoulli(torch.sigmoid(config.sharpness * score), generator=g)
    else:
        y = score + config.noise * torch.randn(score.shape, generator=g)
    batch = TaskBatch(
        support_x=x[:, :k_support],
        support_y=y[:, :k_support],
        support_mask=torch.ones(n_tasks, k_support, dtype=torch.bool),
        query_x=x[:, k_support:],
        query_y=y[:, k_support:],
        query_mask=torch.ones(n_tasks, n_query, dtype=torch.bool),
        task_ids=torch.arange(n_tasks),
    )
    batch = batch.to(device)
    cast = lambda t: t.to(dtype)
    batch.support_x, batch.query_x = cast(batch.support_x), cast(batch.query_x)
    batch.support_y, batch.query_y = cast(batch.support_y), cast(batch.query_y)
    return batch


def _user_weights(n_tasks: int, config: ToyConfig, generator: torch.Generator) -> torch.Tensor:
    centres = segment_centres(config)
    segment = torch.randint(config.n_segments, (n_tasks,), generator=generator)
    return centres[segment] + config.user_noise * torch.randn(n_tasks, config.n_features, generator=generator)


class ToyOracle:
    """The true preference scores of the users drawn by ``preference_tasks(..., seed=seed)``.

    Follows the evaluation protocol (``adapt`` / ``score``), so it appears in results tables as
    the upper bound no learner can beat on average.
    """

    calibrated = False

    def __init__(self, n_tasks: int, config: ToyConfig | None = None, seed: int = 0):
        self.config = config or ToyConfig()
        self.weights = _user_weights(n_tasks, self.config, torch.Generator().manual_seed(seed))

    def adapt(self, batch: TaskBatch) -> torch.Tensor:
        if batch.task_ids is None:
            raise ValueError("the batch has no task_ids; build it with metarec_ref.data.toy.preference_tasks")
        return self.weights[batch.task_ids.cpu()]

    def score(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("tkd,td->tk", x.detach().cpu().to(state.dtype), state)
        return (scores / self.config.n_features**0.5).to(x.device)
