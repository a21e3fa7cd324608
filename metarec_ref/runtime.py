"""Runtime helpers any layer may use: seeding, device choice, quiet progress bars, memory (the
machine's, this process's peak), grid searches that extend a grid whose best value is on its edge,
the two operations whose CPU results would otherwise depend on the CPU (:func:`adam`,
:func:`exact_sqrt`), and independent jobs run in parallel processes (:func:`map_in_processes`)."""

from __future__ import annotations

import io
import itertools
import math
import multiprocessing
import os
import random
import resource
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

try:  # the device types with torch's fused optimizer kernels (torch checks only at the first step)
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
except ImportError:  # a torch that moved it: the devices every supported release has
    _FUSED_ADAM_DEVICES = ["cpu", "cuda"]
else:
    _FUSED_ADAM_DEVICES = _get_fused_kernels_supported_devices()


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; make torch kernels deterministic where possible."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        # cuBLAS needs this set before its first call to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


# torch's CPU square root goes through MKL's vector math, which is accurate to one unit in the last
# place but not correctly rounded: its last bit depends on the CPU it runs on, even with the pinned
# numerics of ``metarec_ref.numerics``. Adam takes a square root at every step, so a committed
# training run drifts on another machine. The two helpers below round exactly on every CPU.


def adam(params, lr: float = 1e-3, **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam`` with torch's fused kernel wherever the parameters' device has one.

    The fused kernel takes an exact square root, so the same seed gives the same bits on every
    CPU; ``torch.optim.Adam``'s default implementation does not (see above). ``params`` and
    ``kwargs`` are those of ``torch.optim.Adam``.
    """
    groups = [_listed(g) if isinstance(g, dict) else g for g in params]
    tensors = [t for g in groups for t in (g["params"] if isinstance(g, dict) else [g])]
    fused = bool(tensors) and all(t.device.type in _FUSED_ADAM_DEVICES and t.is_floating_point() for t in tensors)
    return torch.optim.Adam(groups, lr=lr, fused=fused or None, **kwargs)


def _listed(group: dict) -> dict:
    """A parameter group whose ``params`` is a list (torch also takes one tensor or an iterator)."""
    params = group["params"]
    return {**group, "params": [params] if isinstance(params, torch.Tensor) else list(params)}


def exact_sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of a tensor that needs no gradient, the same on every CPU
    (numpy's, which uses the processor's exact instruction); off the CPU, ``x.sqrt()``."""
    if x.requires_grad:
        raise ValueError("exact_sqrt is for tensors without gradients; take x.sqrt() inside autograd")
    if x.device.type != "cpu":
        return x.sqrt()
    return torch.from_numpy(np.asarray(np.sqrt(x.numpy())))


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def map_in_processes(fn: Callable, jobs: Sequence[tuple], workers: int) -> list:
    """``[fn(*job) for job in jobs]``, spread over at most ``workers`` fresh processes (1: here, in order).

    Each process starts with this one's environment (the pinned numerics included), its torch
    settings (deterministic algorithms, default dtype, matmul precision) and an equal share of its
    threads; jobs and results travel through ``torch.save``. With the pinned numerics (one thread)
    the results are those of the serial loop, bit for bit. ``fn`` must be importable by name (a
    function of a module, or a ``functools.partial`` of one); an error in a job is raised here.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    processes = workers if workers > 1 and len(jobs) > 1 else 0
    with StartedJobs(fn, jobs, processes, caller_works=False) as started:
        return started.results()


class StartedJobs:
    """Jobs of :func:`start_in_processes`: running in other processes while this one works on."""

    def __init__(self, fn: Callable, jobs: Sequence[tuple], processes: int, caller_works: bool = True):
        if not isinstance(processes, int) or processes < 0:
            raise ValueError(f"processes must be an int >= 0, got {processes!r}")
        self._fn, self._jobs, self._pool, self._futures = fn, list(jobs), None, []
        self.processes = processes = min(processes, len(self._jobs))  # those started: at most one per job
        if processes > 0:
            # The threads are shared with this process too when it works meanwhile (see leaving_cores).
            share = torch.get_num_threads() // (processes + caller_works)
            settings = (max(1, share), torch.are_deterministic_algorithms_enabled(),
                        torch.is_deterministic_algorithms_warn_only_enabled(), torch.get_default_dtype(),
                        torch.get_float32_matmul_precision())
            context = multiprocessing.get_context("spawn")  # never fork a process whose threads are running
            self._pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_start_worker,
                                             initargs=settings)
            self._futures = [self._pool.submit(_run_saved, _saved((fn, job))) for job in self._jobs]

    def results(self) -> list:
        """Every job's result, in the order of the jobs (no processes: the jobs run now, here)."""
        if self._pool is None:
            return [self._fn(*job) for job in self._jobs]
        return [_loaded(future.result()) for future in self._futures]

    def __enter__(self) -> StartedJobs:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:  # jobs not collected (an error here) are cancelled or left to end
            self._pool.shutdown(wait=exc[0] is None, cancel_futures=True)


@contextmanager
def leaving_cores(processes: int):
    """Inside the block, this process runs ``processes`` fewer torch threads (at least one): the
    cores that many worker processes use meanwhile, so that no core runs two threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads - max(processes, 0)))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def start_in_processes(fn: Callable, jobs: Sequence[tuple], processes: int) -> StartedJobs:
    """Start ``fn(*job)`` for every job in ``processes`` fresh processes (at most one per job) and
    return at once, so this process can work meanwhile (with :func:`leaving_cores`: the processes'
    threads are an equal share of this one's, counting this one); collect with ``results()`` inside
    ``with``, so that the processes end with it. 0 processes: the jobs run here when ``results()``
    is called. Settings and results as in :func:`map_in_processes`."""
    return StartedJobs(fn, jobs, processes)


def _start_worker(threads: int, deterministic: bool, warn_only: bool, dtype: torch.dtype, precision: str) -> None:
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.set_default_dtype(dtype)
    torch.set_float32_matmul_precision(precision)


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _loaded(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=False)


def _run_saved(data: bytes) -> bytes:
    fn, job = _loaded(data)
    return _saved(fn(*job))


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn a notebook parameter ('auto', 'cpu', 'cuda', 'cuda:1') into a device."""
    if device is None or device == "auto":
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device={device!r} is not a device; use 'auto', 'cpu' or 'cuda'"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asks for CUDA but none is available; use 'auto' or 'cpu'"
        )
    return resolved


def progress_disabled() -> bool:
    """True when progress bars should stay silent (tests, nbval, CI)."""
    return os.environ.get("METAREC_QUIET", "0") not in ("", "0", "false", "False")


def machine_memory_gb() -> float:
    """This machine's physical memory in GB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class GridEdgeWarning(UserWarning):
    """A value tuned on a grid is the grid's smallest or largest: the optimum may lie beyond it."""


def grid_edge(name: str, grid, chosen, *, natural_bounds: tuple = (None, None)) -> str | None:
    """``"lower"`` or ``"upper"`` when ``chosen`` is the smallest or largest value of ``grid`` (and
    not a natural bound, see :func:`warn_if_on_grid_edge`), else None. Says nothing."""
    values = sorted(set(grid))
    if chosen not in values:
        raise ValueError(f"{name}: the chosen value {chosen!r} is not in its grid {values}")
    low, high = natural_bounds
    if len(values) > 1 and chosen == values[0] and chosen != low:
        return "lower"
    if len(values) > 1 and chosen == values[-1] and chosen != high:
        return "upper"
    return None


def warn_if_on_grid_edge(name: str, grid, chosen, *, natural_bounds: tuple = (None, None)) -> str | None:
    """Warn (:class:`GridEdgeWarning`) when ``chosen`` is the smallest or largest value of ``grid``.

    A tuned value on an edge means the grid may not bracket the optimum: widen it that way.
    ``natural_bounds`` are values that cannot be exceeded (0 inner steps, a learning rate of 1
    for a mixture weight); landing on one of them is no warning. Returns ``"lower"``,
    ``"upper"`` or None. Grids of fewer than 3 distinct values always warn when on an edge.
    """
    edge = grid_edge(name, grid, chosen, natural_bounds=natural_bounds)
    if edge is not None:
        values, widen = sorted(set(grid)), "smaller" if edge == "lower" else "larger"
        warnings.warn(
            f"{name}={chosen!r} is at the {edge} edge of its grid {values}: the optimum may lie "
            f"outside it; add {widen} values to the grid",
            GridEdgeWarning,
            stacklevel=2,
        )
    return edge


def _next_grid_value(grid: list, edge: str):
    """One more value beyond ``edge``: the same ratio as the two outermost values (a geometric
    grid) or, where a ratio is meaningless, the same step; an integer grid stays whole and >= 1."""
    a, b = (grid[1], grid[0]) if edge == "lower" else (grid[-2], grid[-1])
    if not (math.isfinite(a) and math.isfinite(b)):  # e.g. an "infinite half-life" end: nothing beyond
        return None
    value = b * (b / a) if a > 0 and b > 0 else b + (b - a)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in grid):
        return max(1, int(round(value)))
    return float(value)


