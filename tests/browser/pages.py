"""Load one page of the built book in headless Chromium, offline, and report what a reader would see.

The book is served from a local HTTP server on 127.0.0.1; every request to any other host is
aborted and recorded, so a page that needs a CDN (MathJax, fonts, widgets) shows up as broken.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Self
from urllib.parse import unquote, urlsplit

from playwright.sync_api import Error as BrowserError

# Sequences that mean a formula was left as LaTeX source instead of being typeset.
RAW_MATH = re.compile(r"\\\(|\\\[|\$\$|\\begin\{")
# What an unparsed glue role, a failed substitution or a docutils warning look like in the text.
UNRENDERED = re.compile(r"\{glue(:\w+)?\}|\{\{[^}]*\}\}|System Message:")
GLUE_TEXT_ROLE = re.compile(r"\{glue:text\}`")
GLUE_MATH_ROLE = re.compile(r"\{glue:math\}")
# Chromium front-ends as Debian and other distributions name them.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
SKIPPED_FOLDERS = {"_static", "_sources", "_images", "_sphinx_design_static"}

# Runs in the page once MathJax is done: the text a reader sees outside code, math that did not
# typeset, and images that did not load.
INSPECT_JS = """
async () => {
  const article = document.querySelector('article') || document.body;
  const prose = article.cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, mjx-container, .highlight')
       .forEach(n => n.remove());
  const untypeset = [...document.querySelectorAll('.math')]
      .filter(n => !n.querySelector('mjx-container'))
      .map(n => n.textContent.trim().slice(0, 80));
  const mathErrors = [...document.querySelectorAll('mjx-merror')]
      .map(n => (n.getAttribute('data-mjx-error') || n.textContent).slice(0, 80));
  const images = [...document.images];
  images.forEach(img => { img.loading = 'eager'; });
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  const brokenImages = images.filter(img => !(img.complete && img.naturalWidth > 0))
      .map(img => img.getAttribute('src'));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  return {
    text: prose.textContent,
    mathCount: document.querySelectorAll('.math').length,
    untypeset, mathErrors, brokenImages, links,
    pastedText: document.querySelectorAll('.pasted-text').length,
    pastedMath: document.querySelectorAll('.pasted-math').length,
  };
}
"""

MATHJAX_READY_JS = """
() => !document.querySelector('.math')
      || (window.MathJax && MathJax.startup && MathJax.startup.promise)
"""


@dataclass
class PageReport:
    """What one page showed: each list is empty on a healthy page."""

    name: str
    raw_text: list[str] = field(default_factory=list)
    untypeset: list[str] = field(default_factory=list)
    math_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)
    glue_missing: list[str] = field(default_factory=list)
    screenshot: Path | None = None


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium executable: ``explicit`` (``$CHROMIUM``) or the first one on PATH."""
    if explicit:
        return explicit
    return next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)


def book_pages(root: Path) -> list[str]:
    """Every HTML page of the built book, relative to its root, redirect stubs included."""
    pages = [p.relative_to(root).as_posix() for p in root.rglob("*.html")]
    return sorted(p for p in pages if p.split("/")[0] not in SKIPPED_FOLDERS)


def redirect_target(root: Path, page: str) -> str | None:
    """The page a ``<meta http-equiv="refresh">`` stub sends the reader to, or None."""
    match = re.search(r'http-equiv="refresh"[^>]*url=([^"]+)"', (root / page).read_text(), re.IGNORECASE)
    return match.group(1) if match else None


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(value for key, value in attrs if key in ("id", "name") and value)


@functools.cache
def anchors(path: Path) -> frozenset[str]:
    """The ids (and ``name`` anchors) a page defines."""
    parser = _Anchors()
    parser.feed(path.read_text(errors="replace"))
    return frozenset(parser.ids)


def broken_internal_links(root: Path, origin: str, hrefs: list[str]) -> list[str]:
    """Links into the book that name a missing file or a missing anchor in an existing file."""
    broken = []
    for href in sorted(set(hrefs)):
        if not href.startswith(origin + "/"):
            continue
        parts = urlsplit(href)
        target = root / unquote(parts.path).lstrip("/")
        if parts.path.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{href} (no file {target.relative_to(root).as_posix()})")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in anchors(target):
            broken.append(f"{href} (no anchor #{parts.fragment})")
    return broken


