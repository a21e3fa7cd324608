"""Run a notebook with papermill and read back the values it glued."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import papermill

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
GLUE_MIME = "application/papermill.record/text/plain"


def glued_values(nb: nbformat.NotebookNode) -> dict:
    """Every value glued with ``myst_nb.glue`` in an executed notebook, parsed from its repr."""
    values = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            text = output.get("data", {}).get(GLUE_MIME) or output.get("data", {}).get("text/plain")
            try:
                values[name] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[name] = text
    return values


def run_notebook(name: str, tmp_path: Path, **parameters) -> dict:
    """Execute ``notebooks/<name>`` with ``parameters``; return its glued values."""
    out = tmp_path / name
    env_backup = os.environ.get("METAREC_QUIET")
    os.environ["METAREC_QUIET"] = "1"
    try:
        try:
            papermill.execute_notebook(
                str(NOTEBOOKS / name),
                str(out),
                parameters=parameters,
                kernel_name="python3",
                cwd=str(NOTEBOOKS),
                progress_bar=False,
            )
        except papermill.PapermillExecutionError:
            # nbclient runs on past cells tagged raises-exception, but papermill still reports
            # their errors at the end; accept the run only if every error is in such a cell.
            executed = nbformat.read(out, as_version=4)
            unexpected = [
                cell.source[:80]
                for cell in executed.cells
                if any(o.get("output_type") == "error" for o in cell.get("outputs", []))
                and "raises-exception" not in cell.get("metadata", {}).get("tags", [])
            ]
            if unexpected:
                raise
    finally:
        if env_backup is None:
            os.environ.pop("METAREC_QUIET", None)
        else:
            os.environ["METAREC_QUIET"] = env_backup
    return glued_values(nbformat.read(out, as_version=4))
