"""MetaTrainConfig.outer_update='learner': the trainer applies Reptile's own step of size outer_lr."""

from __future__ import annotations

import copy

import pytest
import torch

from metarec_ref.data import preference_tasks
from metarec_ref.meta import MAML, Reptile
from metarec_ref.models import MLP
from metarec_ref.train import MetaTrainConfig, MetaTrainer


def reptile(outer_lr: float) -> Reptile:
    torch.manual_seed(0)
    return Reptile(MLP(in_dim=8, hidden=(8,)), inner_steps=2, inner_lr=0.1, outer_lr=outer_lr)


def test_learner_update_equals_reptile_outer_step_without_optimizer():
    tasks = preference_tasks(8, 3, 4, seed=1)
    config = MetaTrainConfig(meta_batch_size=4, meta_steps=3, eval_every=3, patience=None, outer_update="learner")
    trained = reptile(0.5)
    by_hand = copy.deepcopy(trained)
    trainer = MetaTrainer(trained, tasks, None, config)
    reference = MetaTrainer(by_hand, tasks, None, config)  # only for its identical batch sampler
    trainer.fit()
    for _ in range(3):
        by_hand.outer_step(reference.sample_batch(), None)
    for (name, a), b in zip(trained.state_dict().items(), by_hand.state_dict().values()):
        assert torch.allclose(a, b), name


def test_outer_lr_matters_with_the_learner_update_and_not_with_adam():
    tasks = preference_tasks(8, 3, 4, seed=1)

    def final_weights(outer_lr: float, update: str) -> torch.Tensor:
        learner = reptile(outer_lr)
        config = MetaTrainConfig(meta_batch_size=4, meta_steps=2, eval_every=2, patience=None, outer_update=update)
        MetaTrainer(learner, tasks, None, config).fit()
        return torch.cat([p.detach().flatten() for p in learner.parameters()])

    assert torch.equal(final_weights(0.1, "adam"), final_weights(0.9, "adam"))  # dead under Adam
    assert not torch.allclose(final_weights(0.1, "learner"), final_weights(0.9, "learner"))


def test_learner_update_needs_a_learner_with_its_own_rule():
    tasks = preference_tasks(8, 3, 4, seed=1)
    with pytest.raises(ValueError, match="outer_update='learner'"):
        MetaTrainer(MAML(MLP(in_dim=8, hidden=(8,))), tasks, None, MetaTrainConfig(meta_batch_size=4, outer_update="learner"))
    with pytest.raises(ValueError, match="outer_update must be one of"):
        MetaTrainConfig(outer_update="sgd")


def test_a_checkpoint_saved_before_outer_update_existed_still_loads(tmp_path):
    tasks = preference_tasks(8, 3, 4, seed=1)
    config = MetaTrainConfig(meta_batch_size=4, meta_steps=2, eval_every=2, patience=None)
    trainer = MetaTrainer(reptile(0.5), tasks, None, config)
    trainer.fit()
    state = trainer.state_dict()
    del state["config"]["outer_update"]  # as written by the previous version
    resumed = MetaTrainer(reptile(0.5), tasks, None, config)
    resumed.load_state_dict(state)
    assert resumed.step == 2
    learner_update = MetaTrainer(reptile(0.5), tasks, None, MetaTrainConfig(
        meta_batch_size=4, meta_steps=2, eval_every=2, patience=None, outer_update="learner"))
    with pytest.raises(ValueError, match="outer_update"):
        learner_update.load_state_dict(state)
