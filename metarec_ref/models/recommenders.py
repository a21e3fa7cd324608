"""Base recommenders (built from :mod:`metarec_ref.models.layers`): MLP, Wide&Deep, xDeepFM and a MeLU-style preference estimator.

All models map a feature dict ``{item, category, scenario, dense}`` (or, for :class:`MLP` built
from an input size, a plain tensor ``(..., in_dim)``) to one logit per event with the input's
leading shape: ``x["item"]`` of shape ``(n,)`` gives ``(n,)``, ``(tasks, n)`` gives
``(tasks, n)``. They know no meta-learning algorithm, yet they are written so the meta core can
drive them: no BatchNorm (no running statistics to leak across tasks), no in-place ops on
inputs, no ``.item()``, so ``torch.func.functional_call`` and ``vmap`` work. The final scoring
layers live under ``head`` and embedding tables are ``nn.Embedding`` modules, so
``adapt="head"`` / ``adapt="dense"`` pick the parameters to fine-tune per task.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from metarec_ref.batch import Features, FeatureSpec
from metarec_ref.models.layers import CIN, FieldEmbeddings, check_spec, flatten_features, mlp_layers


class MLP(nn.Module):
    """The article's MLP: concatenated embeddings (+ dense features) -> ReLU layers -> ``head``.

    Build it from a :class:`FeatureSpec` for feature dicts, or from ``in_dim`` for tensor inputs
    ``(..., in_dim)`` (toy regression, embeddings computed elsewhere).
    """

    def __init__(
        self,
        spec: FeatureSpec | None = None,
        *,
        in_dim: int | None = None,
        hidden: Sequence[int] = (64, 32),
        emb_dim: int = 16,
    ):
        super().__init__()
        if (spec is None) == (in_dim is None):
            raise ValueError("pass exactly one of spec (feature dicts) or in_dim (tensor inputs)")
        if isinstance(spec, int):  # MLP(3) reads naturally for tensor inputs
            spec, in_dim = None, spec
        self.spec = spec
        if spec is not None:
            check_spec(spec)
            self.embeddings = FieldEmbeddings(spec, emb_dim)
            in_dim = self.embeddings.concat_dim
        elif in_dim < 1:
            raise ValueError(f"in_dim must be >= 1, got {in_dim}")
        self.in_dim = in_dim
        self.body = mlp_layers(in_dim, hidden)
        self.head = nn.Linear(hidden[-1] if hidden else in_dim, 1)

    def forward(self, x: Features) -> Tensor:
        if self.spec is None:
            if not isinstance(x, Tensor) or x.shape[-1:] != (self.in_dim,):
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"MLP(in_dim={self.in_dim}) takes a tensor (..., {self.in_dim}), got {shape}")
            lead = x.shape[:-1]
            h = x.reshape(-1, self.in_dim)
        else:
            flat, lead = flatten_features(x, self.spec)
            h = self.embeddings.concat(flat)
        return self.head(self.body(h)).reshape(lead)


def _hash_cross(a: Tensor, b: Tensor, n_b: int, buckets: int) -> Tensor:
    """Hashed bucket of the id pair (a, b); distinct pairs may share a bucket (the hashing trick)."""
    pair = a * n_b + b
    # Multiplicative (Knuth) hashing spreads neighbouring pairs; stays inside int64.
    return (pair * 2654435761) % buckets


class WideAndDeep(nn.Module):
    """Wide&Deep: a linear "wide" part over ids and crossed ids + a deep MLP over embeddings.

    Wide crosses: item x scenario and category x scenario, hashed into ``cross_buckets``
    buckets each (memorises "this item sells in this shop"). Logit = wide + ``head(deep)``.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        hidden: Sequence[int] = (64, 32),
        emb_dim: int = 16,
        cross_buckets: int = 10_000,
    ):
        super().__init__()
        check_spec(spec)
        self.spec = spec
        self.cross_buckets = cross_buckets
        # Wide part: one weight per id / crossed id (1-dim embeddings) + a linear map of dense.
        self.wide_item = nn.Embedding(spec.n_items, 1)
        self.wide_category = nn.Embedding(spec.n_categories, 1)
        self.wide_scenario = nn.Embedding(spec.n_scenarios, 1)
        self.wide_item_x_scenario = nn.Embedding(cross_buckets, 1)
        self.wide_category_x_scenario = nn.Embedding(cross_buckets, 1)
        self.wide_user = nn.Embedding(spec.n_users, 1) if spec.n_users else None
        for table in self._wide_tables():
            nn.init.zeros_(table.weight)
        self.wide_dense = nn.Linear(spec.n_dense, 1) if spec.n_dense else None
        # Deep part.
        self.embeddings = FieldEmbeddings(spec, emb_dim)
        deep_in = self.embeddings.concat_dim
        self.deep = mlp_layers(deep_in, hidden)
        self.head = nn.Linear(hidden[-1] if hidden else deep_in, 1)

    def _wide_tables(self) -> list[nn.Embedding]:
        return [
            self.wide_item,
            self.wide_category,
            self.wide_scenario,
            self.wide_item_x_scenario,
            self.wide_category_x_scenario,
        ] + ([self.wide_user] if self.wide_user is not None else [])

    def wide(self, flat: dict[str, Tensor]) -> Tensor:
        """The wide logit ``(events,)``."""
        n_s = self.spec.n_scenarios
        item_x_s = _hash_cross(flat["item"], flat["scenario"], n_s, self.cross_buckets)
        cat_x_s = _hash_cross(flat["category"], flat["scenario"], n_s, self.cross_buckets)
        out = (
            self.wide_item(flat["item"])
            + self.wide_category(flat["category"])
            + self.wide_scenario(flat["scenario"])
            + self.wide_item_x_scenario(item_x_s)
            + self.wide_category_x_scenario(cat_x_s)
        )
        if self.wide_user is not None:
            out = out + self.wide_user(flat["user"])
        if self.wide_dense is not None:
            out = out + self.wide_dense(flat["dense"])
        return out.squeeze(-1)

    def forward(self, x: Features) -> Tensor:
        flat, lead = flatten_features(x, self.spec)
        deep_in = self.embeddings.concat(flat)
        logit = self.wide(flat) + self.head(self.deep(deep_in)).squeeze(-1)
        return logit.reshape(lead)


