"""Chapter 9 with a tiny live run: committed benchmark results load and the live timing works."""

from __future__ import annotations

from tests.notebooks.harness import run_notebook


def test_tools_chapter_small(tmp_path):
    values = run_notebook(
        "09_tools_and_benchmarks.ipynb", tmp_path,
        LIVE_BATCH_SIZES=[4, 8], LIVE_INNER_STEPS=[1], LIVE_REPEATS=1, DEVICE="cpu",
    )
    assert values["live_ms_largest"] > 0
    assert values["bench_vmap_ms_32"] > 0 and values["bench_max_grad_diff"] < 1e-6
    assert values["bench_tasks_interactions"] == 1_000_000
