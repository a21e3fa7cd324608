"""The trainer's outer update: the optimizer it is given (Adam by default), or the learner's own rule when the learner says it has one."""

from __future__ import annotations

import copy
import functools

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

    assert torch.equal(final_weights(0.1, "optimizer"), final_weights(0.9, "optimizer"))  # dead under Adam
    assert not torch.allclose(final_weights(0.1, "learner"), final_weights(0.9, "learner"))


def test_learner_update_needs_a_learner_with_its_own_rule():
    tasks = preference_tasks(8, 3, 4, seed=1)
    with pytest.raises(ValueError, match="outer_update='learner'"):
        MetaTrainer(MAML(MLP(in_dim=8, hidden=(8,))), tasks, None, MetaTrainConfig(meta_batch_size=4, outer_update="learner"))
    with pytest.raises(ValueError, match="outer_update must be one of"):
        MetaTrainConfig(outer_update="sgd")


class OwnRule(MAML):
    """A learner that declares its own outer update (and has no outer_lr): the trainer asks, it does not guess."""

    own_outer_update = True

    def outer_step(self, batch, optimizer=None):
        assert optimizer is None
        with torch.no_grad():
            for p in self.parameters():
                p.mul_(0.5)
        return float(self.meta_loss(batch).detach())


def test_the_trainer_asks_the_learner_whether_it_has_its_own_update():
    tasks = preference_tasks(8, 3, 4, seed=1)
    torch.manual_seed(0)
    learner = OwnRule(MLP(in_dim=8, hidden=(8,)))
    before = [p.detach().clone() for p in learner.parameters()]
    config = MetaTrainConfig(meta_batch_size=4, meta_steps=2, eval_every=2, patience=None, outer_update="learner")
    MetaTrainer(learner, tasks, None, config).fit()
    for old, new in zip(before, learner.parameters()):
        torch.testing.assert_close(new, old * 0.25)


def _sgd_run(make_optimizer) -> torch.Tensor:
    tasks = preference_tasks(8, 3, 4, seed=1)
    torch.manual_seed(0)
    learner = MAML(MLP(in_dim=8, hidden=(8,)), inner_lr=0.1)
    config = MetaTrainConfig(meta_batch_size=4, meta_steps=3, eval_every=3, patience=None)
    MetaTrainer(learner, tasks, None, config, optimizer=make_optimizer(learner)).fit()
    return torch.cat([p.detach().flatten() for p in learner.parameters()])


def test_an_optimizer_or_a_factory_replaces_adam():
    by_instance = _sgd_run(lambda learner: torch.optim.SGD(learner.parameters(), lr=0.5))
    by_factory = _sgd_run(lambda learner: functools.partial(torch.optim.SGD, lr=0.5))
    default = _sgd_run(lambda learner: None)
    torch.testing.assert_close(by_instance, by_factory, rtol=0, atol=0)
    assert not torch.allclose(by_instance, default)


def test_an_optimizer_over_other_tensors_is_refused():
    tasks = preference_tasks(8, 3, 4, seed=1)
    stray = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="not the learner's parameters"):
        MetaTrainer(MAML(MLP(in_dim=8, hidden=(8,))), tasks, None, MetaTrainConfig(meta_batch_size=4), optimizer=stray)


def test_a_checkpoint_that_named_the_optimizer_adam_still_loads():
    tasks = preference_tasks(8, 3, 4, seed=1)
    config = MetaTrainConfig(meta_batch_size=4, meta_steps=2, eval_every=2, patience=None)
    trainer = MetaTrainer(reptile(0.5), tasks, None, config)
    trainer.fit()
    state = trainer.state_dict()
    state["config"]["outer_update"] = "adam"  # as written before an optimizer could be given
    resumed = MetaTrainer(reptile(0.5), tasks, None, config)
    resumed.load_state_dict(state)
    assert resumed.step == 2


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
