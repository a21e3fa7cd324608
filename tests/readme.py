"""The README's commands, read from its bash blocks, and a runner that executes one as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import nbformat

from tests.notebooks.harness import glued_values

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_commands() -> list[str]:
    """Every command of the README's ```bash blocks, continuation lines joined, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#[^'\"]*$", "", line.strip())  # a trailing comment (no quotes in it)
            if line and not line.startswith("#"):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def own_data_command() -> str:
    """The README's command that runs chapter 8 on a file (the one with DATA_PATH)."""
    matches = [c for c in readme_commands() if "08_your_data" in c and "DATA_PATH" in c]
    assert len(matches) == 1, f"expected one chapter 8 command with DATA_PATH in the README, found {matches}"
    return matches[0]


def with_log(command: str, data_path: Path, yaml_parameters: dict, out: Path, **parameters) -> str:
    """The README's own-data command pointed at another file, mapping and output, plus parameters
    (scalars as ``-p``, lists and dicts in the ``-y`` YAML)."""
    args = shlex.split(command)
    args[args.index("DATA_PATH") + 1] = str(data_path)
    listed = {k: v for k, v in parameters.items() if isinstance(v, (list, dict))}  # -p cannot pass these
    args[args.index("-y") + 1] = json.dumps({**yaml_parameters, **listed})
    args[2] = str(out)  # papermill INPUT OUTPUT: the output notebook
    for name, value in parameters.items():
        if name not in listed:
            args += ["-p", name, str(value)]
    return shlex.join(args)


def run_command(command: str, cwd: Path = ROOT, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Run a shell command as a reader would, quiet progress bars, from ``cwd``."""
    env = {**os.environ, "METAREC_QUIET": "1"}
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def output_notebook(command: str, cwd: Path = ROOT) -> Path:
    """The output notebook a papermill command writes (its second positional argument)."""
    return cwd / shlex.split(command)[2]


def glued(path: Path) -> dict:
    return glued_values(nbformat.read(path, as_version=4))


__all__ = ["ROOT", "glued", "output_notebook", "own_data_command", "readme_commands", "run_command", "with_log"]
