"""Do the committed outputs reproduce on another machine? Strict nbval under settings that imitate one.

A machine chooses by itself how its math libraries round: torch's vector width, MKL's and
OpenBLAS's kernels, numpy's SIMD loops, glibc's FMA variants, and the thread counts. Each
imitation below sets those variables to what another machine would choose. Run on a kernel in
the pinned mode (``metarec_ref/numerics.py``), none of them may change a digit of the committed
outputs; run on a plain kernel, they change chapter 4's memorised losses and chapter 6's
intervals, which is how the committed outputs once failed on a machine that had not made them.

``python -m tests.portability NOTEBOOK ...`` checks the notebooks under every imitation
(``make portability`` does all of them, before outputs are committed); ``tests/test_portability.py``
checks the cheapest chapters in ``make test``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What an AVX2 laptop or an AMD server with two threads would pick where nothing pins it.
IMITATIONS: dict[str, dict[str, str]] = {
    "avx2-two-threads": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD",
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "2",
    },
}

NBVAL = ["-p", "tests.nbval_plugin", "--nbval", "--nbval-kernel-name", "python3",
         "--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]


def run_nbval(notebooks: list[str], imitation: str) -> subprocess.CompletedProcess:
    """Strict nbval of ``notebooks`` (paths from the repository root) with ``imitation``'s settings."""
    env = {**os.environ, "METAREC_QUIET": "1", **IMITATIONS[imitation]}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *NBVAL, *notebooks]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m tests.portability NOTEBOOK ...", file=sys.stderr)
        return 2
    failed = []
    for imitation in IMITATIONS:
        done = run_nbval(argv, imitation)
        print(f"== {imitation}: exit status {done.returncode}\n{done.stdout[-4000:]}")
        if done.returncode != 0:
            failed.append(imitation)
    if failed:
        print(f"committed outputs do not reproduce under {failed}: re-execute the notebooks with "
              "`make notebooks` (pinned numerics) and commit them", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
