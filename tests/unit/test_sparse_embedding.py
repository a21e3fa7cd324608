"""Row-wise fast weights for embedding tables: the same meta-gradients as the dense path, at the cost of the rows read."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from metarec_ref.batch import UNKNOWN, FeatureSpec, TaskBatch
from metarec_ref.meta import (
    MAML,
    MetaSGD,
    Reptile,
    check_meta_gradient,
)
from metarec_ref.meta.fast_weights import dense_tables, gather_rows, mean_table_change
from metarec_ref.meta.forward import SHARED_ROWS, _routed_forward, _Routing, lookup_rows
from metarec_ref.meta.sparse_embedding import ROW_WISE_MIN_ROWS, unique_rows
from metarec_ref.models import MLP, MeLU, WideAndDeep, XDeepFM
from metarec_ref.models.layers import flatten_features
from tests.unit.helpers import adapted_with_graph

SPEC = FeatureSpec(n_items=40, n_categories=6, n_scenarios=3, n_dense=2)
MODELS = [MLP, WideAndDeep, XDeepFM, MeLU]


def features(tasks: int, k: int, gen: torch.Generator, n_items: int = SPEC.n_items) -> dict[str, torch.Tensor]:
    return {
        "item": torch.randint(0, n_items, (tasks, k), generator=gen),
        "category": torch.randint(0, SPEC.n_categories, (tasks, k), generator=gen),
        "scenario": torch.randint(0, SPEC.n_scenarios, (tasks, k), generator=gen),
        "dense": torch.randn(tasks, k, SPEC.n_dense, generator=gen, dtype=torch.float64),
    }


def make_batch(tasks: int = 4, k: int = 5, q: int = 6, seed: int = 0) -> TaskBatch:
    """Ragged tasks: padded events carry id 0 (UNKNOWN) and mask False, as the task builder pads."""
    gen = torch.Generator().manual_seed(seed)
    sx, qx = features(tasks, k, gen), features(tasks, q, gen)
    support_mask = torch.ones(tasks, k, dtype=torch.bool)
    support_mask[1, 3:] = False
    for key in ("item", "category", "scenario"):
        sx[key][1, 3:] = UNKNOWN
    sx["item"][0, 0] = UNKNOWN  # a real event with an unknown item
    return TaskBatch(
        sx, (torch.rand(tasks, k, generator=gen) > 0.5).double(), support_mask,
        qx, (torch.rand(tasks, q, generator=gen) > 0.5).double(), torch.ones(tasks, q, dtype=torch.bool),
    )


def model_of(cls, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = cls(SPEC).double()
    with torch.no_grad():  # tables that start at zero would hide errors in their gradients
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                module.weight.normal_(0, 0.3)
    return model


def meta_grads(learner: nn.Module, batch: TaskBatch) -> list[torch.Tensor]:
    return list(torch.autograd.grad(learner.meta_loss(batch), list(learner.parameters())))


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor], atol: float = 1e-12) -> None:
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-10)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("batched, trace", [(True, False), (True, True), (False, False)])
def test_row_wise_meta_gradient_equals_the_dense_one(cls, first_order, batched, trace):
    batch = make_batch()
    model = model_of(cls)
    options = {"inner_steps": 2, "inner_lr": 0.5, "first_order": first_order, "batched": batched, "trace": trace}
    dense = MAML(model, sparse_min_rows=0, sparse_embeddings=False, **options)
    sparse = MAML(model, sparse_min_rows=0, **options)
    state = adapted_with_graph(sparse, batch)[0]
    assert state.rows and all(r.shape[1] < 40 for r in state.rows.values())  # tables went row-wise
    assert_same(meta_grads(sparse, batch), meta_grads(dense, batch))


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("adapt", ["head", "dense"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("batched, trace", [(True, False), (True, True), (False, False)])
def test_frozen_tables_gathered_once_give_the_same_meta_gradient(cls, adapt, first_order, batched, trace):
    """Tables that are not adapted still get a meta-gradient: through one gather of the rows all
    tasks read, not one dense embedding backward per lookup."""
    batch = make_batch()
    model = model_of(cls)
    options = {"inner_steps": 2, "inner_lr": 0.5, "first_order": first_order, "batched": batched, "trace": trace,
               "adapt": adapt}
    plain = MAML(model, sparse_min_rows=0, sparse_embeddings=False, **options)
    gathered = MAML(model, sparse_min_rows=0, **options)
    state = adapted_with_graph(gathered, batch)[0]
    shared = [k for k in state.frozen if k.endswith(SHARED_ROWS)]
    assert shared and state.rows == {}  # the frozen tables went through their gathered rows
    assert_same(meta_grads(gathered, batch), meta_grads(plain, batch))


def test_frozen_tables_meta_gradient_matches_finite_differences():
    batch = make_batch(tasks=3)
    learner = MAML(model_of(MeLU), sparse_min_rows=0, inner_steps=2, inner_lr=0.5, adapt="head")
    check = check_meta_gradient(lambda: learner.meta_loss(batch), learner, n_directions=3)
    assert check.max_abs_error < 1e-7
    assert any(k.endswith(SHARED_ROWS) for k in learner.adapt(batch).frozen)


def test_frozen_table_backward_is_one_scatter_not_one_dense_table_per_lookup():
    """With 3 inner steps and a query pass, the plain path runs an embedding backward over the
    whole item table for every lookup; the gathered path runs one."""

    class Spy(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.table_sizes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.embedding_dense_backward.default:
                self.table_sizes.append(args[2])  # num_weights: the rows of the gradient it fills
            return func(*args, **(kwargs or {}))

    batch = make_batch()
    full = {}
    for sparse in (False, True):
        learner = MAML(model_of(MeLU), sparse_min_rows=0, inner_steps=3, adapt="head", sparse_embeddings=sparse)
        loss = learner.meta_loss(batch)
        with Spy() as spy:
            torch.autograd.grad(loss, list(learner.parameters()))
        full[sparse] = spy.table_sizes.count(SPEC.n_items)
    assert full[False] >= 4 and full[True] == 1


def test_dense_option_adapts_full_copies():
    learner = MAML(model_of(MeLU), sparse_min_rows=0, sparse_embeddings=False)
    state = learner.adapt(make_batch())
    assert state.rows == {}
    assert state.local["embeddings.item.weight"].shape == (4, SPEC.n_items, 16)


@pytest.mark.parametrize("cls, batched", [(WideAndDeep, True), (MLP, False)])
def test_row_wise_meta_gradient_matches_finite_differences(cls, batched):
    batch = make_batch(tasks=3)
    learner = MAML(model_of(cls), sparse_min_rows=0, inner_steps=2, inner_lr=0.5, batched=batched)
    check = check_meta_gradient(lambda: learner.meta_loss(batch), learner, n_directions=3)
    assert check.max_abs_error < 1e-7
    assert learner.adapt(batch).rows  # the row-wise path was the one checked


def test_batched_and_looped_row_wise_paths_agree_on_fast_weights_and_scores():
    batch = make_batch()
    model = model_of(XDeepFM)
    batched, looped = MAML(model, sparse_min_rows=0, inner_steps=3, inner_lr=0.3), MAML(model, sparse_min_rows=0, inner_steps=3, inner_lr=0.3, batched=False)
    state_b, state_l = batched.adapt(batch), looped.adapt(batch)
    for name in state_b.adapted:
        torch.testing.assert_close(state_b.adapted[name], state_l.adapted[name], atol=1e-12, rtol=0)
    dense_state = MAML(model, sparse_min_rows=0, inner_steps=3, inner_lr=0.3, sparse_embeddings=False).adapt(batch)
    new_events = features(4, 9, torch.Generator().manual_seed(5))  # mostly ids no support event read
    torch.testing.assert_close(batched.score(state_b, new_events), batched.score(dense_state, new_events),
                               atol=1e-12, rtol=0)


def test_materialised_tables_equal_the_dense_fast_weights():
    batch = make_batch()
    model = model_of(MLP)
    sparse = MAML(model, sparse_min_rows=0, inner_steps=2, inner_lr=0.5).adapt(batch)
    dense = MAML(model, sparse_min_rows=0, inner_steps=2, inner_lr=0.5, sparse_embeddings=False).adapt(batch)
    assert sparse.adapted.keys() == dense.adapted.keys()
    for name in dense.adapted:
        torch.testing.assert_close(sparse.adapted[name], dense.adapted[name], atol=1e-12, rtol=0)
    table = sparse.adapted["embeddings.item.weight"]
    untouched = torch.ones(SPEC.n_items, dtype=torch.bool)
    untouched[batch.support_x["item"][0]] = False
    untouched[batch.query_x["item"][0]] = False
    torch.testing.assert_close(table[0][untouched], model.embeddings.item.weight[untouched])


def test_meta_sgd_and_reptile_agree_with_the_dense_path():
    batch = make_batch()
    for cls in (MetaSGD,):
        model = model_of(MeLU)
        assert_same(meta_grads(cls(model, sparse_min_rows=0, inner_steps=2), batch),
                    meta_grads(cls(model, sparse_min_rows=0, inner_steps=2, sparse_embeddings=False), batch))
    moved = []
    for sparse in (True, False):
        model = model_of(MeLU)
        Reptile(model, sparse_min_rows=0, inner_steps=2, sparse_embeddings=sparse).outer_step(batch)
        moved.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(moved[0], moved[1], atol=1e-12, rtol=0)


def test_mean_table_change_equals_the_mean_of_the_materialised_tables():
    gen = torch.Generator().manual_seed(1)
    shared = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    rows = torch.tensor([[0, 2, 7, 7], [2, 5, 6, 7], [1, 2, 3, 4]])  # 7: padding of the row lists
    local = gather_rows(shared, rows) + torch.randn(3, 4, 3, generator=gen, dtype=torch.float64)
    local[rows == 7] = gather_rows(shared, rows)[rows == 7]  # padding positions never move
    expected = dense_tables(local, shared, rows).mean(0) - shared
    torch.testing.assert_close(mean_table_change(local, shared, rows), expected, atol=1e-14, rtol=0)
    torch.testing.assert_close(mean_table_change(local, shared, rows)[6], (local[1, 2] - shared[6]) / 3)  # one task of 3 read row 6


def test_reptile_direction_never_materialises_full_tables(monkeypatch):
    """Reptile's direction for a row-wise table is averaged from the rows read (no tasks x catalogue copy)."""
    batch = make_batch()
    model = model_of(MeLU)
    reference, _ = Reptile(model, sparse_min_rows=0, inner_steps=2, sparse_embeddings=False).reptile_direction(batch)

    def no_full_tables(*args, **kwargs):
        raise AssertionError("a full per-task table was materialised")

    monkeypatch.setattr("metarec_ref.meta.fast_weights.dense_tables", no_full_tables)
    direction, _ = Reptile(model, sparse_min_rows=0, inner_steps=2).reptile_direction(batch)
    assert direction.keys() == reference.keys()
    for name in direction:
        torch.testing.assert_close(direction[name], reference[name], atol=1e-12, rtol=0)
    moved = direction["embeddings.item.weight"].abs().sum(1).gt(0)
    read = torch.cat([batch.support_x["item"].flatten(), batch.query_x["item"].flatten()]).unique()
    assert set(moved.nonzero().flatten().tolist()) <= set(read.tolist()) and moved.sum() > 0


