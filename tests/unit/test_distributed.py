"""Distributed meta-training: 2 gloo ranks on loopback equal 1 process on the full meta-batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from metarec_ref.batch import FeatureSpec, TaskBatch
from metarec_ref.data import load_tasks, save_tasks
from metarec_ref.meta import MAML, Reptile
from metarec_ref.models import MLP
from metarec_ref.recipes.distributed_cli import DistributedRunConfig
from metarec_ref.recipes.distributed_cli import main
from metarec_ref.train import (
    DistributedContext,
    DistributedMetaTrainer,
    MetaTrainConfig,
    MetaTrainer,
    init_distributed,
    run_local,
    shutdown_distributed,
)
from metarec_ref.train.distributed import AllReduceOptimizer, local_env, shard

SPEC = FeatureSpec(n_items=30, n_categories=5, n_scenarios=3, n_dense=1)
STEPS = 6


def _part(g: torch.Generator, tasks: int, k: int):
    x = {
        "item": torch.randint(1, SPEC.n_items, (tasks, k), generator=g),
        "category": torch.randint(1, SPEC.n_categories, (tasks, k), generator=g),
        "scenario": torch.randint(1, SPEC.n_scenarios, (tasks, k), generator=g),
        "dense": torch.randn(tasks, k, 1, generator=g),
    }
    y = torch.randint(0, 2, (tasks, k), generator=g).float()
    mask = torch.ones(tasks, k, dtype=torch.bool)
    mask[::3, -2:] = False  # unequal task sizes
    return x, y, mask


def _tasks(tasks: int, seed: int, dtype: torch.dtype = torch.float32) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    batch = TaskBatch(*_part(g, tasks, 6), *_part(g, tasks, 5))
    for x in (batch.support_x, batch.query_x):
        x["dense"] = x["dense"].to(dtype)
    return TaskBatch(batch.support_x, batch.support_y.to(dtype), batch.support_mask,
                     batch.query_x, batch.query_y.to(dtype), batch.query_mask)


def _learner(algorithm: str):
    torch.manual_seed(0)
    model = MLP(SPEC, hidden=(16,), emb_dim=4)
    if algorithm == "maml":  # exact second order, two inner steps
        return MAML(model, inner_steps=2, inner_lr=0.1)
    # Only the head adapts, so the other parameters get no .grad. Float64: Reptile's direction
    # (adapted - init) cancels digits, and Adam turns a float32 rounding residue on a near-zero
    # entry into a whole step, so shard-wise and single-process sums would differ visibly.
    return Reptile(model.double(), inner_steps=2, inner_lr=0.1, adapt="head")


def _config(meta_batch_size: int) -> MetaTrainConfig:
    # 7 tasks over 2 ranks: shards of 4 and 3, so the shard weighting matters.
    return MetaTrainConfig(meta_batch_size=meta_batch_size, outer_lr=1e-2, meta_steps=STEPS, eval_every=2,
                           patience=None, restore_best=False, seed=3)


CASES = {"maml": 7, "reptile": 5}
DTYPES = {"maml": torch.float32, "reptile": torch.float64}


def _state(trainer: MetaTrainer) -> dict:
    return {"params": {k: v.detach().clone() for k, v in trainer.learner.state_dict().items()},
            "history": trainer.history.to_dict("list")}


def _worker(out_dir: str) -> None:
    ctx = init_distributed("cpu")
    out = {}
    for algorithm, mbs in CASES.items():
        dtype = DTYPES[algorithm]
        trainer = DistributedMetaTrainer(_learner(algorithm), _tasks(40, 1, dtype), _tasks(12, 2, dtype), _config(mbs),
                                         ctx=ctx, disable=True)
        trainer.fit()
        out[algorithm] = _state(trainer)
    # Interrupted run: 3 steps with a checkpoint, then a fresh trainer resumes to the end.
    path = os.path.join(out_dir, "ckpt.pt")
    first = DistributedMetaTrainer(_learner("maml"), _tasks(40, 1), _tasks(12, 2), _config(7), ctx=ctx,
                                   checkpoint_path=path, checkpoint_every=3, disable=True)
    first.fit(until=3)
    torch.manual_seed(123)  # a different global RNG: the checkpoint must restore what matters
    resumed = DistributedMetaTrainer(_learner("maml"), _tasks(40, 1), _tasks(12, 2), _config(7), ctx=ctx,
                                     disable=True)
    resumed.load_checkpoint(path)
    resumed.fit()
    out["resumed"] = _state(resumed)
    torch.save(out, os.path.join(out_dir, f"rank{ctx.rank}.pt"))
    shutdown_distributed(ctx)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("dist"))
    run_local(_worker, 2, out_dir)
    ranks = [torch.load(os.path.join(out_dir, f"rank{r}.pt"), weights_only=False) for r in range(2)]
    return ranks, out_dir


def _single(algorithm: str) -> MetaTrainer:
    dtype = DTYPES[algorithm]
    trainer = MetaTrainer(_learner(algorithm), _tasks(40, 1, dtype), _tasks(12, 2, dtype), _config(CASES[algorithm]),
                          disable=True)
    trainer.fit()
    return trainer


def _assert_params_close(got: dict, want: dict, atol: float = 1e-6) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=atol, rtol=0, msg=lambda m: f"{name}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", list(CASES))
def test_two_ranks_equal_one_process(two_ranks, algorithm):
    ranks, _ = two_ranks
    single = _single(algorithm)
    start = {k: v for k, v in _learner(algorithm).state_dict().items()}
    moved = max(float((single.learner.state_dict()[k] - v).abs().max()) for k, v in start.items())
    assert moved > 1e-3  # training really changed the parameters
    _assert_params_close(ranks[0][algorithm]["params"], single.learner.state_dict())
    for name, value in ranks[0][algorithm]["params"].items():  # every rank ends identical, bit for bit
        assert torch.equal(value, ranks[1][algorithm]["params"][name]), name
    want = single.history.to_dict("list")
    got = ranks[0][algorithm]["history"]
    assert got["step"] == want["step"] == [2, 4, 6]
    for column in ("train_loss", "val_loss", "val_auc"):
        torch.testing.assert_close(torch.tensor(got[column]), torch.tensor(want[column]), atol=1e-6, rtol=0)
    assert ranks[1][algorithm]["history"] == got  # rank 0's validation is broadcast


def test_checkpoint_resume_two_ranks(two_ranks):
    ranks, out_dir = two_ranks
    single = _single("maml")
    _assert_params_close(ranks[0]["resumed"]["params"], single.learner.state_dict())
    for name, value in ranks[0]["resumed"]["params"].items():
        assert torch.equal(value, ranks[1]["resumed"]["params"][name]), name
    # The checkpoint written by rank 0 is MetaTrainer's format: one process resumes it with weights_only.
    trainer = MetaTrainer(_learner("maml"), _tasks(40, 1), _tasks(12, 2), _config(7), disable=True)
    trainer.load_checkpoint(os.path.join(out_dir, "ckpt.pt"))
    assert trainer.step == 3
    trainer.fit()
    _assert_params_close(trainer.learner.state_dict(), single.learner.state_dict())
    torch.testing.assert_close(torch.tensor(trainer.history["val_loss"].tolist()),
                               torch.tensor(single.history["val_loss"].tolist()), atol=1e-6, rtol=0)


def test_single_process_context_matches_meta_trainer():
    trainer = DistributedMetaTrainer(_learner("maml"), _tasks(40, 1), _tasks(12, 2), _config(7), disable=True)
    trainer.fit()
    single = _single("maml")
    for name, value in single.learner.state_dict().items():
        assert torch.equal(trainer.learner.state_dict()[name], value), name


def test_shards_cover_the_meta_batch():
    index = torch.arange(7)
    parts = [shard(index, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [3, 2, 2]
    assert torch.equal(torch.cat(parts), index)


def test_errors_name_the_fix(tmp_path):
    ctx = DistributedContext(rank=0, world_size=4)
    with pytest.raises(ValueError, match="meta_batch_size=2 is smaller than the 4 ranks"):
        DistributedMetaTrainer(_learner("maml"), _tasks(10, 1), None, MetaTrainConfig(meta_batch_size=2), ctx=ctx)
    bad = tmp_path / "run.json"
    bad.write_text(json.dumps({"meta_step": 3}))
    with pytest.raises(ValueError, match=r"unknown config keys \['meta_step'\]"):
        DistributedRunConfig.from_json(bad)
    with pytest.raises(ValueError, match="resume=true needs a checkpoint"):
        DistributedRunConfig(resume=True)
    with pytest.raises(ValueError, match="no task file"):
        load_tasks(tmp_path / "missing.pt")
    assert isinstance(AllReduceOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1), ctx).param_groups,
                      list)


def test_command_line_runs_and_resumes(tmp_path, capsys, monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    tasks = tmp_path / "tasks.pt"
    save_tasks(tasks, SPEC, _tasks(40, 1), _tasks(12, 2), note="unit test")
    spec, train, val, extra = load_tasks(tasks)
    assert spec == SPEC and train.num_tasks == 40 and val.num_tasks == 12 and extra == {"note": "unit test"}
    ckpt = tmp_path / "run.pt"
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"tasks": str(tasks), "meta_steps": 2, "meta_batch_size": 4, "eval_every": 1,
                                  "inner_steps": 1, "checkpoint": str(ckpt), "device": "cpu"}))
    first = main(["--config", str(config)])
    assert first["final_step"] == 2 and first["world_size"] == 1 and ckpt.exists()
    second = main(["--config", str(config), "--set", "meta_steps=4", "resume=true"])
    assert second["steps"] == 2 and second["final_step"] == 4
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["final_step"] == 4
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == 4 and saved["config"]["meta_batch_size"] == 4


@pytest.mark.slow
def test_torchrun_two_ranks_on_loopback(tmp_path):
    tasks = tmp_path / "tasks.pt"
    save_tasks(tasks, SPEC, _tasks(40, 1), _tasks(12, 2))
    config = tmp_path / "run.json"
    result = tmp_path / "result.json"
    config.write_text(json.dumps({"tasks": str(tasks), "meta_steps": 3, "meta_batch_size": 5, "eval_every": 3,
                                  "device": "cpu", "checkpoint": str(tmp_path / "run.pt"), "result": str(result)}))
    env = {**os.environ, **local_env(2), "OMP_NUM_THREADS": "1", "METAREC_QUIET": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               f"--master_addr={env['MASTER_ADDR']}", f"--master_port={env['MASTER_PORT']}",
               "-m", "metarec_ref.recipes.distributed_cli", "--config", str(config)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(result.read_text())
    assert summary["world_size"] == 2 and summary["backend"] == "gloo" and summary["final_step"] == 3
    assert len(summary["peak_rss_mb_per_rank"]) == 2
    assert torch.load(tmp_path / "run.pt", weights_only=True)["step"] == 3
