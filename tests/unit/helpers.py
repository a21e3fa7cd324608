"""Helpers shared by several test modules: toy worlds and tasks, tiny models and batches, features, small logs."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from metarec_ref.batch import FeatureSpec, TaskBatch
from metarec_ref.data import validate_events

# ----------------------------------------------------------------- toy world and tasks (baselines, trainer, evaluation)

SPEC = FeatureSpec(n_items=40, n_categories=4, n_scenarios=3, n_dense=2)


def toy_world(spec=SPEC, seed=0, dim=4):
    """Latent item vectors, categories, dense features and per-scenario user centres."""
    g = torch.Generator().manual_seed(seed)
    item_vec = torch.randn(spec.n_items, dim, generator=g)
    category = torch.arange(spec.n_items) % spec.n_categories
    dense = torch.randn(spec.n_items, spec.n_dense, generator=g)
    popularity = torch.randn(spec.n_items, generator=g)
    centres = torch.randn(spec.n_scenarios, dim, generator=g)
    return {"item_vec": item_vec, "category": category, "dense": dense, "pop": popularity, "centres": centres}


def toy_tasks(n_tasks, k=8, q=12, seed=1, spec=SPEC, world=None, user_noise=1.0):
    """Binary-feedback tasks: user taste = scenario centre + personal noise; some padding."""
    world = world or toy_world(spec)
    g = torch.Generator().manual_seed(seed)
    scenario = torch.randint(0, spec.n_scenarios, (n_tasks,), generator=g)
    taste = world["centres"][scenario] + user_noise * torch.randn(n_tasks, world["item_vec"].shape[1], generator=g)
    items = torch.randint(0, spec.n_items, (n_tasks, k + q), generator=g)
    affinity = (taste[:, None, :] * world["item_vec"][items]).sum(-1) + world["pop"][items]
    y = (torch.rand(n_tasks, k + q, generator=g) < torch.sigmoid(2 * affinity)).float()
    x = {
        "item": items,
        "category": world["category"][items],
        "scenario": scenario[:, None].expand(n_tasks, k + q).clone(),
        "dense": world["dense"][items],
    }
    mask = torch.ones(n_tasks, k + q, dtype=torch.bool)
    mask[::3, k - 2 : k] = False  # ragged support sets, as the data layer pads them
    split = lambda t: (t[:, :k], t[:, k:])  # noqa: E731
    sx, qx = {n: split(v)[0] for n, v in x.items()}, {n: split(v)[1] for n, v in x.items()}
    return TaskBatch(sx, y[:, :k], mask[:, :k], qx, y[:, k:], mask[:, k:], task_ids=torch.arange(n_tasks))


def catalog_features(world, scenario):
    """Every item scored for every task: leaves (tasks, n_items, ...)."""
    n = world["item_vec"].shape[0]
    t = scenario.shape[0]
    return {
        "item": torch.arange(n).expand(t, n),
        "category": world["category"].expand(t, n),
        "scenario": scenario[:, None].expand(t, n),
        "dense": world["dense"].expand(t, n, world["dense"].shape[1]),
    }


# ----------------------------------------------------------------- tiny models and batches (MAML, tracing)


class TinyMLP(nn.Module):
    """Smooth (tanh) so that the Hessian term of MAML is not zero."""

    def __init__(self, n_in: int = 3, hidden: int = 4):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)


class EmbeddingModel(nn.Module):
    """Dict features with an embedding table and a dense part; records the table it sees."""

    def __init__(self, n_items: int = 20, dim: int = 4, n_dense: int = 2):
        super().__init__()
        self.item = nn.Embedding(n_items, dim)
        self.head = nn.Sequential(nn.Linear(dim + n_dense, 5), nn.Tanh(), nn.Linear(5, 1))
        self.seen_table_ptrs: list[int] = []

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        self.seen_table_ptrs.append(self.item.weight.data_ptr())
        features = torch.cat([self.item(x["item"]), x["dense"]], dim=-1)
        return self.head(features).squeeze(-1)


def make_batch(tasks=4, k=5, q=6, n_in=3, dtype=torch.float64, seed=0, ragged=False) -> TaskBatch:
    gen = torch.Generator().manual_seed(seed)
    support_mask = torch.ones(tasks, k, dtype=torch.bool)
    query_mask = torch.ones(tasks, q, dtype=torch.bool)
    if ragged:  # task t has k - t real support events and q - t // 2 real query events
        for t in range(tasks):
            support_mask[t, k - t:] = False
            query_mask[t, q - t // 2:] = False
    return TaskBatch(
        support_x=torch.randn(tasks, k, n_in, generator=gen, dtype=dtype),
        support_y=(torch.rand(tasks, k, generator=gen) > 0.5).to(dtype),
        support_mask=support_mask,
        query_x=torch.randn(tasks, q, n_in, generator=gen, dtype=dtype),
        query_y=(torch.rand(tasks, q, generator=gen) > 0.5).to(dtype),
        query_mask=query_mask,
    )


def make_dict_batch(tasks=3, k=4, q=5, n_items=20, seed=0) -> TaskBatch:
    gen = torch.Generator().manual_seed(seed)

    def features(n):
        return {
            "item": torch.randint(0, n_items, (tasks, n), generator=gen),
            "dense": torch.randn(tasks, n, 2, generator=gen),
        }

    return TaskBatch(
        features(k), (torch.rand(tasks, k, generator=gen) > 0.5).float(), torch.ones(tasks, k, dtype=torch.bool),
        features(q), (torch.rand(tasks, q, generator=gen) > 0.5).float(), torch.ones(tasks, q, dtype=torch.bool),
    )


def tiny_model(seed=0, dtype=torch.float64) -> TinyMLP:
    torch.manual_seed(seed)
    return TinyMLP().to(dtype)


def adapted_with_graph(learner, batch):
    """Fast weights and query losses ``(tasks,)`` as ``meta_loss`` computes them (graph kept to the model)."""
    from metarec_ref.meta.fast_weights import FastWeights

    start = FastWeights.of(learner.model, learner.config.adapt)
    return learner._adapt(batch, start, create_graph=not learner.config.first_order, query=True)


def meta_grad(learner: nn.Module, batch: TaskBatch, params=None) -> list[torch.Tensor]:
    params = list(learner.model.parameters()) if params is None else params
    return list(torch.autograd.grad(learner.meta_loss(batch), params))


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


# ----------------------------------------------------------------- base-model features

MODELS_SPEC = FeatureSpec(n_items=30, n_categories=5, n_scenarios=3, n_dense=2)
NAMES = ["mlp", "wide_deep", "xdeepfm", "melu"]


def features(lead, spec=MODELS_SPEC, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "item": torch.randint(0, spec.n_items, lead, generator=g),
        "category": torch.randint(0, spec.n_categories, lead, generator=g),
        "scenario": torch.randint(0, spec.n_scenarios, lead, generator=g),
        "dense": torch.randn(*lead, spec.n_dense, generator=g),
    }


# ----------------------------------------------------------------- small event logs

T0 = pd.Timestamp("2024-01-01")


def make_log(rows) -> pd.DataFrame:
    """rows: (user, item, minute, scenario) -> a validated log (ties in time are frequent)."""
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "minute", "scenario"])
    df["timestamp"] = T0 + pd.to_timedelta(df.pop("minute"), unit="min")
    return validate_events(df, min_users=1, drop_duplicates=False)


def small_log() -> pd.DataFrame:
    rows = [(0, i, i, 0) for i in range(6)] + [(1, i, 10 + i, 1) for i in range(3)]
    rows += [(2, 5, 0, 0), (2, 6, 1, 0), (2, 7, 1, 0), (2, 8, 1, 0), (2, 9, 2, 0)]
    return make_log(rows)


# ----------------------------------------------------------------- Online Retail raw rows


def raw_rows() -> pd.DataFrame:
    rows = [
        ("536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, "2010-12-01 08:26", 2.55, 17850.0, "United Kingdom"),
        ("536365", "71053", "WHITE METAL LANTERN", 6, "2010-12-01 08:26", 3.39, 17850.0, "United Kingdom"),
        ("536365", "71053", "WHITE METAL LANTERN", 6, "2010-12-01 08:26", 3.39, 17850.0, "United Kingdom"),
        ("C536379", "D", "Discount", -1, "2010-12-01 09:41", 27.5, 14527.0, "United Kingdom"),
        ("C536383", "35004C", "SET OF 3 COLOURED  FLYING DUCKS", -1, "2010-12-01 09:49", 4.65, 15311.0, "United Kingdom"),
        ("536414", "22139", "nan", 56, "2010-12-01 11:52", 0.0, None, "United Kingdom"),
        ("536370", "22728", "ALARM CLOCK BAKELIKE PINK", 24, "2010-12-01 08:45", 3.75, 12583.0, "France"),
        ("536370", "POST", "POSTAGE", 3, "2010-12-01 08:45", 18.0, 12583.0, "France"),
        ("536371", "22086", "nan", 80, "2010-12-01 09:00", 2.55, 13748.0, "United Kingdom"),
        ("536372", "22632", "HAND WARMER RED POLKA DOT", 0, "2010-12-01 09:01", 1.85, 17850.0, "United Kingdom"),
        ("536373", "21730", "GLASS STAR FROSTED T-LIGHT HOLDER", 6, "2010-12-01 09:02", 4.25, 17850.0, "United Kingdom"),
    ]
    cols = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
            "CustomerID", "Country"]
    df = pd.DataFrame(rows, columns=cols)
    df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"])
    return df