@pytest.mark.parametrize("sparse", [True, False])
def test_reptile_with_adam_leaves_rows_no_task_read_bit_identical(sparse):
    """Rows no task reads get a direction of exactly 0, so Adam (which rescales tiny values to
    steps of about its learning rate) cannot turn rounding noise into real moves."""
    batch = make_batch(tasks=7)
    model = model_of(MeLU).float()
    as_float = {k: v.float() if v.is_floating_point() else v for k, v in batch.support_x.items()}
    query_float = {k: v.float() if v.is_floating_point() else v for k, v in batch.query_x.items()}
    batch = TaskBatch(as_float, batch.support_y.float(), batch.support_mask, query_float, batch.query_y.float(),
                      batch.query_mask)
    before = model.embeddings.item.weight.detach().clone()
    learner = Reptile(model, sparse_min_rows=0, inner_steps=2, sparse_embeddings=sparse)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    learner.outer_step(batch, optimizer)
    read = torch.cat([batch.support_x["item"].flatten(), batch.query_x["item"].flatten()]).unique()
    untouched = torch.ones(SPEC.n_items, dtype=torch.bool)
    untouched[read] = False
    after = model.embeddings.item.weight.detach()
    assert after[untouched].equal(before[untouched]) and not after[~untouched].equal(before[~untouched])


