"""Meta-trainer: real learning per model, determinism, bit-identical resume, early stopping, NaN."""

import math

import pytest
import torch
from torch import nn

from metarec_ref.meta import (
    ALGORITHMS,
    MAML,
    InnerLoopConfig,
    MatchingNet,
    MetaSGD,
    ProtoNet,
    Reptile,
    build_learner,
)
from metarec_ref.models import EventEncoder, build_model
from metarec_ref.train import MetaTrainConfig, MetaTrainer, TrainingDivergedError, validation_metrics
from tests.unit.helpers import SPEC, toy_tasks, toy_world


@pytest.fixture(scope="module")
def data():
    world = toy_world()
    return toy_tasks(200, seed=1, world=world), toy_tasks(60, seed=2, world=world)


def small_model(name, seed=0):
    torch.manual_seed(seed)
    return build_model(name, SPEC, hidden=(16, 8), emb_dim=8)


@pytest.mark.parametrize("name", ["mlp", "wide_deep", "xdeepfm", "melu"])
def test_each_model_meta_trains_and_beats_its_initialisation(data, name):
    train, val = data
    adapt = "dense" if name == "melu" else "all"
    learner = MAML(small_model(name), inner_steps=1, inner_lr=0.1, adapt=adapt)
    before = validation_metrics(learner, val)
    config = MetaTrainConfig(meta_batch_size=16, outer_lr=0.01, meta_steps=40, eval_every=20, patience=None)
    history = MetaTrainer(learner, train, val, config, disable=True).fit()
    after = validation_metrics(learner, val)
    assert list(history["step"]) == [20, 40]
    assert after["val_loss"] < before["val_loss"] - 0.02
    assert after["val_auc"] > before["val_auc"] + 0.05


@pytest.mark.parametrize("kind", ["protonet", "reptile"])
def test_trainer_drives_other_learners_of_the_protocol(data, kind):
    train, val = data
    torch.manual_seed(0)
    if kind == "protonet":
        learner = ProtoNet(EventEncoder(SPEC, hidden=(16,), out_dim=8, emb_dim=8))
    else:
        learner = Reptile(small_model("mlp"), inner_steps=3, inner_lr=0.1)
    before = validation_metrics(learner, val)
    config = MetaTrainConfig(meta_batch_size=16, outer_lr=0.01, meta_steps=40, eval_every=20, patience=None)
    MetaTrainer(learner, train, val, config, disable=True).fit()
    after = validation_metrics(learner, val)
    assert after["val_auc"] > before["val_auc"] + 0.03


def _run(data, learner, steps=12, **kwargs):
    train, val = data
    config = MetaTrainConfig(meta_batch_size=8, outer_lr=0.01, meta_steps=steps, eval_every=4, patience=None, seed=3)
    trainer = MetaTrainer(learner, train, val, config, disable=True, **kwargs)
    return trainer, trainer.fit


def test_same_seed_same_numbers(data):
    t1, fit1 = _run(data, MAML(small_model("mlp"), inner_lr=0.1))
    t2, fit2 = _run(data, MAML(small_model("mlp"), inner_lr=0.1))
    h1, h2 = fit1(), fit2()
    assert h1.equals(h2)
    for (n, p), (_, q) in zip(t1.learner.state_dict().items(), t2.learner.state_dict().items()):
        assert torch.equal(p, q), n


def test_killed_and_resumed_run_equals_uninterrupted(data, tmp_path):
    # Meta-SGD: the learned inner learning rates must survive the checkpoint too.
    full, fit = _run(data, MetaSGD(small_model("wide_deep"), inner_lr=0.05))
    full_history = fit()

    path = tmp_path / "ckpt.pt"
    first, _ = _run(data, MetaSGD(small_model("wide_deep"), inner_lr=0.05), checkpoint_path=path, checkpoint_every=3)
    first.fit(until=6)  # "killed" after step 6, its checkpoint written at step 6
    del first
    torch.manual_seed(123)  # a different global RNG state and init: everything must come from the file
    resumed, _ = _run(data, MetaSGD(small_model("wide_deep", seed=7), inner_lr=0.05))
    resumed.load_checkpoint(path)
    assert resumed.step == 6
    resumed_history = resumed.fit()

    assert resumed_history.equals(full_history)
    full_es, resumed_es = full.early_stopping, resumed.early_stopping
    assert (full_es.best_score, full_es.best_step, full_es.evals_since_best, full_es.stopped) == (
        resumed_es.best_score, resumed_es.best_step, resumed_es.evals_since_best, resumed_es.stopped)
    assert full_es.best_state.keys() == resumed_es.best_state.keys()
    assert all(torch.equal(full_es.best_state[n], resumed_es.best_state[n]) for n in full_es.best_state)
    full_state, resumed_state = full.learner.state_dict(), resumed.learner.state_dict()
    assert any("inner_lrs" in n for n in full_state)
    for n in full_state:
        assert torch.equal(full_state[n], resumed_state[n]), n