class XDeepFM(nn.Module):
    """xDeepFM: linear part + CIN (explicit crosses) + DNN (implicit crosses).

    The dense features enter the CIN as a fourth field (a linear projection to ``emb_dim``).
    Logit = linear + ``head([CIN output, DNN output])``.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        emb_dim: int = 16,
        cin_layers: Sequence[int] = (16, 16),
        hidden: Sequence[int] = (64, 32),
    ):
        super().__init__()
        check_spec(spec)
        self.spec = spec
        self.linear_item = nn.Embedding(spec.n_items, 1)
        self.linear_category = nn.Embedding(spec.n_categories, 1)
        self.linear_scenario = nn.Embedding(spec.n_scenarios, 1)
        self.linear_user = nn.Embedding(spec.n_users, 1) if spec.n_users else None
        for table in (self.linear_item, self.linear_category, self.linear_scenario, self.linear_user):
            if table is not None:
                nn.init.zeros_(table.weight)
        self.linear_dense = nn.Linear(spec.n_dense, 1) if spec.n_dense else None
        self.embeddings = FieldEmbeddings(spec, emb_dim)
        self.dense_field = nn.Linear(spec.n_dense, emb_dim) if spec.n_dense else None
        n_fields = self.embeddings.n_fields + (1 if spec.n_dense else 0)
        self.cin = CIN(n_fields, cin_layers)
        self.dnn = mlp_layers(n_fields * emb_dim, hidden)
        dnn_out = hidden[-1] if hidden else n_fields * emb_dim
        self.head = nn.Linear(self.cin.out_dim + dnn_out, 1)

    def forward(self, x: Features) -> Tensor:
        flat, lead = flatten_features(x, self.spec)
        linear = (
            self.linear_item(flat["item"])
            + self.linear_category(flat["category"])
            + self.linear_scenario(flat["scenario"])
        ).squeeze(-1)
        if self.linear_user is not None:
            linear = linear + self.linear_user(flat["user"]).squeeze(-1)
        fields = self.embeddings(flat)  # (events, 3 or 4 with users, emb_dim)
        if self.dense_field is not None:
            linear = linear + self.linear_dense(flat["dense"]).squeeze(-1)
            fields = torch.cat([fields, self.dense_field(flat["dense"]).unsqueeze(1)], dim=1)
        features = torch.cat([self.cin(fields), self.dnn(fields.flatten(1))], dim=1)
        return (linear + self.head(features).squeeze(-1)).reshape(lead)


class MeLU(nn.Module):
    """MeLU-style preference estimator: feature embeddings -> decision layers -> ``head``.

    MeLU (Lee et al., 2019) learns the embeddings globally and adapts only the *decision layers*
    (the fully connected layers) per user. Pass ``adapt=MeLU.adapted_parameter`` (or
    ``adapt="dense"``, the same set here) to the meta core to reproduce that split.
    """

    def __init__(self, spec: FeatureSpec, emb_dim: int = 16, hidden: Sequence[int] = (64, 64)):
        super().__init__()
        check_spec(spec)
        self.spec = spec
        self.embeddings = FieldEmbeddings(spec, emb_dim)
        in_dim = self.embeddings.concat_dim
        self.decision = mlp_layers(in_dim, hidden)
        self.head = nn.Linear(hidden[-1] if hidden else in_dim, 1)

    @staticmethod
    def adapted_parameter(name: str) -> bool:
        """True for the parameters MeLU adapts per user: decision layers and head."""
        return name.startswith(("decision.", "head."))

    def forward(self, x: Features) -> Tensor:
        flat, lead = flatten_features(x, self.spec)
        h = self.embeddings.concat(flat)
        return self.head(self.decision(h)).reshape(lead)


class EventEncoder(nn.Module):
    """Embeds events as vectors ``(*lead, out_dim)``: the encoder of ProtoNet / MatchingNet.

    The same embeddings + ReLU layers as :class:`MLP`, without a scoring head; the last layer is
    linear so embeddings can take any sign.
    """

    def __init__(self, spec: FeatureSpec, hidden: Sequence[int] = (64,), out_dim: int = 32, emb_dim: int = 16):
        super().__init__()
        check_spec(spec)
        self.spec = spec
        self.embeddings = FieldEmbeddings(spec, emb_dim)
        in_dim = self.embeddings.concat_dim
        self.body = mlp_layers(in_dim, hidden)
        self.out = nn.Linear(hidden[-1] if hidden else in_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, x: Features) -> Tensor:
        flat, lead = flatten_features(x, self.spec)
        h = self.embeddings.concat(flat)
        return self.out(self.body(h)).reshape(*lead, self.out_dim)


MODELS = {"mlp": MLP, "wide_deep": WideAndDeep, "xdeepfm": XDeepFM, "melu": MeLU}


def build_model(name: str, spec: FeatureSpec, **kwargs) -> nn.Module:
    """Build a base model by name: ``mlp``, ``wide_deep``, ``xdeepfm`` or ``melu``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](spec, **kwargs)


__all__ = [
    "build_model",
    "EventEncoder",
    "MeLU",
    "MLP",
    "MODELS",
    "WideAndDeep",
    "XDeepFM",
]