class PaddedTables(nn.Module):
    """An Embedding with a padding row and EmbeddingBags over a bag of ids per event."""

    def __init__(self, mode: str, padding_idx: int | None = 0):
        super().__init__()
        self.item = nn.Embedding(30, 4, padding_idx=padding_idx)
        self.tags = nn.EmbeddingBag(25, 4, mode=mode, padding_idx=padding_idx)
        self.weighted = nn.EmbeddingBag(25, 4, mode="sum")
        self.head = nn.Linear(12, 1)
        with torch.no_grad():
            for table in (self.item, self.tags, self.weighted):
                table.weight.normal_(0, 0.5)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        lead = x["item"].shape
        tags = x["tags"].reshape(-1, x["tags"].shape[-1])
        h = torch.cat([self.item(x["item"]).reshape(-1, 4), self.tags(tags),
                       self.weighted(tags, per_sample_weights=x["tag_weight"].reshape(tags.shape))], dim=-1)
        return self.head(torch.tanh(h)).reshape(lead)


def padded_batch(tasks: int = 3, k: int = 4, q: int = 5) -> TaskBatch:
    gen = torch.Generator().manual_seed(1)

    def x(n: int) -> dict[str, torch.Tensor]:
        tags = torch.randint(0, 25, (tasks, n, 3), generator=gen)
        tags[0, 0] = 0  # a bag of padding only
        return {"item": torch.randint(0, 30, (tasks, n), generator=gen), "tags": tags,
                "tag_weight": torch.rand(tasks, n, 3, generator=gen, dtype=torch.float64)}

    return TaskBatch(x(k), (torch.rand(tasks, k, generator=gen) > 0.5).double(), torch.ones(tasks, k, dtype=torch.bool),
                     x(q), (torch.rand(tasks, q, generator=gen) > 0.5).double(), torch.ones(tasks, q, dtype=torch.bool))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("batched", [True, False])
