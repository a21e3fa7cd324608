"""Do results reproduce on another processor? The same computations here and on emulated ones.

``make test`` runs strict nbval of every chapter on this machine. This file runs, on processors
emulated by ``qemu-x86_64`` (``tests/portability.py``): the fingerprint of the computations the
chapters rely on (``tests/fingerprint.py``: meta-training with Adam, item-kNN, standardised
scores, RMSE, the bootstrap), and strict nbval of the cheapest chapter. ``make portability``
does every chapter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from metarec_ref import numerics
from metarec_ref.numerics import EMULATE_ENV, kernel_environment, pinned_env
from tests.portability import CPU_BRAND_PROBE, EMULATED_CPUS, ROOT, emulator_missing, run_nbval

needs_emulator = pytest.mark.skipif(emulator_missing() is not None, reason=str(emulator_missing()))

# What an AVX2 machine with two threads picks where nothing pins it.
MACHINE_CHOICES = {
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
}


def fingerprint(cpu: str | None) -> dict:
    """``tests/fingerprint.py``'s hashes, pinned, here (None) or on the emulated ``cpu``."""
    command = [sys.executable, "-m", "tests.fingerprint"]
    if cpu is not None:
        command = ["qemu-x86_64", "-cpu", EMULATED_CPUS[cpu], *command]
    env = {**kernel_environment({**os.environ, "METAREC_NUMERICS": "pinned"}), "METAREC_QUIET": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def here():
    return fingerprint(None)


@pytest.mark.slow
@needs_emulator
@pytest.mark.parametrize("cpu", EMULATED_CPUS)
def test_the_same_bits_on_an_emulated_processor(here, cpu):
    emulated = fingerprint(cpu)
    differ = sorted(name for name in here if emulated.get(name) != here[name])
    assert not differ, f"{differ} round differently on {cpu} ({EMULATED_CPUS[cpu]}): see metarec_ref/numerics.py"


@pytest.mark.slow
@needs_emulator
def test_the_cheapest_chapter_reproduces_on_an_emulated_processor():
    """Chapter 4 (the article's code, MAML on a small MLP): its memorised losses first showed the
    dependence on the processor."""
    done = run_nbval(["notebooks/04_article_code_debugged.ipynb"], "intel-haswell")
    assert done.returncode == 0, (
        f"committed outputs differ on an emulated {EMULATED_CPUS['intel-haswell']}:\n{done.stdout[-6000:]}")


def kernel_output(code: str, env: dict, timeout: float = 120) -> str:
    """What ``code`` prints in the installed ``python3`` kernel started with ``env``."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=str(ROOT), startup_timeout=timeout)
    try:
        lines = []
        client.execute_interactive(code, output_hook=lambda msg: lines.append(msg["content"].get("text", "")),
                                   timeout=timeout)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return "".join(lines)


def test_the_kernel_starts_on_the_emulated_processor(monkeypatch):
    """With METAREC_EMULATE_CPU the kernel's process is the interpreter under qemu-x86_64, pinned."""
    started = {}
    monkeypatch.setattr(numerics.os, "execve", lambda path, argv, env: started.update(argv=argv, env=env))
    monkeypatch.setattr(numerics.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setenv(EMULATE_ENV, "Haswell-v4")
    monkeypatch.setenv("METAREC_NUMERICS", "pinned")
    numerics.kernel_main(["-f", "connection.json"])
    assert started["argv"][:4] == ["/usr/bin/qemu-x86_64", "-cpu", "Haswell-v4", sys.executable]
    assert started["argv"][-2:] == ["-f", "connection.json"] and EMULATE_ENV not in started["env"]
    assert all(started["env"][k] == v for k, v in pinned_env().items())


@needs_emulator
def test_the_cpuid_probe_reads_the_emulated_processor():
    """The brand string CPU_BRAND_PROBE prints is the emulated CPU's under qemu (what a kernel sees)."""
    done = subprocess.run(["qemu-x86_64", "-cpu", EMULATED_CPUS["intel-haswell"], sys.executable, "-c", CPU_BRAND_PROBE],
                          capture_output=True, text=True, timeout=300)
    assert "Haswell" in done.stdout, done.stderr[-2000:]


def test_the_kernel_pins_what_a_machine_would_choose():
    """Every variable a machine would choose is one the pinned kernel overrides or removes."""
    env = kernel_environment({**MACHINE_CHOICES, "METAREC_NUMERICS": "pinned"})
    for name, value in MACHINE_CHOICES.items():
        assert env.get(name) != value, f"{name}={value} would reach the kernel"


def test_native_mode_leaves_the_machine_alone():
    assert kernel_environment({**MACHINE_CHOICES, "METAREC_NUMERICS": "native"}) == {
        **MACHINE_CHOICES, "METAREC_NUMERICS": "native"}
    with pytest.raises(ValueError, match="not a numerics mode"):
        kernel_environment({"METAREC_NUMERICS": "fast"})


def test_the_installed_kernel_runs_pinned():
    """The kernel `make venv` installs is the one notebooks run on, and it starts pinned."""
    probe = ("import json, os, torch; print(json.dumps({'capability': torch.backends.cpu.get_cpu_capability(), "
             "'threads': torch.get_num_threads(), 'env': {k: os.environ.get(k) for k in %r}}))" % sorted(pinned_env()))
    env = {**os.environ, **MACHINE_CHOICES, "METAREC_NUMERICS": "pinned"}
    env.pop(EMULATE_ENV, None)
    seen = json.loads(kernel_output(probe, env))
    assert seen["env"] == pinned_env()
    assert seen["threads"] == 1
    if "ATEN_CPU_CAPABILITY" in pinned_env():
        assert seen["capability"] == "DEFAULT"
    spec = json.loads(subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    assert "metarec_ref.numerics" in spec["kernelspecs"]["python3"]["spec"]["argv"]
