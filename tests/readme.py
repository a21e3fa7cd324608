"""The README's commands, read from its bash blocks, a runner that executes one as written, and a
web server on the loopback address that stands in for a download site."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shlex
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
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


def run_command(command: str, cwd: Path = ROOT, timeout: int = 1200,
                env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
    """Run a shell command as a reader would, quiet progress bars, from ``cwd``; ``env`` sets
    variables (``None`` removes one)."""
    full = {**os.environ, "METAREC_QUIET": "1", **(env or {})}
    full = {k: v for k, v in full.items() if v is not None}
    return subprocess.run(command, shell=True, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@contextlib.contextmanager
def loopback_server(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# A proxy from the environment must not intercept requests to the loopback server.
NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def zip_one(file: Path, archive: Path, name: str) -> Path:
    """``archive`` holding ``file`` under ``name`` (deflated, as UCI's zip)."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(file, arcname=name)
    return archive


def output_notebook(command: str, cwd: Path = ROOT) -> Path:
    """The output notebook a papermill command writes (its second positional argument)."""
    return cwd / shlex.split(command)[2]


def glued(path: Path) -> dict:
    return glued_values(nbformat.read(path, as_version=4))


__all__ = ["NO_PROXY", "ROOT", "glued", "loopback_server", "output_notebook", "own_data_command", "readme_commands",
           "run_command", "with_log", "zip_one"]