def test_padding_rows_and_embedding_bags_follow_the_dense_path(mode, batched):
    """The reference is the dense looped path, first order: torch has no double backward for
    embedding_bag, and under vmap its embedding ignores padding_idx in the backward (the dense
    batched path lets the padding row learn)."""
    batch = padded_batch()
    torch.manual_seed(0)
    model = PaddedTables(mode).double()
    options = {"inner_steps": 2, "inner_lr": 0.5, "first_order": True}
    sparse = MAML(model, sparse_min_rows=0, batched=batched, **options)
    grads = meta_grads(sparse, batch)
    assert_same(grads, meta_grads(MAML(model, sparse_min_rows=0, sparse_embeddings=False, batched=False, **options), batch))
    assert set(sparse.adapt(batch).rows) == {"item.weight", "tags.weight", "weighted.weight"}
    names = [n for n, _ in model.named_parameters()]
    assert grads[names.index("item.weight")][0].abs().max() == 0  # the padding row learns nothing
    assert grads[names.index("tags.weight")][0].abs().max() == 0


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_row_wise_embedding_bags_are_second_order_exact(mode):
    batch = padded_batch()
    torch.manual_seed(0)
    # No padding row here: its gradient is zero by definition, which finite differences do not see.
    learner = MAML(PaddedTables(mode, padding_idx=None).double(), sparse_min_rows=0, inner_steps=2, inner_lr=0.5)
    assert learner.adapt(batch).rows
    assert check_meta_gradient(lambda: learner.meta_loss(batch), learner, n_directions=3).max_abs_error < 1e-7


def test_bag_lookup_with_offsets_matches_embedding_bag():
    torch.manual_seed(0)
    for mode in ("sum", "mean", "max"):
        bag = nn.EmbeddingBag(12, 3, mode=mode, padding_idx=2).double()
        ids = torch.tensor([1, 2, 5, 5, 2, 7, 11, 3])
        offsets = torch.tensor([0, 3, 4, 6])
        rows = unique_rows(ids.unsqueeze(0), 12, 2)[0]
        local = gather_rows(bag.weight, rows.unsqueeze(0))[0]
        routed = _routed_forward(bag, "weight", _Routing({"weight": rows}, {"weight": local}))
        torch.testing.assert_close(routed(ids, offsets), bag(ids, offsets))


def test_unique_rows_sorts_drops_padding_and_rounds_up():
    ids = torch.tensor([[5, 3, 5, 0, -1], [7, 7, 7, 7, 7]])
    rows = unique_rows(ids, num_rows=9, padding_idx=0)
    assert rows.tolist() == [[3, 5], [7, 9]]  # 9 = no row, never read
    assert unique_rows(ids, 9, None).tolist() == [[0, 3, 5, 9], [7, 9, 9, 9]]


def test_lookup_reads_local_rows_and_falls_back_to_the_shared_table():
    shared = torch.arange(12.0).reshape(6, 2)
    rows = torch.tensor([1, 4, 6])  # 6: padding of the row list
    local = -torch.ones(3, 2)
    out = lookup_rows(torch.tensor([4, 2, 1]), shared, rows, local, None)
    assert out.tolist() == [[-1, -1], [4, 5], [-1, -1]]
    dense = dense_tables(local.unsqueeze(0), shared, rows.unsqueeze(0))[0]
    assert dense[[1, 4]].eq(-1).all() and dense[[0, 2, 3, 5]].equal(shared[[0, 2, 3, 5]])


