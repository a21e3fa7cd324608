"""Run a notebook with papermill and read back the values it glued."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import papermill

from metarec_ref.book.glue import glued_values  # noqa: F401  (the tests read glued values with it)

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


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