def test_checkpoint_loads_with_weights_only_and_rejects_other_config(data, tmp_path):
    path = tmp_path / "ckpt.pt"
    trainer, _ = _run(data, MAML(small_model("mlp"), inner_lr=0.1), checkpoint_path=path, checkpoint_every=2)
    trainer.fit(until=2)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 2 and "sampler" in state["rng"]
    train, val = data
    other = MetaTrainer(
        MAML(small_model("mlp"), inner_lr=0.1), train, val,
        MetaTrainConfig(meta_batch_size=4, meta_steps=12, eval_every=4, seed=3), disable=True,
    )
    with pytest.raises(ValueError, match="meta_batch_size"):
        other.load_checkpoint(path)
    with pytest.raises(ValueError, match="no checkpoint"):
        other.load_checkpoint(tmp_path / "missing.pt")


class DriftingLearner(nn.Module):
    """A protocol learner whose only parameter grows by 1 per step; its query logit is that value."""

    def __init__(self, nan_at: int | None = None):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.steps, self.nan_at = 0, nan_at

    def outer_step(self, batch, optimizer):
        self.steps += 1
        with torch.no_grad():
            self.w += 1.0
        return math.nan if self.steps == self.nan_at else float(self.w.detach())

    def adapt(self, batch):
        return None

    def score(self, state, x):
        return self.w.expand(x["item"].shape)


def test_early_stopping_stops_and_restores_best(data):
    train, val = data
    val = val.select(slice(None))
    val.query_y = torch.zeros_like(val.query_y)  # all-negative queries: softplus(w) grows every step
    config = MetaTrainConfig(meta_batch_size=4, meta_steps=100, eval_every=2, patience=3)
    trainer = MetaTrainer(DriftingLearner(), train, val, config, disable=True)
    history = trainer.fit()
    assert trainer.early_stopping.stopped and trainer.step == 8  # best at the first evaluation, then 3 worse ones
    assert list(history["step"]) == [2, 4, 6, 8]
    assert history["val_loss"].is_monotonic_increasing
    assert trainer.learner.w.item() == 2.0  # restored to the best (first) evaluation
    assert math.isnan(history["val_auc"].iloc[0])  # single-class queries: AUC undefined


def test_nan_loss_stops_with_the_step(data):
    train, val = data
    trainer = MetaTrainer(DriftingLearner(nan_at=3), train, val, MetaTrainConfig(meta_batch_size=4), disable=True)
    with pytest.raises(TrainingDivergedError, match="step 3"):
        trainer.fit()


def test_nan_in_maml_inner_loop_names_the_step(data):
    train, val = data
    bad = toy_tasks(20, seed=5, world=toy_world())
    bad.support_x["dense"][:] = math.nan
    learner = MAML(small_model("mlp"), inner_lr=0.1)
    with pytest.raises(TrainingDivergedError, match="step 1"):
        MetaTrainer(learner, bad, val, MetaTrainConfig(meta_batch_size=4), disable=True).fit()


def test_config_and_input_errors(data):
    train, val = data
    with pytest.raises(ValueError, match="meta_batch_size"):
        MetaTrainConfig(meta_batch_size=0)
    with pytest.raises(ValueError, match="monitor"):
        MetaTrainConfig(monitor="accuracy")
    with pytest.raises(ValueError, match="exceeds"):
        MetaTrainer(MAML(small_model("mlp")), train.select(slice(0, 3)), val, MetaTrainConfig(meta_batch_size=8))
    with pytest.raises(ValueError, match="outer_step"):
        MetaTrainer(nn.Linear(2, 1), train, val)


def test_quiet_progress_bar(data, capsys):
    _, fit = _run(data, MAML(small_model("mlp"), inner_lr=0.1), steps=2)
    fit()
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_build_learner_by_name(data):
    _, val = data
    inner = InnerLoopConfig(inner_steps=2, inner_lr=0.05, first_order=True, adapt="head")
    for name in ALGORITHMS:
        metric_based = name in ("protonet", "matchingnet")
        model = EventEncoder(SPEC, hidden=(8,), out_dim=4) if metric_based else small_model("mlp")
        learner = build_learner(name, model, inner)
        assert learner.score(learner.adapt(val), val.query_x).shape == val.query_y.shape
    maml = build_learner("maml", small_model("mlp"), inner)
    assert (maml.config.inner_steps, maml.config.inner_lr, maml.config.first_order, maml.config.adapt) == (
        2, 0.05, True, "head")
    assert isinstance(build_learner("matchingnet", EventEncoder(SPEC)), MatchingNet)
    assert isinstance(build_learner("reptile", small_model("mlp"), outer_lr=0.5), Reptile)
    with pytest.raises(ValueError, match="unknown algorithm"):
        build_learner("anil", small_model("mlp"))


def test_rating_tasks_train_with_mse_and_report_no_auc(data):
    from metarec_ref.meta import masked_mse_loss

    train, val = (b.select(slice(None)) for b in data)
    for b in (train, val):  # binary labels -> pretend ratings 1 / 5
        b.support_y, b.query_y = 1 + 4 * b.support_y, 1 + 4 * b.query_y
    learner = MAML(small_model("mlp"), loss_fn=masked_mse_loss, inner_lr=0.01)
    before = validation_metrics(learner, val)
    config = MetaTrainConfig(meta_batch_size=16, outer_lr=0.01, meta_steps=30, eval_every=15, patience=None)
    history = MetaTrainer(learner, train, val, config, disable=True).fit()
    assert "val_auc" not in before and history["val_auc"].isna().all()
    assert history["val_loss"].iloc[-1] < before["val_loss"] / 2  # from predicting ~0 to ~the mean rating
