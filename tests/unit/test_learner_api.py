"""One learner API: keyword-only constructors, one construction rule reached by class or by name, the protocol."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarec_ref.meta import (
    ALGORITHMS,
    MAML,
    InnerLoopConfig,
    MatchingNet,
    MetaLearner,
    MetaSGD,
    ProtoNet,
    Reptile,
    build_learner,
    masked_bce_loss,
    masked_mse_loss,
)
from tests.unit.helpers import adapted_with_graph, flat, make_batch, meta_grad, tiny_model

GRADIENT_BASED = [MAML, MetaSGD, Reptile]


def _config(cls) -> InnerLoopConfig:
    # Reptile is first order by construction; the others take either.
    return InnerLoopConfig(inner_steps=2, inner_lr=0.2, first_order=cls is Reptile, batched=False)


def _same_behaviour(a: nn.Module, b: nn.Module) -> None:
    batch = make_batch()
    torch.testing.assert_close(a.meta_loss(batch), b.meta_loss(batch), rtol=0, atol=0)
    torch.testing.assert_close(a.score(a.adapt(batch), batch.query_x), b.score(b.adapt(batch), batch.query_x),
                               rtol=0, atol=0)


INNER_LOOP_NAMES = [name for name, entry in ALGORITHMS.items() if entry.inner_loop]


def _every_way(name: str, **inner) -> list[nn.Module]:
    """The learner ``name`` built every supported way, with the same inner-loop keywords."""
    entry = ALGORITHMS[name]
    config = InnerLoopConfig().override(**inner) if inner else None
    fixed = dict(entry.fixed)
    ways = [
        entry.learner(tiny_model(), **fixed, **inner),
        build_learner(name, tiny_model(), **inner),
    ]
    if config is None:  # no config: the class default, however it is reached
        ways += [entry.learner(tiny_model(), config=None, **fixed), build_learner(name, tiny_model(), None)]
    else:
        ways += [entry.learner(tiny_model(), config=config, **fixed), build_learner(name, tiny_model(), config)]
    return ways


@pytest.mark.parametrize("name", INNER_LOOP_NAMES)
@pytest.mark.parametrize("inner", [{}, {"inner_steps": 2, "inner_lr": 0.2, "batched": False}])
def test_every_way_of_building_a_learner_gives_the_same_config(name, inner):
    ways = _every_way(name, **inner)
    configs = [learner.config for learner in ways]
    assert all(type(learner) is ALGORITHMS[name].learner for learner in ways)
    assert all(config == configs[0] for config in configs), configs
    for key, value in ALGORITHMS[name].fixed.items():
        assert getattr(configs[0], key) == value
    if inner:
        _same_behaviour(ways[0], ways[-1])


def test_reptile_defaults_agree_by_class_and_by_name():
    assert Reptile(tiny_model()).config == build_learner("reptile", tiny_model()).config
    assert Reptile(tiny_model()).config == InnerLoopConfig(inner_steps=5, first_order=True)


@pytest.mark.parametrize("name", INNER_LOOP_NAMES)
def test_one_default_config_serves_every_learner(name):
    """A config written once (second order by default) builds every algorithm; Reptile reads it first order."""
    config = InnerLoopConfig(inner_steps=2, inner_lr=0.1)
    learner = build_learner(name, tiny_model(), config)
    assert learner.config.inner_steps == 2 and learner.config.inner_lr == 0.1
    assert learner.config.first_order == (name in ("fomaml", "reptile"))
    assert torch.isfinite(learner.meta_loss(make_batch()))


def test_subclass_keywords_pass_through_every_way():
    config = InnerLoopConfig(inner_steps=2, inner_lr=0.2)
    for learner in (Reptile(tiny_model(), config=config, outer_lr=0.5),
                    build_learner("reptile", tiny_model(), config, outer_lr=0.5)):
        assert learner.outer_lr == 0.5 and learner.config == config.override(first_order=True)


def test_a_name_that_fixes_a_field_refuses_its_opposite():
    with pytest.raises(ValueError, match="'fomaml' fixes"):
        build_learner("fomaml", tiny_model(), first_order=False)


@pytest.mark.parametrize("cls", GRADIENT_BASED)
def test_keywords_apply_over_the_config(cls):
    learner = cls(tiny_model(), config=_config(cls), inner_lr=0.7)
    assert learner.config == InnerLoopConfig(inner_steps=2, inner_lr=0.7, first_order=cls is Reptile, batched=False)


def test_defaults_come_from_inner_loop_config():
    assert MAML(tiny_model()).config == InnerLoopConfig()
    assert MetaSGD(tiny_model()).config == InnerLoopConfig()
    assert Reptile(tiny_model()).config == InnerLoopConfig(inner_steps=5, first_order=True)
    assert [cls.own_outer_update for cls in (MAML, MetaSGD, Reptile, ProtoNet, MatchingNet)] == [
        False, False, True, False, False]


@pytest.mark.parametrize("make", [
    lambda: MAML(tiny_model(), masked_bce_loss),
    lambda: MetaSGD(tiny_model(), InnerLoopConfig()),
    lambda: Reptile(tiny_model(), InnerLoopConfig(first_order=True)),
    lambda: ProtoNet(nn.Linear(3, 4), masked_bce_loss),
    lambda: MatchingNet(nn.Linear(3, 4), masked_bce_loss, 10.0),
])
def test_arguments_after_the_model_are_keyword_only(make):
    with pytest.raises(TypeError, match="positional"):
        make()


@pytest.mark.parametrize("cls", GRADIENT_BASED)
def test_unknown_keyword_names_the_valid_fields(cls):
    with pytest.raises(ValueError, match=r"unknown inner-loop option\(s\) \['inner_step'\].*inner_steps"):
        cls(tiny_model(), inner_step=3)


def test_config_must_be_an_inner_loop_config():
    with pytest.raises(ValueError, match="InnerLoopConfig"):
        MAML(tiny_model(), config={"inner_steps": 2})


def test_reptile_refuses_second_order_only_when_asked_for():
    with pytest.raises(ValueError, match="first order"):
        Reptile(tiny_model(), first_order=False)
    assert Reptile(tiny_model(), config=InnerLoopConfig()).config.first_order  # a config's default is not a request


def test_metric_learners_take_keywords():
    learner = MatchingNet(nn.Linear(3, 4), loss_fn=masked_mse_loss, init_temperature=5.0, eps=0.01)
    assert learner.loss_fn is masked_mse_loss and learner.eps == 0.01
    assert ProtoNet(nn.Linear(3, 4), loss_fn=masked_mse_loss).loss_fn is masked_mse_loss


# ----------------------------------------------------------------- registry


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_build_learner_for_every_name(name):
    entry = ALGORITHMS[name]
    model = tiny_model() if entry.inner_loop else nn.Linear(3, 4).double()  # metric learners: an encoder
    inner = InnerLoopConfig(inner_steps=2, inner_lr=0.2)
    learner = build_learner(name, model, inner, loss_fn=masked_mse_loss)
    assert type(learner) is entry.learner and learner.loss_fn is masked_mse_loss
    assert isinstance(learner, MetaLearner)
    if entry.inner_loop:
        assert learner.config == inner.override(**entry.fixed, **({"first_order": True} if name == "reptile" else {}))
    batch = make_batch()
    assert learner.score(learner.adapt(batch), batch.query_x).shape == batch.query_y.shape


def test_fomaml_is_maml_first_order():
    batch = make_batch()
    fomaml = build_learner("fomaml", tiny_model(), InnerLoopConfig(inner_steps=2, inner_lr=0.3))
    maml = MAML(tiny_model(), inner_steps=2, inner_lr=0.3, first_order=True)
    second_order = MAML(tiny_model(), inner_steps=2, inner_lr=0.3)
    assert type(fomaml) is MAML and fomaml.config == maml.config
    torch.testing.assert_close(flat(meta_grad(fomaml, batch)), flat(meta_grad(maml, batch)), rtol=0, atol=0)
    assert (flat(meta_grad(fomaml, batch)) - flat(meta_grad(second_order, batch))).abs().max() > 1e-6


def test_unknown_algorithm_lists_the_names():
    with pytest.raises(ValueError, match="unknown algorithm 'anil'.*fomaml"):
        build_learner("anil", tiny_model())


# ----------------------------------------------------------------- named inner loops


def test_meta_loss_keeps_the_graph_and_adapt_does_not():
    batch = make_batch()
    learner = MAML(tiny_model(), inner_steps=2, inner_lr=0.3)
    state, losses = adapted_with_graph(learner, batch)
    assert losses.shape == (batch.num_tasks,) and losses.requires_grad
    assert all(v.requires_grad for v in state.adapted.values())
    torch.testing.assert_close(learner.meta_loss(batch), losses.mean())
    losses.sum().backward()
    assert any(p.grad is not None for p in learner.model.parameters())
    detached = learner.adapt(batch)
    assert not any(v.requires_grad for v in detached.adapted.values())
    for name, value in detached.adapted.items():
        torch.testing.assert_close(value, state.adapted[name].detach())


def test_one_public_adapt():
    public = {name for name in dir(MAML) if "adapt" in name and not name.startswith("_")}
    assert public == {"adapt"}


def test_learners_have_no_forward():
    for learner in (MAML(tiny_model()), ProtoNet(nn.Linear(3, 4))):
        with pytest.raises(NotImplementedError):
            learner(make_batch())


@pytest.mark.parametrize("cls", GRADIENT_BASED)
@pytest.mark.parametrize("batched", [True, False])
def test_a_batch_in_another_dtype_than_the_model_gets_a_clear_error(cls, batched):
    learner = cls(tiny_model(dtype=torch.float32), inner_steps=1, batched=batched)
    with pytest.raises(ValueError, match=r"support_x\['<tensor>'\] is torch.float64 but the model's parameters are "
                                         r"torch.float32.*learner.to\(torch.float64\)"):
        learner.meta_loss(make_batch(dtype=torch.float64))


def test_a_model_that_casts_its_inputs_is_not_refused():
    class Casting(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(3, 1)

        def forward(self, x):
            return self.head(x.float()).squeeze(-1)

    torch.manual_seed(0)
    loss = MAML(Casting(), inner_steps=1).meta_loss(make_batch(dtype=torch.float32))
    assert torch.isfinite(loss)
    mixed = make_batch(dtype=torch.float64)
    assert torch.isfinite(MAML(Casting(), inner_steps=1, loss_fn=lambda lg, y, m: masked_bce_loss(lg.double(), y, m))
                          .meta_loss(mixed))
