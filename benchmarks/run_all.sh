#!/usr/bin/env bash
# Re-measure every benchmark; each script's last line (one JSON object) goes to benchmarks/results/.
# PEERS_PYTHON: a Python with learn2learn, higher and torchopt installed (see README.md); default: the project's.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PEERS=${PEERS_PYTHON:-$PY}
mkdir -p benchmarks/results
run() {  # run NAME COMMAND...: print the output, keep the last line
    local name=$1; shift
    "$@" | tee "benchmarks/results/$name.log"
    tail -n 1 "benchmarks/results/$name.log" > "benchmarks/results/$name.json"
    rm "benchmarks/results/$name.log"
}
run build_tasks_cpu "$PY" benchmarks/build_tasks.py
run maml_step_cpu env PYTHONPATH=. "$PEERS" benchmarks/maml_step.py --threads 2 --repeats 20
# The same with glibc keeping freed memory (no page faults on the large per-task tensors).
run maml_step_cpu_malloc_tuned env PYTHONPATH=. MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824 \
    "$PEERS" benchmarks/maml_step.py --threads 2 --repeats 20
run embedding_meta_step_cpu env PYTHONPATH=. "$PEERS" benchmarks/embedding_meta_step.py --threads 2
if [ -f benchmarks/end_to_end.py ]; then
    run end_to_end_cpu "$PY" benchmarks/end_to_end.py
fi
run classical_scale_cpu "$PY" benchmarks/classical_scale.py
run residual_meta_cpu "$PY" benchmarks/residual_meta.py
run residual_meta_synthetic_cpu "$PY" benchmarks/residual_meta.py --synthetic
run new_products_cpu "$PY" benchmarks/new_products.py
run own_log_scale_cpu "$PY" benchmarks/own_log_scale.py
# Which engine reads a log larger than memory (Polars only when installed: pip install polars).
run out_of_core_engines_cpu env PYTHONPATH=. "$PY" benchmarks/out_of_core_engines.py
# Chapter 7 at full size (the chapter shows this file beside its own, smaller run).
run online_retail_chapter_cpu env METAREC_NUMERICS=pinned "$PY" benchmarks/online_retail_chapter.py
