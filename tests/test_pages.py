"""What a reader sees on each page: the idea, not the bookkeeping.

Each chapter shows at most a few `glue(` calls (the rest sit in hidden cells), holds at most
3,000 words of prose (one sitting), and its committed outputs show no warning, no machine path
and no truncated table cell. Every value a markdown page (book/*.md) pastes from a chapter is
glued by that chapter, so moving prose out of a chapter cannot leave a page pointing at nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from metarec_ref.book.glue import glued_values

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.md"))
# A markdown page pastes a chapter's value: {glue:text}`/notebooks/<chapter>.ipynb::<key>:<format>`.
CROSS_PAGE_GLUE = re.compile(r"\{glue:text\}`/notebooks/([\w.]+)\.ipynb::(\w+)")

MAX_VISIBLE_GLUE = 5
MAX_WORDS = 3000
HIDDEN_INPUT = {"remove-input", "remove-cell", "hide-input", "hide-cell"}
# A warning, or a path that names one machine's folders, in what a reader sees.
STRAY = re.compile(r"\w*Warning:|\.venv/|site-packages|/home/|/Users/|/root/|/work/|/tmp/")
# pandas shortens a long cell to "..." (or "…"): the reader cannot read the value.
TRUNCATED_CELL = re.compile(r"<td>[^<]*(\.\.\.|…)</td>")


def cells(path: Path, kind: str):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == kind]


def tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def shown_text(output) -> str:
    """The text of an output as a page shows it (tracebacks included)."""
    parts = [output.get("text", "")]
    data = output.get("data", {})
    parts += [data.get("text/plain", ""), data.get("text/html", ""), data.get("text/markdown", "")]
    parts += output.get("traceback", [])
    return "\n".join("".join(p) if isinstance(p, list) else str(p) for p in parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_at_most_a_few_visible_glue_calls(path):
    visible = [c for c in cells(path, "code") if not HIDDEN_INPUT & tags(c)]
    count = sum(len(re.findall(r"\bglue\(", c.source)) for c in visible)
    assert count <= MAX_VISIBLE_GLUE, (
        f"{path.name}: {count} glue( calls in visible cells (at most {MAX_VISIBLE_GLUE}); move the "
        "bookkeeping to a cell tagged remove-cell"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_page_reads_in_one_sitting(path):
    words = sum(len(re.findall(r"\w+", c.source)) for c in cells(path, "markdown"))
    assert words <= MAX_WORDS, f"{path.name}: {words} words of prose (at most {MAX_WORDS}); split the page"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_show_no_warning_path_or_truncated_value(path):
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "code" or "remove-output" in tags(cell) or "remove-cell" in tags(cell):
            continue
        for output in cell.get("outputs", []):
            text = shown_text(output)
            hit = STRAY.search(text) or TRUNCATED_CELL.search(text)
            assert hit is None, f"{path.name}, cell {index}: a reader sees {hit.group(0)!r} in\n{text[:600]}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_every_value_a_page_pastes_is_glued_by_its_chapter(path):
    for chapter, key in CROSS_PAGE_GLUE.findall(path.read_text()):
        values = glued_values(ROOT / "notebooks" / f"{chapter}.ipynb")
        assert key in values, f"book/{path.name} pastes {key!r}, which {chapter} does not glue"


def test_the_checks_catch_what_they_name():
    assert STRAY.search("/work/main/metarec_ref/recipes/scenarios.py:148: GridEdgeWarning: lr")
    assert STRAY.search("FutureWarning: `isinstance(treespec, LeafSpec)`")
    assert STRAY.search('File /x/.venv/lib/python3.11/site-packages/torch/nn/modules/module.py:1778')
    assert TRUNCATED_CELL.search("<td>inner_lr = 0.1, meta_steps = ...</td>")
    assert not STRAY.search("the warning in chapter 2 says: widen the grid")
    assert not TRUNCATED_CELL.search("<td>0.691</td>")
    assert CROSS_PAGE_GLUE.findall("{glue:text}`/notebooks/09_tools_and_benchmarks.ipynb::bench_traced_ms_32:.1f`") == [
        ("09_tools_and_benchmarks", "bench_traced_ms_32")]