def expected_glue(root: Path, page: str) -> tuple[int, int]:
    """How many ``{glue:text}`` and ``{glue:math}`` the page's source asks for (markdown only)."""
    stem = page[: -len(".html")]
    notebook, markdown = root / "_sources" / f"{stem}.ipynb", root / "_sources" / f"{stem}.md"
    if notebook.is_file():
        cells = json.loads(notebook.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    elif markdown.is_file():
        text = markdown.read_text()
    else:
        return 0, 0
    return len(GLUE_TEXT_ROLE.findall(text)), len(GLUE_MATH_ROLE.findall(text))


def snippets(pattern: re.Pattern, text: str, width: int = 40) -> list[str]:
    """Each match of ``pattern`` with some text around it, whitespace squeezed."""
    squeeze = functools.partial(re.sub, r"\s+", " ")
    return [squeeze(text[max(0, m.start() - width) : m.end() + width]).strip() for m in pattern.finditer(text)]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


class BookServer:
    """Serves ``root`` on 127.0.0.1 (a free port) from a background thread."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class BookVisitor:
    """Visits pages in one offline browser context; each page is loaded once and its report kept."""

    def __init__(self, browser, root: Path, origin: str, screenshots: Path) -> None:
        self.root, self.origin, self.screenshots = root, origin, screenshots
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        self.context.route("**/*", self._only_local)
        self.blocked: list[str] = []
        self.reports: dict[str, PageReport] = {}

    def _only_local(self, route) -> None:
        if route.request.url.startswith(self.origin + "/"):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort("blockedbyclient")

    def visit(self, page: str) -> PageReport:
        if page not in self.reports:
            self.reports[page] = self._load(page)
        return self.reports[page]

    def _load(self, name: str) -> PageReport:
        report = PageReport(name)
        self.blocked.clear()
        tab = self.context.new_page()
        tab.on("pageerror", lambda exc: report.script_errors.append(str(exc)))
        tab.on("requestfailed", lambda r: self._local_failure(report, r.url, r.failure))
        tab.on("response", lambda r: r.status >= 400 and self._local_failure(report, r.url, r.status))
        try:
            tab.goto(f"{self.origin}/{name}", wait_until="load")
            try:
                tab.wait_for_function(MATHJAX_READY_JS, timeout=60_000)  # generous: make test runs this beside pytest
                tab.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
            except BrowserError as exc:  # a timeout: the report says so and the tests fail on it
                report.untypeset.append(f"MathJax never started: {str(exc).splitlines()[0]}")
            tab.evaluate("() => document.fonts.ready.then(() => true)")
            seen = tab.evaluate(INSPECT_JS)
            self._judge(report, seen)
            self.screenshots.mkdir(parents=True, exist_ok=True)
            report.screenshot = self.screenshots / (name[: -len(".html")].replace("/", "__") + ".png")
            tab.screenshot(path=str(report.screenshot), full_page=True)
        finally:
            tab.close()
        report.blocked = sorted(set(self.blocked))
        report.failed = sorted(set(report.failed))
        return report

    def _local_failure(self, report: PageReport, url: str, why) -> None:
        if url.startswith(self.origin + "/"):
            report.failed.append(f"{url[len(self.origin):]} ({why})")

    def _judge(self, report: PageReport, seen: dict) -> None:
        report.raw_text = snippets(RAW_MATH, seen["text"]) + snippets(UNRENDERED, seen["text"])
        report.untypeset += seen["untypeset"]
        report.math_errors = seen["mathErrors"]
        report.broken_images = seen["brokenImages"]
        report.broken_links = broken_internal_links(self.root, self.origin, seen["links"])
        want_text, want_math = expected_glue(self.root, report.name)
        if seen["pastedText"] != want_text:
            report.glue_missing.append(f"{want_text} {{glue:text}} in the source, {seen['pastedText']} shown")
        if seen["pastedMath"] != want_math:
            report.glue_missing.append(f"{want_math} {{glue:math}} in the source, {seen['pastedMath']} shown")