def extend_grid(name: str, grid, chosen, *, natural_bounds: tuple = (None, None)):
    """The next value to try when ``chosen`` sits on an edge of ``grid`` that is not a natural bound.

    One value beyond that edge (:func:`_next_grid_value`), clipped to the natural bound; None when
    ``chosen`` is interior, on a natural bound, or no new value exists (an infinite end, an integer
    grid already at 1).
    """
    grid = sorted(set(grid))
    edge = grid_edge(name, grid, chosen, natural_bounds=natural_bounds)
    value = None if edge is None else _next_grid_value(grid, edge)
    if value is None:
        return None
    low, high = natural_bounds
    value = low if low is not None and value < low else high if high is not None and value > high else value
    return None if value in grid else value


def bracketed_search(name: str, grid, evaluate, *, natural_bounds: tuple = (None, None),
                     max_extensions: int = 3) -> tuple[object, dict, str | None]:
    """The grid value with the highest ``evaluate(value)`` (first on ties) and every value's score.

    While the best value sits on an edge of the grid that is not a natural bound, the grid is
    extended that way by one value (:func:`extend_grid`), at most ``max_extensions`` times, so the
    optimum ends inside the grid. The third result names the edge the value still sits on (None:
    interior or a natural bound).
    """
    search = bracketed_grid_search({name: grid}, lambda point: evaluate(point[name]),
                                   natural_bounds={name: natural_bounds}, max_extensions=max_extensions)
    scores = {point[0]: score for point, score in sorted(search.scores.items())}
    return search.chosen[name], scores, search.edges[name]


