"""Pinned numerics: the same floating-point results on any x86-64 CPU.

The math libraries under torch and numpy pick their code paths by the CPU they run on: ATen's
vector width (AVX-512, AVX2, plain), MKL's and OpenBLAS's kernels, numpy's SIMD loops, glibc's
FMA variants of ``exp`` and ``log``, and the number of threads a reduction is split over. Each
choice rounds differently, so a notebook executed on one machine does not reproduce its last
digits on another. The pinned mode fixes every one of those choices to one that every x86-64 CPU
supports, and runs on one thread:

- ``ATEN_CPU_CAPABILITY=default`` (torch's kernels without vector extensions);
- ``MKL_CBWR=COMPATIBLE`` (MKL's conditional numerical reproducibility, one code path);
- ``ONEDNN_MAX_CPU_ISA=SSE41`` (oneDNN's kernels, where torch uses them);
- ``OPENBLAS_CORETYPE=Nehalem`` (numpy's and scipy's BLAS);
- ``NPY_ENABLE_CPU_FEATURES`` = numpy's baseline (no runtime-dispatched SIMD loops);
- ``GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA,-FMA4`` (glibc's libm without FMA variants);
- one thread for OpenMP, MKL and OpenBLAS.

These are read when a process starts, so the mode is applied by the notebook kernel, which sets
them and then starts ``ipykernel`` (:func:`kernel_main`). ``make venv`` installs that kernel as
``python3``; every ``make`` target and every README command runs notebooks on it. For interactive
work at full speed, start JupyterLab with ``METAREC_NUMERICS=native``: the kernel then leaves
the machine's own choices alone (results then differ from the committed ones in the last digits).

Pinning the libraries is not the whole story: torch's CPU square root (MKL's vector math) is not
correctly rounded and its last bit depends on the processor, whatever the settings. The library
never takes one where it matters: :func:`metarec_ref.runtime.adam` and
:func:`metarec_ref.runtime.exact_sqrt` round exactly. To check that committed outputs reproduce on
another processor, ``METAREC_EMULATE_CPU`` names a CPU model of ``qemu-x86_64`` (e.g.
``Haswell-v4``) and the kernel then runs on that emulated processor (``tests/portability.py``).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from pathlib import Path

from numpy._core._multiarray_umath import __cpu_baseline__

MODE_ENV = "METAREC_NUMERICS"  # "pinned" (default) or "native"
EMULATE_ENV = "METAREC_EMULATE_CPU"  # a qemu-x86_64 CPU model: the kernel runs on that emulated CPU
PINNED_THREADS = 1
KERNEL_NAME = "python3"
KERNEL_DISPLAY_NAME = "Python 3 (metarec)"

_THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_X86_64 = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "OPENBLAS_CORETYPE": "Nehalem",
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-FMA4",
}
# A machine's own overrides that would fight the pinned ones (numpy refuses both of its own at once).
_UNSET_WHEN_PINNED = ("NPY_DISABLE_CPU_FEATURES", "MKL_ENABLE_INSTRUCTIONS")


def numpy_baseline_features() -> str:
    """numpy's compile-time baseline, e.g. ``"X86_V2"``: the features every machine it runs on has."""
    return " ".join(__cpu_baseline__)


def pinned_env(machine: str | None = None) -> dict[str, str]:
    """The environment of the pinned mode on this machine's architecture (see the module doc).

    On another architecture only the thread counts are pinned: the committed outputs come from
    x86-64, and a different instruction set rounds differently whatever its settings.
    """
    env = {name: str(PINNED_THREADS) for name in _THREADS}
    if (machine or platform.machine()).lower() in ("x86_64", "amd64"):
        env.update(_X86_64)
        env["NPY_ENABLE_CPU_FEATURES"] = numpy_baseline_features()
    return env


def numerics_mode(environ: dict[str, str] | None = None) -> str:
    """``"pinned"`` or ``"native"``, from ``METAREC_NUMERICS``; anything else is refused."""
    mode = (environ if environ is not None else os.environ).get(MODE_ENV, "pinned") or "pinned"
    if mode not in ("pinned", "native"):
        raise ValueError(f"{MODE_ENV}={mode!r} is not a numerics mode; use 'pinned' (the default) or 'native'")
    return mode


def kernel_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a notebook kernel starts with: ``environ`` with the pinned settings on top,
    unless the mode is native."""
    environ = dict(os.environ if environ is None else environ)
    if numerics_mode(environ) == "pinned":
        for name in _UNSET_WHEN_PINNED:
            environ.pop(name, None)
        environ.update(pinned_env())
    return environ


def kernel_main(argv: list[str]) -> None:
    """Start ``ipykernel`` in a fresh process whose environment carries the numerics mode."""
    env = kernel_environment()
    command = [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", *argv]
    cpu = env.pop(EMULATE_ENV, "")
    if cpu:  # the same interpreter, on an emulated processor (qemu-user does not follow execve)
        emulator = shutil.which("qemu-x86_64")
        if emulator is None:
            raise SystemExit(f"{EMULATE_ENV}={cpu} needs qemu-x86_64 (Debian: apt-get install qemu-user)")
        command = [emulator, "-cpu", cpu, *command]
    os.execve(command[0], command, env)


def install_kernel(prefix: str = sys.prefix) -> Path:
    """Write the ``python3`` kernel spec under ``prefix`` (a virtual environment): this Python,
    started through :func:`kernel_main`. Returns the spec's folder."""
    folder = Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "metarec_ref.numerics", "kernel", "-f", "{connection_file}"],
        "display_name": KERNEL_DISPLAY_NAME,
        "language": "python",
        "metadata": {"debugger": True},
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["kernel"]:
        kernel_main(argv[1:])
    elif argv[:1] == ["install"]:
        print(f"installed kernel spec {KERNEL_NAME!r} in {install_kernel()}")
    elif argv[:1] == ["env"]:  # the pinned settings as shell assignments
        print(" ".join(f"{k}='{v}'" for k, v in pinned_env().items()))
    else:
        print("usage: python -m metarec_ref.numerics {kernel -f CONNECTION_FILE | install | env}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