def test_row_wise_cost_does_not_grow_with_the_catalogue():
    """Every per-task tensor of the row-wise state is sized by the rows read, not the catalogue."""
    big = FeatureSpec(n_items=200_000, n_categories=6, n_scenarios=3, n_dense=2)
    torch.manual_seed(0)
    model = MeLU(big)
    gen = torch.Generator().manual_seed(0)
    sx, qx = features(8, 5, gen, big.n_items), features(8, 6, gen, big.n_items)
    batch = TaskBatch({k: v.float() if k == "dense" else v for k, v in sx.items()}, torch.ones(8, 5),
                      torch.ones(8, 5, dtype=torch.bool),
                      {k: v.float() if k == "dense" else v for k, v in qx.items()}, torch.ones(8, 6),
                      torch.ones(8, 6, dtype=torch.bool))
    state, _ = adapted_with_graph(MAML(model, sparse_min_rows=0), batch)
    assert state.local["embeddings.item.weight"].shape == (8, 16, 16)  # 11 rows read -> 16
    assert flatten_features(batch.support_x, big)[1] == (8, 5)


def test_max_norm_tables_stay_dense_with_a_warning():
    class Normed(nn.Module):
        def __init__(self):
            super().__init__()
            self.item = nn.Embedding(10, 3, max_norm=1.0)
            self.head = nn.Linear(3, 1)

        def forward(self, x):
            return self.head(self.item(x)).squeeze(-1)

    gen = torch.Generator().manual_seed(0)
    batch = TaskBatch(torch.randint(0, 10, (2, 3), generator=gen), torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool),
                      torch.randint(0, 10, (2, 3), generator=gen), torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool))
    with pytest.warns(UserWarning, match="max_norm"):
        state = MAML(Normed(), sparse_min_rows=0, batched=False).adapt(batch)
    assert state.rows == {}


def test_small_tables_adapt_densely_by_default():
    """Below ROW_WISE_MIN_ROWS a full copy is cheaper than gathering rows; the numbers are the same."""
    assert ROW_WISE_MIN_ROWS > SPEC.n_items
    batch = make_batch()
    model = model_of(MeLU)
    assert MAML(model).adapt(batch).rows == {}
    assert_same(meta_grads(MAML(model, inner_steps=2), batch), meta_grads(MAML(model, sparse_min_rows=0, inner_steps=2), batch))
    big = FeatureSpec(n_items=ROW_WISE_MIN_ROWS, n_categories=6, n_scenarios=3, n_dense=2)
    torch.manual_seed(0)
    assert set(MAML(MeLU(big).double()).adapt(batch).rows) == {"embeddings.item.weight"}


def test_small_tables_with_a_padding_row_still_go_row_wise():
    """vmap's dense embedding backward lets the padding row learn; the row-wise lookup does not."""
    batch = padded_batch()
    torch.manual_seed(0)
    model = PaddedTables("sum").double()
    learner = MAML(model, inner_steps=2, inner_lr=0.5, first_order=True)
    assert set(learner.adapt(batch).rows) == {"item.weight", "tags.weight"}  # "weighted" has no padding row
    grads = meta_grads(learner, batch)
    assert grads[0][0].abs().max() == 0 and grads[1][0].abs().max() == 0


@pytest.mark.parametrize("adapt", ["all", "head"])
def test_non_contiguous_ids_raise_no_warning(adapt, monkeypatch):
    """Ids sliced out of a wider tensor, or one task's ids expanded to every task (contiguous per
    task under vmap, not in memory), are not contiguous; the lookups must not make torch warn (a
    warning would surface as stderr in every notebook that adapts such a model)."""
    batch = make_batch()
    wide = {k: torch.stack([v, v], dim=-1)[..., 0] if k != "dense" else v for k, v in batch.support_x.items()}
    shared = {k: v[:1].expand_as(v) for k, v in batch.query_x.items()}
    assert not wide["item"].is_contiguous() and shared["item"].stride(0) == 0
    batch = TaskBatch(wide, batch.support_y, batch.support_mask, shared, batch.query_y, batch.query_mask)
    learner = MAML(model_of(MeLU), sparse_min_rows=0, inner_steps=1, adapt=adapt)
    torch._C._set_warnAlways(True)  # torch's warn-once warnings: every time, so an earlier test cannot hide one
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            learner.meta_loss(batch)
    finally:
        torch._C._set_warnAlways(False)
