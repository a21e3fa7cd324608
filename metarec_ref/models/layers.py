"""Building blocks of the recommenders: field embeddings, MLP stacks, the CIN.

:func:`flatten_features` turns a feature dict ``{item, category, scenario, dense[, user]}`` of any
leading shape into flat ``(n, ...)`` tensors; :class:`FieldEmbeddings` embeds each sparse field
and concatenates them with the dense features (``concat_dim`` wide); :class:`CIN` is xDeepFM's
compressed interaction network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from metarec_ref.batch import Features, FeatureSpec

SPARSE_KEYS = ("item", "category", "scenario")


def mlp_layers(in_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    """Linear + ReLU layers, ``in_dim -> hidden[0] -> ... -> hidden[-1]``."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers)


def check_spec(spec: FeatureSpec) -> None:
    if not isinstance(spec, FeatureSpec):
        raise ValueError(f"spec must be a FeatureSpec, got {type(spec).__name__}")
    for name in ("n_items", "n_categories", "n_scenarios"):
        if getattr(spec, name) < 1:
            raise ValueError(f"spec.{name} must be >= 1, got {getattr(spec, name)}")
    if spec.n_dense < 0:
        raise ValueError(f"spec.n_dense must be >= 0, got {spec.n_dense}")
    if spec.n_users < 0:
        raise ValueError(f"spec.n_users must be >= 0 (0 = no user feature), got {spec.n_users}")


def sparse_keys(spec: FeatureSpec) -> tuple[str, ...]:
    """The id features a model built from ``spec`` reads: ``user`` joins when ``spec.n_users > 0``."""
    return SPARSE_KEYS + (("user",) if spec.n_users else ())


def flatten_features(x: Features, spec: FeatureSpec) -> tuple[dict[str, Tensor], torch.Size]:
    """Flatten the leading dims of a feature dict to one event dim; return the leading shape."""
    keys = (*sparse_keys(spec), "dense")
    if not isinstance(x, dict):
        raise ValueError(
            f"this model takes a feature dict with keys {list(keys)}, got {type(x).__name__}; "
            "for plain tensors use MLP(in_dim=...)"
        )
    missing = [k for k in keys if k not in x]
    if missing:
        hint = (" (the model was built with n_users > 0: fit the encoders with "
                "Encoders.with_users(...) so that batches carry x['user'])" if "user" in missing else "")
        raise ValueError(f"feature dict is missing {missing}; found {list(x)}{hint}")
    n_dense = spec.n_dense
    lead = x["item"].shape
    flat = {k: x[k].reshape(-1) for k in sparse_keys(spec)}
    for k in sparse_keys(spec):
        if x[k].shape != lead:
            raise ValueError(f"x['{k}'] has shape {tuple(x[k].shape)}, expected {tuple(lead)} like x['item']")
    if x["dense"].shape != (*lead, n_dense):
        raise ValueError(
            f"x['dense'] has shape {tuple(x['dense'].shape)}, expected {(*lead, n_dense)} (n_dense={n_dense})"
        )
    flat["dense"] = x["dense"].reshape(flat["item"].shape[0], n_dense)
    return flat, lead


class FieldEmbeddings(nn.Module):
    """One ``nn.Embedding`` per sparse field; returns ``(events, fields, emb_dim)``."""

    def __init__(self, spec: FeatureSpec, emb_dim: int):
        super().__init__()
        self.item = nn.Embedding(spec.n_items, emb_dim)
        self.category = nn.Embedding(spec.n_categories, emb_dim)
        self.scenario = nn.Embedding(spec.n_scenarios, emb_dim)
        for table in (self.item, self.category, self.scenario):
            nn.init.normal_(table.weight, std=0.05)
        self.user = nn.Embedding(spec.n_users, emb_dim) if spec.n_users else None
        if self.user is not None:
            nn.init.normal_(self.user.weight, std=0.05)
        self.n_fields = len(sparse_keys(spec))
        # Width of concat(): every field's embedding side by side, then the dense features.
        self.concat_dim = self.n_fields * emb_dim + spec.n_dense

    def concat(self, flat: dict[str, Tensor]) -> Tensor:
        """``(events, concat_dim)``: the field embeddings flattened, then the dense features."""
        return torch.cat([self(flat).flatten(1), flat["dense"]], dim=1)

    def forward(self, flat: dict[str, Tensor]) -> Tensor:
        fields = [self.item(flat["item"]), self.category(flat["category"]), self.scenario(flat["scenario"])]
        if self.user is not None:
            fields.append(self.user(flat["user"]))
        return torch.stack(fields, dim=1)


class CIN(nn.Module):
    """Compressed Interaction Network (xDeepFM): explicit vector-wise feature crosses.

    Layer ``l``: ``X_l[h] = sum_{i,j} W_l[h, i, j] * (X_{l-1}[i] * X_0[j])`` (element-wise
    products of embedding vectors), then sum-pooling over the embedding dim of every layer.
    """

    def __init__(self, n_fields: int, layer_sizes: Sequence[int] = (16, 16)):
        super().__init__()
        self.n_fields = n_fields
        sizes = [n_fields, *layer_sizes]
        # A 1x1 convolution over the (h, m) interaction maps is a Linear over h * m channels.
        self.layers = nn.ModuleList(nn.Linear(sizes[i] * n_fields, sizes[i + 1]) for i in range(len(layer_sizes)))
        self.out_dim = sum(layer_sizes)

    def forward(self, x0: Tensor) -> Tensor:
        # x0: (events, fields, emb_dim)
        events, m, d = x0.shape
        x, pooled = x0, []
        for layer in self.layers:
            z = torch.einsum("ehd,emd->ehmd", x, x0).reshape(events, -1, d)  # (events, h*m, d)
            x = torch.relu(layer(z.transpose(1, 2))).transpose(1, 2)  # (events, h_next, d)
            pooled.append(x.sum(dim=2))
        return torch.cat(pooled, dim=1)


__all__ = [
    "check_spec",
    "CIN",
    "FieldEmbeddings",
    "flatten_features",
    "mlp_layers",
    "SPARSE_KEYS",
    "sparse_keys",
]
