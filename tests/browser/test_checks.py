"""The browser tier's checks catch what they are meant to catch: a page broken on purpose fails each one."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from tests.browser.pages import (
    RAW_MATH,
    UNRENDERED,
    BookServer,
    BookVisitor,
    broken_internal_links,
    expected_glue,
    redirect_target,
    snippets,
)

ORIGIN = "http://127.0.0.1:8000"
MATHJAX = Path(importlib.util.find_spec("sphinx-mathjax-offline").origin).parent / "static" / "mathjax"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_raw_math_and_placeholders_are_found():
    text = r"A task \(\mathcal{T}_i\) and $$x$$ then \[ y \] with {glue:text}`k` and {{ name }}."
    assert [m.group() for m in RAW_MATH.finditer(text)] == ["\\(", "$$", "$$", "\\["]
    assert [m.group() for m in UNRENDERED.finditer(text)] == ["{glue:text}", "{{ name }}"]
    assert snippets(RAW_MATH, "a price of $5 and 3 $ signs") == []


def test_broken_links_name_the_missing_file_or_anchor(tmp_path):
    write(tmp_path / "a.html", '<h1 id="top">A</h1><a name="old"></a>')
    hrefs = [
        f"{ORIGIN}/a.html#top",
        f"{ORIGIN}/a.html#old",
        f"{ORIGIN}/a.html#gone",
        f"{ORIGIN}/b.html",
        "https://example.org/b.html",
    ]
    assert broken_internal_links(tmp_path, ORIGIN, hrefs) == [
        f"{ORIGIN}/a.html#gone (no anchor #gone)",
        f"{ORIGIN}/b.html (no file b.html)",
    ]


def test_expected_glue_counts_markdown_roles_only(tmp_path):
    cells = [
        {"cell_type": "markdown", "source": ["AUC {glue:text}`auc:.3f` and {glue:text}`hr`"]},
        {"cell_type": "code", "source": ["# {glue:text}`not_counted`"]},
        {"cell_type": "markdown", "source": ["{glue:math}`eq`"]},
    ]
    write(tmp_path / "_sources" / "nb" / "ch.ipynb", json.dumps({"cells": cells}))
    assert expected_glue(tmp_path, "nb/ch.html") == (2, 1)
    assert expected_glue(tmp_path, "genindex.html") == (0, 0)


def test_redirect_target(tmp_path):
    write(tmp_path / "index.html", '<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    write(tmp_path / "page.html", "<p>text</p>")
    assert redirect_target(tmp_path, "index.html") == "book/intro.html"
    assert redirect_target(tmp_path, "page.html") is None


BROKEN_PAGE = """<html><head>
<script>window.MathJax = {tex: {inlineMath: [["\\\\(", "\\\\)"]]}};</script>
<script defer src="%s"></script></head>
<body><article>
<p>Offline math <span class="math">\\(\\theta\\)</span>.</p>
<p>Glue <span class="pasted-text">0.71</span>.</p>
<img src="_images/missing.png"> <img src="_images/ok.svg">
<a href="other.html">gone</a> <a href="#here">here</a> <h2 id="here">here</h2>
</article></body></html>"""
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'


def build_tiny_book(root: Path, mathjax_src: str) -> None:
    write(root / "page.html", BROKEN_PAGE % mathjax_src)
    write(root / "_images" / "ok.svg", SVG)
    write(root / "_sources" / "page.md", "Glue {glue:text}`a` and {glue:text}`b`.")


def test_a_page_broken_on_purpose_fails_every_check(browser, tmp_path):
    root = tmp_path / "html"
    build_tiny_book(root, "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js")
    with BookServer(root) as server:
        report = BookVisitor(browser, root, server.origin, tmp_path / "shots").visit("page.html")
    assert report.blocked == ["https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"]
    assert any("MathJax never started" in u for u in report.untypeset)
    assert len(report.raw_text) == 1 and "math \\(\\theta\\)" in report.raw_text[0]
    assert report.broken_images == ["_images/missing.png"]
    assert report.failed == ["/_images/missing.png (404)"]
    assert [link.split(" ")[0].rsplit("/", 1)[1] for link in report.broken_links] == ["other.html"]
    assert report.glue_missing == ["2 {glue:text} in the source, 1 shown"]
    assert report.screenshot.stat().st_size > 0


def test_the_same_page_with_bundled_mathjax_typesets(browser, tmp_path):
    root = tmp_path / "html"
    build_tiny_book(root, "_static/mathjax/tex-chtml.js")
    shutil.copytree(MATHJAX, root / "_static" / "mathjax")
    with BookServer(root) as server:
        report = BookVisitor(browser, root, server.origin, tmp_path / "shots").visit("page.html")
    assert report.blocked == [] and report.untypeset == [] and report.math_errors == []
    assert report.raw_text == []
