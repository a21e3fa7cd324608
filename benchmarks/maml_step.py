"""Milliseconds per second-order MAML meta-step: our default, vmap and loop paths vs learn2learn and higher.

Setup: a 3-layer MLP (16-64-64-1), support 10 / query 10, 5 inner steps, meta-batches of 32
and 128 tasks, float32 on CPU with a fixed number of threads. A meta-step is the meta-loss
plus the gradient w.r.t. the model's parameters (no optimizer step, same for every method).
All available meta-gradients are first checked to agree. Methods are timed round-robin, so
background load hits them alike; the median over repeats is reported.

    python benchmarks/maml_step.py [--threads 2] [--repeats 20]

learn2learn 0.2.0 and higher 0.2.1 are optional (see benchmarks/README.md). The last output
line is one JSON object with every timing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import sys
import time
import types

import torch
from torch import nn

from metarec_ref.batch import TaskBatch
from metarec_ref.meta import MAML, masked_bce_loss


class MLP(nn.Module):
    """16-64-64-1 with ReLU; one logit per event."""

    def __init__(self, n_in: int = 16, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def make_batch(tasks: int, k: int, q: int, n_in: int, seed: int) -> TaskBatch:
    gen = torch.Generator().manual_seed(seed)
    return TaskBatch(
        support_x=torch.randn(tasks, k, n_in, generator=gen),
        support_y=(torch.rand(tasks, k, generator=gen) > 0.5).float(),
        support_mask=torch.ones(tasks, k, dtype=torch.bool),
        query_x=torch.randn(tasks, q, n_in, generator=gen),
        query_y=(torch.rand(tasks, q, generator=gen) > 0.5).float(),
        query_mask=torch.ones(tasks, q, dtype=torch.bool),
    )


def bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, y)


def import_learn2learn():
    """learn2learn's MAML without its package __init__ (which needs torchvision, gym, ...)."""
    spec = importlib.util.find_spec("learn2learn")
    if spec is None:
        return None
    try:
        import learn2learn  # noqa: F401
        from learn2learn.algorithms import MAML as L2LMAML
    except Exception:  # a CPU torch next to PyPI's CUDA torchvision fails to import vision
        root = pathlib.Path(spec.origin).parent
        for name in [m for m in sys.modules if m == "learn2learn" or m.startswith("learn2learn.")]:
            del sys.modules[name]
        for name, path in (("learn2learn", root), ("learn2learn.algorithms", root / "algorithms")):
            stub = types.ModuleType(name)
            stub.__path__ = [str(path)]
            sys.modules[name] = stub
        from learn2learn.algorithms.maml import MAML as L2LMAML
    return L2LMAML


def import_higher():
    try:
        import higher
    except ImportError:
        return None
    return higher


def ours(model: nn.Module, batched: bool, steps: int, lr: float, trace: bool | str = False):
    learner = MAML(model, loss_fn=masked_bce_loss, inner_steps=steps, inner_lr=lr, batched=batched, trace=trace)
    params = list(model.parameters())
    return lambda batch: torch.autograd.grad(learner.meta_loss(batch), params)


def learn2learn_step(L2LMAML, model: nn.Module, steps: int, lr: float):
    maml = L2LMAML(model, lr=lr, first_order=False)
    params = list(model.parameters())

    def step(batch: TaskBatch):
        total = 0.0
        for t in range(batch.num_tasks):
            learner = maml.clone()
            for _ in range(steps):
                learner.adapt(bce(learner(batch.support_x[t]), batch.support_y[t]))
            total = total + bce(learner(batch.query_x[t]), batch.query_y[t])
        return torch.autograd.grad(total / batch.num_tasks, params)

    return step


