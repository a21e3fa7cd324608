"""Do the committed outputs reproduce on another processor? Strict nbval on an emulated one.

The notebook kernel runs pinned (``metarec_ref/numerics.py``): the math libraries take one code
path on every x86-64 CPU. What settings cannot pin is an instruction whose result the processor
itself chooses; torch's CPU square root was one, and committed outputs once failed on a machine
that had not made them because of it. Here the kernel runs under ``qemu-x86_64`` on emulated
processors of another vendor and generation (``METAREC_EMULATE_CPU``): their CPUID steers every
library's dispatch, and their approximate instructions round differently from real hardware.
None of them may change a digit of the committed outputs.

``python -m tests.portability NOTEBOOK ...`` checks the notebooks on every emulated processor
(``make portability`` does all chapters, before outputs are committed; emulation is about ten
times slower); ``tests/test_portability.py`` checks the library's fingerprint and chapter 4 in
``make test``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from metarec_ref.numerics import EMULATE_ENV

ROOT = Path(__file__).resolve().parents[1]

# qemu-x86_64 CPU models of two vendors (AVX2 and FMA both; qemu emulates no AVX-512).
EMULATED_CPUS = {"intel-haswell": "Haswell-v4", "amd-epyc": "EPYC-Milan"}

KERNEL_HUNG = "Kernel didn't respond"  # jupyter_client's words for a kernel that never became ready
NBVAL = ["-p", "tests.nbval_plugin", "--nbval", "--nbval-kernel-name", "python3",
         "--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]


def emulator_missing() -> str | None:
    """Why the emulated runs cannot happen here, or None."""
    if shutil.which("qemu-x86_64") is None:
        return "qemu-x86_64 is not installed (Debian: apt-get install qemu-user; .ci/run installs it)"
    return None


def run_nbval(notebooks: list[str], cpu: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Strict nbval of ``notebooks`` (paths from the repository root) with the kernel on ``cpu``."""
    env = {**os.environ, "METAREC_QUIET": "1", "METAREC_NUMERICS": "pinned", EMULATE_ENV: EMULATED_CPUS[cpu]}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
               "--nbval-cell-timeout", str(int(timeout)), "--nbval-kernel-startup-timeout", "600",
               *NBVAL, *notebooks]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0 and KERNEL_HUNG in done.stdout:
        # qemu-user now and then deadlocks a multi-threaded kernel while it starts: the outputs
        # were never compared, so start once more (a difference in an output is never retried).
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    return done


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m tests.portability NOTEBOOK ...", file=sys.stderr)
        return 2
    if (why := emulator_missing()) is not None:
        print(why, file=sys.stderr)
        return 2
    failed = []
    for cpu in EMULATED_CPUS:
        done = run_nbval(argv, cpu)
        print(f"== {cpu}: exit status {done.returncode}\n{done.stdout[-4000:]}")
        if done.returncode != 0:
            failed.append(cpu)
    if failed:
        print(f"committed outputs do not reproduce on {failed}: find the operation that rounds by "
              "processor (see metarec_ref/numerics.py), then re-execute with `make notebooks`", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


# The processor's brand string from the CPUID instruction itself (leaves 0x80000002-4), which an
# emulator answers as the CPU it emulates: what a kernel runs on, whatever /proc says.
CPU_BRAND_PROBE = """
import ctypes, mmap
_code = bytes([0x53, 0x89, 0xf0, 0x31, 0xc9, 0x0f, 0xa2, 0x89, 0x07, 0x89, 0x5f, 0x04,
               0x89, 0x4f, 0x08, 0x89, 0x57, 0x0c, 0x5b, 0xc3])  # cpuid(leaf) -> 16 bytes at out
_page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
_page.write(_code)
_cpuid = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32)(
    ctypes.addressof(ctypes.c_char.from_buffer(_page)))
_out = ctypes.create_string_buffer(48)
for _i, _leaf in enumerate((0x80000002, 0x80000003, 0x80000004)):
    _cpuid(ctypes.addressof(_out) + 16 * _i, _leaf)
print(_out.raw.rstrip(b"\\0").decode().strip())
"""
