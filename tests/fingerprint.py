"""Print a JSON fingerprint of computations the chapters rely on: hashes of their exact bits.

Run by ``tests/test_portability.py`` here and on emulated processors (``qemu-x86_64 -cpu ...``)
under the pinned numerics; the fingerprints must be equal. Small sizes: it runs in seconds here
and under a minute emulated.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from metarec_ref.data import preference_tasks
from metarec_ref.eval import paired_bootstrap
from metarec_ref.eval.classical import ItemKNN
from metarec_ref.eval.metrics import per_task_rmse
from metarec_ref.meta import MAML, MetaSGD
from metarec_ref.models import MLP
from metarec_ref.recipes.new_product_opponents import standardise
from metarec_ref.runtime import adam, seed_everything
from metarec_ref.train import MetaTrainConfig, MetaTrainer


def bits(*tensors) -> str:
    digest = hashlib.sha1()
    for t in tensors:
        digest.update(np.ascontiguousarray(torch.as_tensor(t).detach().cpu().numpy()).tobytes())
    return digest.hexdigest()[:12]


def meta_training(learner_class) -> str:
    seed_everything(0)
    train = preference_tasks(64, 5, 10, seed=10)
    learner = learner_class(MLP(in_dim=8, hidden=(16, 16)), inner_steps=2, inner_lr=0.3)
    config = MetaTrainConfig(meta_batch_size=8, outer_lr=0.01, meta_steps=15, eval_every=100, patience=None, seed=0)
    MetaTrainer(learner, train, None, config).fit()
    return bits(*learner.parameters())


def main() -> None:
    g = torch.Generator().manual_seed(0)
    print_ = {}
    print_["maml"] = meta_training(MAML)
    print_["meta_sgd"] = meta_training(MetaSGD)
    weight = torch.nn.Parameter(torch.randn(40, 7, generator=g))
    optimizer = adam([weight], lr=0.05)
    for _ in range(20):
        optimizer.zero_grad()
        torch.tanh(torch.randn(9, 40, generator=g) @ weight).pow(2).sum().backward()
        optimizer.step()
    print_["adam"] = bits(weight)
    counts = torch.randint(0, 5, (60, 30), generator=g).double()
    print_["item_knn"] = bits(ItemKNN.similarity(counts.T @ counts, shrinkage=3.0, neighbors=10))
    scores, candidates = torch.randn(12, 50, generator=g), torch.rand(12, 50, generator=g) > 0.3
    print_["standardise"] = bits(standardise(scores, candidates))
    print_["rmse"] = bits(per_task_rmse(torch.randn(6, 20, generator=g), torch.randn(6, 20, generator=g)))
    gain = paired_bootstrap(torch.rand(80, generator=g), torch.rand(80, generator=g), seed=0)
    print_["bootstrap"] = bits(torch.tensor([gain.mean, gain.ci_low, gain.ci_high, gain.p_value]))
    print(json.dumps(print_, sort_keys=True))


if __name__ == "__main__":
    main()