def higher_step(higher, model: nn.Module, steps: int, lr: float):
    inner_opt = torch.optim.SGD(model.parameters(), lr=lr)
    params = list(model.parameters())

    def step(batch: TaskBatch):
        for p in params:
            p.grad = None
        for t in range(batch.num_tasks):
            with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (fmodel, diffopt):
                for _ in range(steps):
                    diffopt.step(bce(fmodel(batch.support_x[t]), batch.support_y[t]))
                (bce(fmodel(batch.query_x[t]), batch.query_y[t]) / batch.num_tasks).backward()
        return [p.grad.clone() for p in params]

    return step


def time_round_robin(
    methods: dict, batch: TaskBatch, repeats: int, warmup: int, clock=time.perf_counter
) -> dict[str, float]:
    """Median milliseconds per call of each method, timed in turn (CUDA synchronised around each call)."""
    sync = torch.cuda.synchronize if batch.device.type == "cuda" else (lambda: None)
    for fn in methods.values():
        for _ in range(warmup):
            fn(batch)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            sync()
            start = clock()
            fn(batch)
            sync()
            times[name].append(clock() - start)
    return {name: 1000 * statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--inner-steps", type=int, default=5)
    parser.add_argument("--inner-lr", type=float, default=0.1)
    parser.add_argument("--support", type=int, default=10)
    parser.add_argument("--query", type=int, default=10)
    parser.add_argument("--n-in", type=int, default=16)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time, robust to other jobs on a shared "
                             "machine when --threads 1")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MLP(args.n_in)
    L2LMAML, higher = import_learn2learn(), import_higher()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"learn2learn {'yes' if L2LMAML else 'missing'}, higher {'yes' if higher else 'missing'}")

    steps, lr = args.inner_steps, args.inner_lr
    methods = {
        "ours_default": ours(model, True, steps, lr, trace="auto"),  # MAML's defaults
        "ours_vmap": ours(model, True, steps, lr),
        "ours_traced": ours(model, True, steps, lr, trace=True),
        "ours_loop": ours(model, False, steps, lr),
    }
    if L2LMAML is not None:
        methods["learn2learn"] = learn2learn_step(L2LMAML, model, steps, lr)
    if higher is not None:
        methods["higher"] = higher_step(higher, model, steps, lr)

    result: dict[str, object] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                                 "clock": args.clock,
                                 "inner_steps": steps, "support": args.support, "query": args.query}
    # The headline speedups use MAML(trace=True), the fastest general path; the "default" ones
    # MAML's defaults (trace="auto": traced once input shapes recur, which they do after the
    # warm-up); the "untraced" ones trace=False (vmap re-run at every call).
    result["malloc_env"] = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    result.update({f"speedup{kind}_vs_{peer}_{n}": None for kind in ("", "_default", "_untraced")
                   for peer in ("learn2learn", "higher") for n in (32, 128)})
    max_diff = 0.0
    for tasks in args.sizes:
        batch = make_batch(tasks, args.support, args.query, args.n_in, seed=tasks)
        reference = methods["ours_vmap"](batch)
        for name, fn in methods.items():
            diff = max((a - b).abs().max().item() for a, b in zip(fn(batch), reference))
            print(f"{tasks:4d} tasks  {name:12s} max |grad - ours_vmap| = {diff:.2e}")
            max_diff = max(max_diff, diff)
        clock = time.perf_counter if args.clock == "wall" else time.process_time
        timings = time_round_robin(methods, batch, args.repeats, args.warmup, clock)
        for name, ms in timings.items():
            print(f"{tasks:4d} tasks  {name:12s} {ms:8.2f} ms/meta-step")
            result[f"{name}_ms_{tasks}"] = round(ms, 3)
        for peer in ("learn2learn", "higher"):
            for kind, ours_name in (("", "ours_traced"), ("_default", "ours_default"), ("_untraced", "ours_vmap")):
                speedup = timings[peer] / timings[ours_name] if peer in timings else None
                result[f"speedup{kind}_vs_{peer}_{tasks}"] = None if speedup is None else round(speedup, 2)
    result["max_grad_diff"] = max_diff
    print(json.dumps(result))


if __name__ == "__main__":
    main()
