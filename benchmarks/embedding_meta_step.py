"""Milliseconds and peak memory per second-order MAML meta-step on a recommender with embedding tables.

Setup: a MeLU-like model (item embeddings of width 32, category embeddings of width 16, 8 dense
features, a three-layer head 56-64-64-1), 5 support and 20 query events per task, 3 inner steps,
catalogues of 2,000 / 50,000 / 500,000 items, meta-batches of 32 and 128 tasks, adapting every
parameter (``all``) or the head only. A meta-step is the meta-loss plus its gradient w.r.t. every
model parameter (no optimizer step). Methods:

- ``ours``: ``MAML(model, adapt=...)`` with its defaults (batched, traced, embedding tables
  adapted row-wise: each task gathers the rows its events read);
- ``ours_untraced``: the same with ``trace=False``;
- ``ours_dense``: ``sparse_embeddings=False`` (every task adapts a full copy of each table);
  only up to 50,000 items (its memory grows with tasks x catalogue);
- ``learn2learn`` 0.2.0 (``MAML.clone()`` / ``adapt``; head only through its ``maml_update``),
  ``higher`` 0.2.1 (``innerloop_ctx``; head only with a zero learning rate elsewhere) and
  ``torchopt`` 0.7.3 (its pure-Python functional API, ``torchopt.sgd`` + ``apply_updates`` on
  ``torch.func.functional_call``: its compiled extension does not load on torch 2.13, an
  undefined symbol). Peers loop over tasks and backpropagate task by task (their usual style,
  and what keeps their memory to one task's graph).

Every method's meta-gradient is compared with ``ours_dense`` (``ours_untraced`` where the dense
path is skipped); methods are timed round-robin (median of ``--repeats``). Peak memory is the most
tensor memory held at once during one meta-step, above what was held before it: on CUDA the
allocator's peak, on CPU the running total of the profiler's allocation records (exact and the same
on every run; the resident set moves by megabytes with the heap's state). It includes the
gradients the step returns (``grad_mb_...``: one tensor per parameter, the item table's included),
which is all that grows with the catalogue once tasks gather rows. The flatness target is on time
and peak memory. The last line is one JSON object.

    python benchmarks/embedding_meta_step.py [--quick] [--threads 2]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import pathlib
import sys
import tempfile
import time

import torch
from torch import nn
from torch.func import functional_call

from metarec_ref.batch import TaskBatch
from metarec_ref.meta import MAML, masked_bce_loss

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from maml_step import bce, import_higher, import_learn2learn, time_round_robin

SUPPORT, QUERY, STEPS, LR = 5, 20, 3, 0.1
N_CATEGORIES, N_DENSE = 100, 8


class MeLULike(nn.Module):
    """Item and category embeddings + dense features -> three-layer ``head``."""

    def __init__(self, n_items: int, item_dim: int = 32, category_dim: int = 16, hidden: int = 64):
        super().__init__()
        self.item = nn.Embedding(n_items, item_dim)
        self.category = nn.Embedding(N_CATEGORIES, category_dim)
        for table in (self.item, self.category):
            nn.init.normal_(table.weight, std=0.05)
        width = item_dim + category_dim + N_DENSE
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, 1))

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        h = torch.cat([self.item(x["item"]), self.category(x["category"]), x["dense"]], dim=-1)
        return self.head(h).squeeze(-1)


def make_batch(tasks: int, n_items: int, seed: int) -> TaskBatch:
    gen = torch.Generator().manual_seed(seed)

    def features(k: int) -> dict[str, torch.Tensor]:
        return {"item": torch.randint(0, n_items, (tasks, k), generator=gen),
                "category": torch.randint(0, N_CATEGORIES, (tasks, k), generator=gen),
                "dense": torch.randn(tasks, k, N_DENSE, generator=gen)}

    def labels(k: int) -> torch.Tensor:
        return (torch.rand(tasks, k, generator=gen) > 0.5).float()

    return TaskBatch(features(SUPPORT), labels(SUPPORT), torch.ones(tasks, SUPPORT, dtype=torch.bool),
                     features(QUERY), labels(QUERY), torch.ones(tasks, QUERY, dtype=torch.bool))


def task_x(x: dict[str, torch.Tensor], t: int) -> dict[str, torch.Tensor]:
    return {k: v[t] for k, v in x.items()}


def is_adapted(name: str, adapt: str) -> bool:
    return adapt == "all" or name.startswith("head.")


# --------------------------------------------------------------------------- methods


def ours(model: nn.Module, adapt: str, **options):
    learner = MAML(model, loss_fn=masked_bce_loss, inner_steps=STEPS, inner_lr=LR, adapt=adapt, **options)
    params = list(model.parameters())
    return lambda batch: torch.autograd.grad(learner.meta_loss(batch), params)


def learn2learn_step(L2LMAML, maml_update, model: nn.Module, adapt: str):
    maml = L2LMAML(model, lr=LR, first_order=False)
    params = list(model.parameters())

    def step(batch: TaskBatch):
        total = [torch.zeros_like(p) for p in params]
        for t in range(batch.num_tasks):
            learner = maml.clone()
            for _ in range(STEPS):
                loss = bce(learner(task_x(batch.support_x, t)), batch.support_y[t])
                if adapt == "all":
                    learner.adapt(loss)
                else:
                    names = [n for n, _ in learner.module.named_parameters()]
                    chosen = [p for n, p in learner.module.named_parameters() if is_adapted(n, adapt)]
                    grads = iter(torch.autograd.grad(loss, chosen, create_graph=True))
                    maml_update(learner.module, LR, [next(grads) if is_adapted(n, adapt) else None for n in names])
            query = bce(learner(task_x(batch.query_x, t)), batch.query_y[t]) / batch.num_tasks
            for acc, g in zip(total, torch.autograd.grad(query, params)):
                acc += g
        return total

    return step


def higher_step(higher, model: nn.Module, adapt: str):
    groups = [{"params": [p for n, p in model.named_parameters() if is_adapted(n, adapt)], "lr": LR}]
    rest = [p for n, p in model.named_parameters() if not is_adapted(n, adapt)]
    if rest:
        groups.append({"params": rest, "lr": 0.0})
    inner_opt = torch.optim.SGD(groups, lr=LR)
    params = list(model.parameters())

    def step(batch: TaskBatch):
        for p in params:
            p.grad = None
        for t in range(batch.num_tasks):
            with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (fmodel, diffopt):
                for _ in range(STEPS):
                    diffopt.step(bce(fmodel(task_x(batch.support_x, t)), batch.support_y[t]))
                (bce(fmodel(task_x(batch.query_x, t)), batch.query_y[t]) / batch.num_tasks).backward()
        return [p.grad.clone() for p in params]

    return step


def torchopt_step(torchopt, model: nn.Module, adapt: str):
    named = dict(model.named_parameters())
    chosen = [n for n in named if is_adapted(n, adapt)]
    optimizer = torchopt.sgd(lr=LR)
    params = list(named.values())

    def step(batch: TaskBatch):
        total = [torch.zeros_like(p) for p in params]
        for t in range(batch.num_tasks):
            fast = tuple(named[n] for n in chosen)
            state = optimizer.init(fast)
            for _ in range(STEPS):
                logits = functional_call(model, {**named, **dict(zip(chosen, fast))}, (task_x(batch.support_x, t),))
                grads = torch.autograd.grad(bce(logits, batch.support_y[t]), fast, create_graph=True)
                updates, state = optimizer.update(grads, state, inplace=False)
                fast = torchopt.apply_updates(fast, updates, inplace=False)
            logits = functional_call(model, {**named, **dict(zip(chosen, fast))}, (task_x(batch.query_x, t),))
            query = bce(logits, batch.query_y[t]) / batch.num_tasks
            for acc, g in zip(total, torch.autograd.grad(query, params)):
                acc += g
        return total

    return step


def import_torchopt():
    if importlib.util.find_spec("torchopt") is None:
        return None
    try:
        import torchopt
    except Exception:  # noqa: BLE001 - an optional peer that does not import is skipped
        return None
    return torchopt


def torchopt_extension_loads() -> bool:
    try:
        from torchopt import _C  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


# --------------------------------------------------------------------------- measuring


def peak_mb(fn, batch: TaskBatch) -> float | None:
    """Peak of tensor memory held during one call of ``fn`` above what was held before (MB): on CUDA
    the allocator's own peak, on CPU the profiler's running total of tensor allocations (exact and
    repeatable, unlike the resident set, which moves by megabytes with the heap's state)."""
    if batch.device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn(batch)
        torch.cuda.synchronize()
        return round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
    gc.collect()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn(batch)
    with tempfile.TemporaryDirectory() as folder:
        trace = pathlib.Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = [e["args"] for e in sorted(json.loads(trace.read_text())["traceEvents"], key=lambda e: e.get("ts", 0))
                  if e.get("name") == "[memory]" and "Total Allocated" in e.get("args", {})]
    if not events:
        return None
    base = events[0]["Total Allocated"] - events[0]["Bytes"]
    return round(max(0, max(e["Total Allocated"] for e in events) - base) / 2**20, 1)


def build_methods(model: nn.Module, adapt: str, n_items: int, peers: dict) -> dict:
    methods = {"ours": ours(model, adapt), "ours_untraced": ours(model, adapt, trace=False)}
    if adapt == "all" and n_items <= 50_000:
        methods["ours_dense"] = ours(model, adapt, sparse_embeddings=False)
    if peers["learn2learn"] is not None:
        methods["learn2learn"] = learn2learn_step(*peers["learn2learn"], model, adapt)
    if peers["higher"] is not None:
        methods["higher"] = higher_step(peers["higher"], model, adapt)
    if peers["torchopt"] is not None:
        methods["torchopt"] = torchopt_step(peers["torchopt"], model, adapt)
    return methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--items", type=int, nargs="+", default=[2_000, 50_000, 500_000])
    parser.add_argument("--tasks", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--quick", action="store_true", help="3 repeats, 1 warm-up, catalogues 2,000 and 50,000")
    parser.add_argument("--full", action="store_true", help="every task count on catalogues over 50,000 items too")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time, robust to other jobs on a shared machine with --threads 1")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup = 3, 1
        args.items = [n for n in args.items if n <= 50_000]

    torch.set_num_threads(args.threads)
    L2LMAML = import_learn2learn()
    maml_update = sys.modules["learn2learn.algorithms.maml"].maml_update if L2LMAML else None
    peers = {"learn2learn": (L2LMAML, maml_update) if L2LMAML else None, "higher": import_higher(),
             "torchopt": import_torchopt()}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          + ", ".join(f"{k} {'yes' if v else 'missing'}" for k, v in peers.items())
          + f"; torchopt compiled extension loads: {torchopt_extension_loads()}")

    result: dict[str, object] = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "support": SUPPORT,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "query": QUERY, "inner_steps": STEPS, "items": args.items, "tasks": args.tasks, "repeats": args.repeats,
        "torchopt_extension_loads": torchopt_extension_loads(), "clock": args.clock,
    }
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    max_diff, speedups = 0.0, []
    for adapt in ("all", "head"):
        for n_items in args.items:
            torch.manual_seed(0)
            model = MeLULike(n_items).to(args.device)
            all_methods = build_methods(model, adapt, n_items, peers)
            grad_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
            result[f"grad_mb_{adapt}_{n_items}"] = round(grad_mb, 1)
            # Over 50,000 items a peer's 128-task step takes about a minute: smallest task count only.
            for tasks in args.tasks if n_items <= 50_000 or args.full else args.tasks[:1]:
                cell = f"{adapt}_{n_items}_{tasks}"
                batch = make_batch(tasks, n_items, seed=tasks).to(args.device)
                # The dense path holds several (tasks, items, 32) copies: capped at 32 x 50,000.
                cell_methods = {k: v for k, v in all_methods.items()
                                if k != "ours_dense" or tasks * n_items <= 1_600_000}
                reference_name = "ours_dense" if "ours_dense" in cell_methods else "ours_untraced"
                reference = cell_methods[reference_name](batch)
                for name, fn in cell_methods.items():
                    diff = max((a - b).abs().max().item() for a, b in zip(fn(batch), reference))
                    max_diff = max(max_diff, diff)
                    result[f"{name}_peak_mb_{cell}"] = peak_mb(fn, batch)
                timings = time_round_robin(cell_methods, batch, args.repeats, args.warmup, clock)
                for name, ms in timings.items():
                    result[f"{name}_ms_{cell}"] = round(ms, 2)
                    print(f"{cell:18s} {name:14s} {ms:9.2f} ms  peak {result[f'{name}_peak_mb_{cell}']} MB")
                for peer in ("learn2learn", "higher", "torchopt"):
                    if peer in timings:
                        speedup = timings[peer] / timings["ours"]
                        result[f"speedup_vs_{peer}_{cell}"] = round(speedup, 2)
                        speedups.append(speedup)
            del model, all_methods, cell_methods
    result["max_grad_diff"] = max_diff
    result["min_speedup"] = round(min(speedups), 2) if speedups else None
    small, large = min(args.items), 50_000 if 50_000 in args.items else max(args.items)
    ratios = {}
    for tasks in args.tasks:
        for what in ("ms", "peak_mb"):
            a, b = result.get(f"ours_{what}_all_{small}_{tasks}"), result.get(f"ours_{what}_all_{large}_{tasks}")
            if a and b:
                ratios[f"ours_{what}_ratio_all_{large}_vs_{small}_{tasks}"] = round(b / a, 3)
    result.update(ratios)
    result["target_10x_met"] = bool(speedups) and min(speedups) >= 10
    result["target_flat_met"] = bool(ratios) and all(r <= 1.2 for r in ratios.values())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
