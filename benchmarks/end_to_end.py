"""End to end on a 1M-interaction synthetic log, meta-trained with 1 and then 2 ranks (torchrun).

Stages: generate -> validate -> temporal cold-start split -> encoders -> tasks (train, validation
and the test users' cold-start cells; ``build_cold_start_tasks``) -> tensors -> task file -> meta-train a fixed number of meta-steps with
``torchrun --nproc_per_node=R -m metarec_ref.recipes.distributed_cli`` for each R in ``--ranks`` -> evaluate the
cold-start cells (full ranking over every item) with the meta-parameters of each run.

Run: ``python benchmarks/end_to_end.py [--interactions 1000000] [--ranks 1 2] [--meta-steps 400]``.
Targets on 2 CPU cores: whole pipeline under 5 minutes, peak RSS under 3 GB, task building not the
bottleneck. Every rank uses one thread and communicates over 127.0.0.1 only. Peak RSS is given per
process (``getrusage``) and for the whole process tree (launcher and ranks together, sampled from
``/proc`` every 0.1 s). The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import torch

from metarec_ref.data import SyntheticConfig, generate, save_tasks
from metarec_ref.eval import evaluate
from metarec_ref.meta import InnerLoopConfig, build_learner
from metarec_ref.models import build_model
from metarec_ref.recipes import ColdStartCut, build_cold_start_tasks
from metarec_ref.recipes.distributed_cli import DistributedRunConfig
from metarec_ref.runtime import peak_rss_mb
from metarec_ref.train import free_port

CELLS = ("new_user_existing_item", "new_user_new_item")
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_MB
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            pass
    return out


class TreeMemory:
    """Peak summed RSS of this process and all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peak_mb = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, sum(_rss_mb(p) for p in _tree(os.getpid())))
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def launch(ranks: int, config: DistributedRunConfig, workdir: str) -> dict:
    """Meta-train with ``torchrun --nproc_per_node=ranks``; return rank 0's summary."""
    path = os.path.join(workdir, f"run_{ranks}.json")
    with open(path, "w") as f:
        json.dump(config.__dict__, f)
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={ranks}",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}",
               "-m", "metarec_ref.recipes.distributed_cli", "--config", path]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "METAREC_QUIET": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun with {ranks} rank(s) failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    with open(config.result) as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--meta-steps", type=int, default=400)
    parser.add_argument("--meta-batch-size", type=int, default=64)
    parser.add_argument("--inner-steps", type=int, default=2)
    parser.add_argument("--k-support", type=int, default=5)
    parser.add_argument("--n-query", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of this (non-rank) process")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = tempfile.mkdtemp(prefix="metarec_e2e_")

    stages: dict[str, float] = {}
    clock = time.perf_counter()
    begin = clock

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = round(now - clock, 3)
        clock = now
        print(f"{name:>20}: {stages[name]:7.2f} s", flush=True)

    memory = TreeMemory().__enter__()
    n = args.interactions
    log = generate(SyntheticConfig(n_users=max(50, n // 50), n_items=max(100, n // 200), n_interactions=n,
                                   seed=args.seed))
    interactions = len(log.events)
    lap("generate")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a few duplicate rows are dropped
        cut = ColdStartCut(args.k_support, args.n_query, cut_quantile=0.8, cells=CELLS, available_items_only=True,
                           seed=args.seed)
        tasks = build_cold_start_tasks(log.events, cut, validate=True, on_stage=lap)
    del log
    tasks_path = os.path.join(workdir, "tasks.pt")
    save_tasks(tasks_path, tasks.spec, tasks.train, tasks.val)
    lap("task_file")
    spec, eval_tasks, counts = tasks.spec, tasks.test, tasks.counts
    del tasks  # the ranks read the task file

    per_ranks: dict[str, dict] = {}
    params = {}
    for ranks in args.ranks:
        config = DistributedRunConfig(
            tasks=tasks_path, algorithm="maml", inner_steps=args.inner_steps, inner_lr=0.1,
            meta_steps=args.meta_steps, meta_batch_size=args.meta_batch_size, outer_lr=3e-3,
            eval_every=max(args.meta_steps // 4, 1), seed=args.seed, device="cpu", threads=1,
            checkpoint=os.path.join(workdir, f"ckpt_{ranks}.pt"), result=os.path.join(workdir, f"result_{ranks}.json"),
        )
        summary = launch(ranks, config, workdir)
        lap(f"meta_train_{ranks}_ranks")
        learner = build_learner("maml", build_model("mlp", spec), InnerLoopConfig(args.inner_steps, 0.1))
        state = torch.load(config.checkpoint, map_location="cpu", weights_only=True)
        learner.load_state_dict(state["learner"])
        params[ranks] = state["learner"]
        table = evaluate({"MAML": learner}, eval_tasks, ks=(10,), n_boot=200, seed=args.seed,
                         chunk_size=64, disable=True)  # 64 tasks x every item at once bounds memory
        lap(f"evaluate_{ranks}_ranks")
        metrics = {f"{row.cell}/{row.metric}": round(float(row.mean), 4) for row in table.itertuples()}
        data_s = sum(v for k, v in stages.items() if not k.startswith(("meta_train", "evaluate")))
        own_s = stages[f"meta_train_{ranks}_ranks"] + stages[f"evaluate_{ranks}_ranks"]
        per_ranks[str(ranks)] = {
            "pipeline_seconds": round(data_s + own_s, 2),  # data stages + this run's training + evaluation
            "meta_train_wall_seconds": stages[f"meta_train_{ranks}_ranks"],
            "train_loop_seconds": summary["train_seconds"],
            "ms_per_meta_step": summary["ms_per_step"],
            "cpu_seconds_per_rank": summary["cpu_seconds_per_rank"],
            "peak_rss_mb_per_rank": summary["peak_rss_mb_per_rank"],
            "val_auc": round(summary["val_auc"], 4),
            "metrics": metrics,
        }
    memory.__exit__()
    shutil.rmtree(workdir, ignore_errors=True)

    total = round(time.perf_counter() - begin, 2)
    result = {
        "interactions": interactions,
        "total_seconds": total,
        "peak_rss_mb": round(max(peak_rss_mb(), *(max(r["peak_rss_mb_per_rank"]) for r in per_ranks.values())), 1),
        "peak_rss_mb_main": round(peak_rss_mb(), 1),
        "peak_rss_mb_tree": round(memory.peak_mb, 1),
        "stage_seconds": stages,
        "ranks": per_ranks,
        "counts": counts,
        "meta_steps": args.meta_steps,
        "meta_batch_size": args.meta_batch_size,
        "inner_steps": args.inner_steps,
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if len(params) > 1:
        first, *others = params.values()
        result["max_param_diff_between_rank_counts"] = max(
            float((other[k] - first[k]).abs().max()) for other in others for k in first)
    if "1" in per_ranks and "2" in per_ranks:
        result["speedup_2_vs_1_train_loop"] = round(
            per_ranks["1"]["train_loop_seconds"] / per_ranks["2"]["train_loop_seconds"], 2)
    for ranks, figures in per_ranks.items():
        print(f"{ranks} rank(s): {figures['train_loop_seconds']:.1f} s meta-training loop "
              f"({figures['ms_per_meta_step']:.1f} ms/step), pipeline {figures['pipeline_seconds']:.1f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
