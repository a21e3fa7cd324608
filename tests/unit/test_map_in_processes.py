"""map_in_processes: jobs in fresh processes give the serial loop's results, bit for bit."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from metarec_ref.runtime import map_in_processes
from tests.unit.helpers import make_batch


def trained_weights(seed: int, steps: int) -> torch.Tensor:
    """A tiny MAML meta-trained from ``seed``: a job whose numbers depend on every op's rounding."""
    from metarec_ref.meta import MAML
    from metarec_ref.runtime import adam
    from tests.unit.helpers import tiny_model

    torch.manual_seed(seed)
    learner = MAML(tiny_model(seed=seed, dtype=torch.float32), inner_steps=2, inner_lr=0.3)
    optimizer = adam(learner.parameters(), lr=0.01)
    batch = make_batch(dtype=torch.float32, seed=seed)
    for _ in range(steps):
        learner.outer_step(batch, optimizer)
    return torch.cat([p.detach().flatten() for p in learner.parameters()])


def fails(message: str):
    raise ValueError(message)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the pinned numerics' count, so the serial loop runs as a worker does
    yield
    torch.set_num_threads(threads)


def test_jobs_in_processes_give_the_serial_results_bit_for_bit(one_thread):
    jobs = [(seed, 3) for seed in range(3)]
    serial = map_in_processes(trained_weights, jobs, workers=1)
    parallel = map_in_processes(trained_weights, jobs, workers=2)
    assert len(parallel) == 3
    for a, b in zip(serial, parallel):
        assert torch.equal(a, b)
    assert not torch.equal(serial[0], serial[1])  # the jobs differ: the order of results is checked too


def test_keywords_travel_in_a_partial(one_thread):
    job = partial(trained_weights, steps=2)
    assert torch.equal(map_in_processes(job, [(5,), (6,)], workers=2)[1], trained_weights(6, 2))


def test_an_error_in_a_job_is_raised_here():
    with pytest.raises(ValueError, match="bad job"):
        map_in_processes(fails, [("fine",), ("bad job",)][1:] * 2, workers=2)


@pytest.mark.parametrize("workers", [0, -1, 1.5, None])
def test_workers_must_be_a_positive_int(workers):
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        map_in_processes(trained_weights, [(0, 1)], workers=workers)


def test_no_jobs_give_no_results():
    assert map_in_processes(trained_weights, [], workers=2) == []


def test_started_jobs_run_while_this_process_works_on(one_thread):
    from metarec_ref.runtime import start_in_processes

    with start_in_processes(trained_weights, [(1, 2), (2, 2)], processes=1) as started:
        here = trained_weights(3, 2)  # this process works meanwhile
        there = started.results()
    assert torch.equal(there[0], trained_weights(1, 2)) and torch.equal(there[1], trained_weights(2, 2))
    assert torch.equal(here, trained_weights(3, 2))


def test_an_error_here_ends_the_started_jobs():
    from metarec_ref.runtime import start_in_processes

    with pytest.raises(RuntimeError, match="here"):
        with start_in_processes(trained_weights, [(1, 1), (2, 1)], processes=2):
            raise RuntimeError("an error here")


def test_no_processes_run_the_jobs_here_when_collected():
    from metarec_ref.runtime import start_in_processes

    ran = []
    with start_in_processes(ran.append, [(1,), (2,)], processes=0) as started:
        assert ran == []  # nothing runs before the results are asked for
        started.results()
    assert ran == [1, 2]
    with pytest.raises(ValueError, match="processes must be an int >= 0"):
        start_in_processes(ran.append, [(1,)], processes=-1)


def test_leaving_cores_lowers_this_process_threads_inside_the_block_only():
    from metarec_ref.runtime import leaving_cores

    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        with leaving_cores(1):
            assert torch.get_num_threads() == 3
        with leaving_cores(9):
            assert torch.get_num_threads() == 1  # never below one
        with pytest.raises(RuntimeError), leaving_cores(2):
            raise RuntimeError("restored on errors too")
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(threads)


def threads_here(_job: int) -> int:
    return torch.get_num_threads()


def test_workers_share_the_threads_with_this_process_when_it_works_meanwhile():
    from metarec_ref.runtime import start_in_processes

    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        assert map_in_processes(threads_here, [(0,), (1,)], workers=2) == [2, 2]  # this process waits
        with start_in_processes(threads_here, [(0,)], processes=1) as started:  # this one works too
            assert started.results() == [2]
        with start_in_processes(threads_here, [(0,), (1,), (2,)], processes=3) as started:
            assert started.results() == [1, 1, 1]
        with start_in_processes(threads_here, [(0,), (1,)], processes=3) as started:
            assert started.processes == 2  # at most one per job: what leaving_cores should leave
            assert started.results() == [1, 1]
    finally:
        torch.set_num_threads(threads)
