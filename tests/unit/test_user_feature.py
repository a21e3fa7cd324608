"""The optional user feature: encoders, batches, ranking and every model, end to end."""

import numpy as np
import pandas as pd
import pytest
import torch

from metarec_ref.eval import FineTune
from metarec_ref.batch import FeatureSpec
from metarec_ref.batch import UNKNOWN
from metarec_ref.data import NegativeSampling
from metarec_ref.data import Encoders
from metarec_ref.eval import per_task_metrics
from metarec_ref.meta import MAML
from metarec_ref.models import EventEncoder, build_model
from metarec_ref.data import build_item_tasks, build_user_tasks, ranking_targets, to_task_batch
from tests.unit.helpers import NAMES, features

SPEC = FeatureSpec(n_items=30, n_categories=5, n_scenarios=3, n_dense=2, n_users=12)


def with_user(lead, spec=SPEC, seed=0):
    x = features(lead, spec, seed)
    x["user"] = torch.randint(0, spec.n_users, lead, generator=torch.Generator().manual_seed(seed + 1))
    return x


def test_with_users_codes_known_users_and_maps_others_to_unknown(small_log):
    log = small_log
    known = log[log["user_id"] != log["user_id"].iloc[-1]]
    enc = Encoders.fit(log).with_users(known)
    assert Encoders.fit(log).spec.n_users == 0
    assert enc.spec.n_users == known["user_id"].nunique() + 1
    codes = enc.encode_users(log["user_id"])
    assert (codes[log["user_id"].isin(known["user_id"]).to_numpy()] > 0).all()
    assert (codes[~log["user_id"].isin(known["user_id"]).to_numpy()] == UNKNOWN).all()
    with pytest.raises(ValueError, match="with_users"):
        Encoders.fit(log).encode_users(log["user_id"])
    with pytest.raises(ValueError, match="'user_id' is missing"):
        Encoders.fit(log).with_users(log.drop(columns="user_id"))


def test_batches_carry_users_only_when_encoded(small_log):
    log = small_log
    plain = to_task_batch(build_user_tasks(log, 2, 3, negatives=NegativeSampling(1)), Encoders.fit(log))
    assert "user" not in plain.support_x
    enc = Encoders.fit(log).with_users(log)
    tasks = build_item_tasks(log, 1, 1, negatives=NegativeSampling(1), seed=0)
    batch = to_task_batch(tasks, enc)
    assert batch.support_x["user"].shape == batch.support_x["item"].shape
    assert (batch.query_x["user"][~batch.query_mask] == UNKNOWN).all()
    # In an item task the negative resamples the user: the pair now differs in its input.
    events = tasks.events[~tasks.events["is_query"]].sort_values(["task"], kind="stable")
    first = events.groupby("task").head(2)
    expected = enc.encode_users(first["user_id"]).reshape(-1, 2)
    np.testing.assert_array_equal(batch.support_x["user"][:, :2].numpy(), expected)
    assert (expected[:, 0] != expected[:, 1]).all()


def test_ranking_targets_and_catalog_carry_the_task_user(small_log):
    log = small_log
    enc = Encoders.fit(log).with_users(log)
    tasks = build_user_tasks(log, 2, 3, negatives=NegativeSampling(1))
    targets = ranking_targets(tasks, enc)
    last = tasks.events[~tasks.events["is_query"]].groupby("task").tail(1)
    assert targets.user.tolist() == list(enc.encode_users(last["user_id"]))
    x = enc.catalog().features(targets.scenario, targets.user)
    assert x["user"].shape == targets.positives.shape
    assert (x["user"][:, 5] == targets.user).all()
    assert ranking_targets(tasks, Encoders.fit(log)).user is None
    with pytest.raises(ValueError, match="user must have shape"):
        enc.catalog().features(targets.scenario, targets.user[:1])


@pytest.mark.parametrize("name", NAMES)
def test_every_model_reads_the_user(name):
    torch.manual_seed(0)
    model = build_model(name, SPEC, hidden=(16, 8), emb_dim=4)
    x = with_user((3, 5))
    out = model(x)
    assert out.shape == (3, 5) and torch.isfinite(out).all()
    # Nudge the user embeddings away from their tiny initial values: the output must follow the user.
    with torch.no_grad():
        model.embeddings.user.weight.normal_(std=1.0)
    other = dict(x, user=(x["user"] + 1) % SPEC.n_users)
    assert not torch.allclose(model(x), model(other))
    with pytest.raises(ValueError, match=r"missing \['user'\].*with_users"):
        model({k: v for k, v in x.items() if k != "user"})


@pytest.mark.parametrize("name", NAMES)
def test_models_without_users_have_no_user_parameters(name):
    model = build_model(name, FeatureSpec(30, 5, 3, 2), hidden=(16, 8), emb_dim=4)
    assert not any("user" in n for n, _ in model.named_parameters())
    model(features((2, 3)))  # a batch without users is all it needs


def test_event_encoder_reads_the_user_and_bad_spec_raises():
    torch.manual_seed(0)
    encoder = EventEncoder(SPEC, hidden=(8,), out_dim=4, emb_dim=4)
    assert encoder(with_user((2, 3))).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="n_users must be >= 0"):
        build_model("mlp", FeatureSpec(30, 5, 3, 2, n_users=-1))


def test_maml_adapts_a_new_item_from_its_users():
    """The new-item task is learnable once users are seen: AUC on the query goes up after adaptation."""
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    taste = rng.normal(size=n_users)  # one-dimensional taste; item i suits users with sign(side[i])
    side = rng.choice([-1.0, 1.0], size=n_items)
    rows = []
    for item in range(n_items):
        fans = np.flatnonzero(np.sign(taste) == side[item])
        for minute, user in enumerate(rng.choice(fans, size=12, replace=False)):
            rows.append((f"u{user}", f"i{item}", minute + 100 * item))
    log = pd.DataFrame(rows, columns=["user_id", "item_id", "minute"])
    log["timestamp"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(log.pop("minute"), unit="min")
    enc = Encoders.fit(log).with_users(log)
    tasks = build_item_tasks(log, 5, 6, negatives=NegativeSampling(1), seed=0)
    batch = to_task_batch(tasks, enc)
    torch.manual_seed(0)
    # The user table must carry taste: learn it with the item embeddings adapted per task.
    learner = MAML(build_model("mlp", enc.spec, hidden=(16,), emb_dim=4), inner_steps=2, inner_lr=0.5)
    optimizer = torch.optim.Adam(learner.parameters(), lr=0.03)
    train, test = batch.select(slice(0, 20)), batch.select(slice(20, 30))
    for _ in range(150):
        learner.outer_step(train, optimizer)
    adapted = float(per_task_metrics(learner, test)["auc"].nanmean())
    unadapted = float(per_task_metrics(FineTune(learner.model, steps=0), test)["auc"].nanmean())
    assert adapted > 0.65 and adapted - unadapted > 0.15
