"""Contracts every notebook and the table of contents must keep."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files.extend(section["file"] for section in chapter.get("sections", []))
    return files


def parameters_cells(nb) -> list:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no chapter"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exactly_one_parameters_cell_with_literals(path):
    nb = nbformat.read(path, as_version=4)
    cells = parameters_cells(nb)
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    names = []
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1, (
            f"{path.name}: the parameters cell may only hold `NAME = literal` lines"
        )
        ast.literal_eval(stmt.value)  # raises on anything derived
        names.append(stmt.targets[0].id)
    inspected = papermill.inspect_notebook(str(path))
    assert sorted(inspected) == sorted(names)
    assert {"SEED", "DEVICE"} <= set(names), f"{path.name}: SEED and DEVICE are required parameters"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_kernelspec_and_executed(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.get("execution_count") for c in code), f"{path.name} is not fully executed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_errors_outside_raises_exception_cells(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if "raises-exception" in tags:
            assert errors, f"{path.name}: a cell tagged raises-exception raised nothing"
        else:
            assert not errors, f"{path.name}: error output in cell {cell.source[:60]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_listed_in_toc(path):
    assert f"notebooks/{path.stem}" in toc_files()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_imports_library_and_seeds(path):
    nb = nbformat.read(path, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "metarec_ref" in source
    assert "seed_everything(SEED)" in source


@pytest.mark.parametrize("entry", toc_files())
def test_toc_entry_exists(entry):
    candidates = [ROOT / f"{entry}{ext}" for ext in (".md", ".ipynb")]
    assert any(p.exists() for p in candidates), f"_toc.yml lists {entry}, which does not exist"


@pytest.mark.parametrize("entry", toc_files())
def test_toc_entry_is_not_a_placeholder(entry):
    path = next(p for p in (ROOT / f"{entry}.md", ROOT / f"{entry}.ipynb") if p.exists())
    if path.suffix == ".md":
        text = path.read_text()
    else:
        text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    generated = "{bibliography}" in text or "{tableofcontents}" in text
    assert generated or len(text.split()) > 40, f"{entry} looks like an empty placeholder"
