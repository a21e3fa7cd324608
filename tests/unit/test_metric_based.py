"""ProtoNet and MatchingNet: they learn a separable task family, handle padding and missing classes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarec_ref.batch import TaskBatch
from metarec_ref.meta import MatchingNet, ProtoNet
from metarec_ref.meta.metric_based import embed_events

N_SIGNAL, N_NOISE, N_CLUSTERS = 4, 12, 4


def cluster_tasks(tasks: int, k: int, q: int, gen: torch.Generator) -> TaskBatch:
    """Each task (user) likes one cluster of items; half of its events come from that cluster.

    Item features are a cluster centre plus small noise in 4 dimensions, and 12 dimensions of
    large noise the encoder must learn to ignore.
    """
    centres = 3.0 * torch.eye(N_CLUSTERS, N_SIGNAL)

    def events(liked: torch.Tensor, n: int):
        labels = (torch.arange(n) < n // 2).float().expand(tasks, n)
        other = (liked.unsqueeze(1) + torch.randint(1, N_CLUSTERS, (tasks, n), generator=gen)) % N_CLUSTERS
        cluster = torch.where(labels.bool(), liked.unsqueeze(1), other)
        signal = centres[cluster] + 0.3 * torch.randn(tasks, n, N_SIGNAL, generator=gen)
        noise = 2.0 * torch.randn(tasks, n, N_NOISE, generator=gen)
        return torch.cat([signal, noise], -1), labels.clone()

    liked = torch.randint(0, N_CLUSTERS, (tasks,), generator=gen)
    support_x, support_y = events(liked, k)
    query_x, query_y = events(liked, q)
    return TaskBatch(support_x, support_y, torch.ones(tasks, k, dtype=torch.bool),
                     query_x, query_y, torch.ones(tasks, q, dtype=torch.bool))


def encoder() -> nn.Module:
    return nn.Sequential(nn.Linear(N_SIGNAL + N_NOISE, 32), nn.ReLU(), nn.Linear(32, 8))


def accuracy(learner, batch: TaskBatch) -> float:
    with torch.no_grad():
        logits = learner.score(learner.adapt(batch), batch.query_x)
    return ((logits > 0).float() == batch.query_y).float().mean().item()


@pytest.mark.parametrize("cls", [ProtoNet, MatchingNet])
def test_meta_training_reaches_high_accuracy_on_separable_tasks(cls):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    learner = cls(encoder())
    test_batch = cluster_tasks(64, 6, 20, torch.Generator().manual_seed(2))
    before = accuracy(learner, test_batch)
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-2)
    for _ in range(150):
        learner.outer_step(cluster_tasks(16, 6, 10, gen), optimizer)
    after = accuracy(learner, test_batch)
    assert after > 0.85, (before, after)
    assert after > before + 0.05, (before, after)


def test_protonet_logit_is_difference_of_squared_distances():
    learner = ProtoNet(nn.Identity())
    support_x = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]])  # positives: first two
    batch = TaskBatch(support_x, torch.tensor([[1.0, 1.0, 0.0]]), torch.ones(1, 3, dtype=torch.bool),
                      torch.zeros(1, 1, 2), torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool))
    state = learner.adapt(batch)
    torch.testing.assert_close(state.positive, torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(state.negative, torch.tensor([[0.0, 4.0]]))
    logits = learner.score(state, torch.tensor([[[1.0, 1.0]]]))
    torch.testing.assert_close(logits, torch.tensor([[(1.0 + 9.0) - 1.0]]))


def _one_task(support_y, support_mask, dim=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    k = support_y.shape[1]
    return TaskBatch(torch.randn(1, k, dim, generator=gen), support_y, support_mask,
                     torch.randn(1, 4, dim, generator=gen), torch.ones(1, 4), torch.ones(1, 4, dtype=torch.bool))


def test_protonet_falls_back_when_a_class_is_missing():
    learner = ProtoNet(nn.Identity())
    mask = torch.ones(1, 3, dtype=torch.bool)
    only_pos = _one_task(torch.ones(1, 3), mask)
    state = learner.adapt(only_pos)
    queries = only_pos.query_x
    d_pos = ((queries - state.positive.unsqueeze(1)) ** 2).sum(-1)
    torch.testing.assert_close(learner.score(state, queries), -d_pos)

    only_neg = _one_task(torch.zeros(1, 3), mask)
    state = learner.adapt(only_neg)
    d_neg = ((queries - state.negative.unsqueeze(1)) ** 2).sum(-1)
    torch.testing.assert_close(learner.score(state, queries), d_neg)

    empty = _one_task(torch.ones(1, 3), torch.zeros(1, 3, dtype=torch.bool))
    torch.testing.assert_close(learner.score(learner.adapt(empty), queries), torch.zeros(1, 4))


def test_matchingnet_with_no_support_scores_zero_and_stays_finite():
    torch.manual_seed(0)
    learner = MatchingNet(encoder())
    batch = _one_task(torch.ones(1, 3), torch.zeros(1, 3, dtype=torch.bool), dim=N_SIGNAL + N_NOISE)
    logits = learner.score(learner.adapt(batch), batch.query_x)
    torch.testing.assert_close(logits, torch.zeros(1, 4))
    loss = learner.meta_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in learner.parameters() if p.grad is not None)


def test_matchingnet_attends_to_the_most_similar_support_event():
    learner = MatchingNet(nn.Identity(), init_temperature=50.0)
    support_x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    batch = TaskBatch(support_x, torch.tensor([[1.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool),
                      support_x, torch.tensor([[1.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool))
    logits = learner.score(learner.adapt(batch), torch.tensor([[[2.0, 0.1], [0.1, 2.0]]]))
    assert logits[0, 0] > 5 and logits[0, 1] < -5
    unsaturated = MatchingNet(nn.Identity(), init_temperature=1.0)
    unsaturated.meta_loss(batch).backward()
    assert unsaturated.log_temperature.grad is not None and unsaturated.log_temperature.grad != 0


def test_matchingnet_attention_is_a_softmax_of_cosines_over_real_support_events():
    torch.manual_seed(0)
    learner = MatchingNet(encoder(), init_temperature=3.0).double()
    batch = cluster_tasks(3, 4, 5, torch.Generator().manual_seed(1))
    batch.support_x, batch.query_x = batch.support_x.double(), batch.query_x.double()
    batch.support_mask[1, 2:] = False  # task 1 has two real support events
    state = learner.adapt(batch)
    weights = learner.attention(state, batch.query_x)
    assert weights.shape == (3, 5, 4)
    for t in range(3):  # by hand, one task and one query event at a time
        real = batch.support_mask[t]
        support = learner.encoder(batch.support_x[t][real])
        for i in range(5):
            query = learner.encoder(batch.query_x[t, i])
            cosines = torch.stack([torch.dot(query, s) / (query.norm() * s.norm()) for s in support])
            expected = torch.zeros(4, dtype=torch.float64)
            expected[real] = torch.softmax(3.0 * cosines, dim=0)
            torch.testing.assert_close(weights[t, i], expected)
    # the score is the logit of the attention-weighted mean label
    prob = (weights * batch.support_y.double().unsqueeze(1)).sum(-1).clamp(learner.eps, 1 - learner.eps)
    torch.testing.assert_close(learner.score(state, batch.query_x), torch.log(prob / (1 - prob)))


@pytest.mark.parametrize("cls", [ProtoNet, MatchingNet])
def test_padded_support_events_change_nothing(cls):
    torch.manual_seed(0)
    learner = cls(encoder())
    batch = cluster_tasks(3, 4, 5, torch.Generator().manual_seed(0))
    padded = TaskBatch(
        torch.cat([batch.support_x, 100 * torch.ones(3, 2, N_SIGNAL + N_NOISE)], 1),
        torch.cat([batch.support_y, torch.ones(3, 2)], 1),
        torch.cat([batch.support_mask, torch.zeros(3, 2, dtype=torch.bool)], 1),
        batch.query_x, batch.query_y, batch.query_mask,
    )
    expected = learner.score(learner.adapt(batch), batch.query_x)
    torch.testing.assert_close(learner.score(learner.adapt(padded), batch.query_x), expected)
    torch.testing.assert_close(learner.meta_loss(padded), learner.meta_loss(batch))


class DictEncoder(nn.Module):
    def __init__(self, n_items=10, dim=4):
        super().__init__()
        self.item = nn.Embedding(n_items, dim)
        self.proj = nn.Linear(dim + 1, dim)

    def forward(self, x):
        return self.proj(torch.cat([self.item(x["item"]), x["dense"]], -1))


@pytest.mark.parametrize("cls", [ProtoNet, MatchingNet])
def test_dict_features_and_full_ranking_shapes(cls):
    torch.manual_seed(0)
    learner = cls(DictEncoder())
    tasks, k, q = 3, 4, 5

    def feats(n):
        return {"item": torch.randint(0, 10, (tasks, n)), "dense": torch.randn(tasks, n, 1)}

    batch = TaskBatch(feats(k), (torch.rand(tasks, k) > 0.5).float(), torch.ones(tasks, k, dtype=torch.bool),
                      feats(q), (torch.rand(tasks, q) > 0.5).float(), torch.ones(tasks, q, dtype=torch.bool))
    state = learner.adapt(batch)
    assert learner.score(state, feats(10)).shape == (tasks, 10)  # e.g. every candidate item
    assert learner.meta_loss(batch).dim() == 0
    with pytest.raises(ValueError, match="tasks"):
        learner.score(state, {"item": torch.zeros(2, 3, dtype=torch.long), "dense": torch.zeros(2, 3, 1)})
    with pytest.raises(ValueError, match="feature keys"):
        learner.adapt(TaskBatch(batch.support_x, batch.support_y, batch.support_mask,
                                {"item": batch.query_x["item"]}, batch.query_y, batch.query_mask))


def test_bad_encoder_output_and_arguments_raise():
    with pytest.raises(ValueError, match="encoder"):
        embed_events(nn.Flatten(0), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="init_temperature"):
        MatchingNet(nn.Identity(), init_temperature=0.0)
