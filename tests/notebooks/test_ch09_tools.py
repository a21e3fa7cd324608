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
    assert values["bench_default_ms_32"] > 0 and values["bench_loop_ms_32"] > values["bench_default_ms_32"]
    assert values["bench_tasks_interactions"] == 1_000_000
    # The embedding-table benchmark: all meta-gradients agree, and the row-wise step is flat in the catalogue.
    assert values["emb_max_grad_diff"] < 1e-5
    assert values["emb_min_speedup"] > 1
    assert values["emb_dense_peak_50k"] > 10 * values["emb_ours_peak_50k"]
    # At the largest catalogue the row-wise step's peak is the gradient it returns, plus little.
    assert values["emb_grad_largest"] <= values["emb_ours_peak_largest"] < 1.5 * values["emb_grad_largest"]
    # Exercise 9.4's solution runs: the row-wise and dense meta-gradients agree in float32.
    assert values["exercise_4_grad_difference"] < 1e-6