@dataclass
class GridSearch:
    """What :func:`bracketed_grid_search` tried and chose.

    scores: ``{point: score}`` for every point tried, a point being a tuple in ``names`` order;
    start / final: each parameter's values before and after the extensions; edges: per
    parameter, the edge its chosen value still sits on (None: interior or a natural bound);
    bounds: the natural bounds given.
    """

    names: list
    chosen: dict
    scores: dict
    start: dict
    final: dict
    edges: dict
    bounds: dict

    @property
    def extended(self) -> dict:
        """Per parameter, the values added beyond the starting grid."""
        return {name: [v for v in self.final[name] if v not in self.start[name]] for name in self.names}


def bracketed_grid_search(grids: dict, evaluate, *, natural_bounds: dict | None = None,
                          max_extensions: int = 3, max_points: int | None = None) -> GridSearch:
    """The best point of a product grid, extended until each chosen value is inside its grid.

    grids: ``{parameter: values}``; the product is tried in order (its first ``max_points`` points
    when given); ``evaluate({parameter: value})`` returns a score, higher is better (NaN counts as
    the worst; the first point wins ties). Then, at most ``max_extensions`` rounds: for each
    parameter whose chosen value is on an edge of the values tried that is not a natural bound,
    one more value beyond it (:func:`extend_grid`) is tried with the other parameters at their
    chosen values. Stops early when a round adds nothing.
    """
    names, bounds = list(grids), natural_bounds or {}
    if any(len(values) == 0 for values in grids.values()):
        raise ValueError(f"every grid needs at least one value, got {grids}")
    if max_points is not None and max_points < 1:
        raise ValueError(f"max_points must be None or >= 1, got {max_points!r}")
    scores: dict = {}

    def score(point: tuple) -> None:
        value = float(evaluate(dict(zip(names, point))))
        scores[point] = -math.inf if math.isnan(value) else value

    def best() -> tuple:
        order = list(scores)
        return max(order, key=lambda point: (scores[point], -order.index(point)))

    for point in list(itertools.product(*(list(values) for values in grids.values())))[:max_points]:
        if point not in scores:
            score(point)
    start = {name: sorted({point[i] for point in scores}) for i, name in enumerate(names)}
    for _ in range(max_extensions):
        added = False
        for i, name in enumerate(names):
            chosen = best()
            tried = {point[i] for point in scores}
            value = extend_grid(name, tried, chosen[i], natural_bounds=bounds.get(name, (None, None)))
            point = chosen[:i] + (value,) + chosen[i + 1:]
            if value is not None and point not in scores:
                score(point)
                added = True
        if not added:
            break
    chosen = best()
    final = {name: sorted({point[i] for point in scores}) for i, name in enumerate(names)}
    edges = {name: grid_edge(name, final[name], chosen[i], natural_bounds=bounds.get(name, (None, None)))
             for i, name in enumerate(names)}
    return GridSearch(names, dict(zip(names, chosen)), scores, start, final, edges, dict(bounds))


__all__ = [
    "adam",
    "available_cores",
    "leaving_cores",
    "map_in_processes",
    "start_in_processes",
    "exact_sqrt",
    "GridEdgeWarning",
    "GridSearch",
    "bracketed_grid_search",
    "bracketed_search",
    "extend_grid",
    "grid_edge",
    "warn_if_on_grid_edge",
    "default_device",
    "machine_memory_gb",
    "peak_rss_mb",
    "progress_disabled",
    "resolve_device",
    "seed_everything",
]
