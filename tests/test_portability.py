"""The committed outputs of the cheapest chapters under settings that imitate another CPU.

``make test`` runs strict nbval of every chapter on this machine; this runs it again, on the
cheapest chapters, as another machine would (``tests/portability.py``). ``make portability``
does every chapter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from metarec_ref.numerics import kernel_environment, pinned_env
from tests.portability import IMITATIONS, ROOT, run_nbval

# The two quickest chapters that still run torch, MKL and numpy reductions: the tour, and
# chapter 4, whose memorised losses and meta-gradients first showed the dependence.
CHEAPEST = ["notebooks/00_tour.ipynb", "notebooks/04_article_code_debugged.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("imitation", IMITATIONS)
def test_cheapest_chapters_reproduce_on_another_machine(imitation):
    done = run_nbval(CHEAPEST, imitation)
    assert done.returncode == 0, (
        f"committed outputs differ under {imitation} settings:\n{done.stdout[-6000:]}\n"
        "re-execute with `make notebooks` (pinned numerics) and commit"
    )


def test_the_kernel_pins_what_a_machine_would_choose():
    """Every variable an imitation sets is one the pinned kernel overrides or removes."""
    for settings in IMITATIONS.values():
        env = kernel_environment({**settings, "METAREC_NUMERICS": "pinned"})
        for name, value in settings.items():
            assert env.get(name) != value, f"{name}={value} would reach the kernel"


def test_native_mode_leaves_the_machine_alone():
    settings = next(iter(IMITATIONS.values()))
    assert kernel_environment({**settings, "METAREC_NUMERICS": "native"}) == {**settings, "METAREC_NUMERICS": "native"}
    with pytest.raises(ValueError, match="not a numerics mode"):
        kernel_environment({"METAREC_NUMERICS": "fast"})


def test_the_installed_kernel_runs_pinned():
    """The kernel `make venv` installs is the one notebooks run on, and it starts pinned."""
    probe = ("import json, os, torch; print(json.dumps({'capability': torch.backends.cpu.get_cpu_capability(), "
             "'threads': torch.get_num_threads(), 'env': {k: os.environ.get(k) for k in %r}}))" % sorted(pinned_env()))
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, **next(iter(IMITATIONS.values())), "METAREC_NUMERICS": "pinned"}
    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=str(ROOT))
    try:
        lines = []
        client.execute_interactive(probe, output_hook=lambda msg: lines.append(msg["content"].get("text", "")),
                                   timeout=120)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    seen = json.loads("".join(lines))
    assert seen["env"] == pinned_env()
    assert seen["threads"] == 1
    if "ATEN_CPU_CAPABILITY" in pinned_env():
        assert seen["capability"] == "DEFAULT"
    spec = json.loads(subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    assert "metarec_ref.numerics" in spec["kernelspecs"]["python3"]["spec"]["argv"]
