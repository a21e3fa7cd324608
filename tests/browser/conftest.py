"""The browser tier: runs only against a built book named by ``METAREC_BOOK_HTML`` (``make test`` sets it).

Without it the tests that need the book or a browser are skipped, so ``pytest tests`` needs neither;
the checks' own logic (tests/browser/test_checks.py) is tested either way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.browser.pages import (
    BookServer,
    BookVisitor,
    book_pages,
    find_chromium,
    redirect_target,
)

ROOT = Path(__file__).resolve().parents[2]
BOOK_ENV = "METAREC_BOOK_HTML"
NO_BOOK = f"browser tier: set {BOOK_ENV} to a built book's html folder (make test does)"


def book_root() -> Path | None:
    value = os.environ.get(BOOK_ENV)
    return Path(value).resolve() if value else None


def pytest_generate_tests(metafunc):
    """One test per page of the book (pages that only redirect elsewhere are tested apart)."""
    if "page" not in metafunc.fixturenames:
        return
    root = book_root()
    if root is None:
        metafunc.parametrize("page", [pytest.param(None, marks=pytest.mark.skip(reason=NO_BOOK))])
        return
    pages = [p for p in book_pages(root) if redirect_target(root, p) is None] if root.is_dir() else []
    metafunc.parametrize("page", pages or [pytest.param(None, id="no-pages")])


def pytest_collection_modifyitems(items):
    for item in items:
        if {"book", "browser"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def book() -> Path:
    root = book_root()
    if root is None:
        pytest.skip(NO_BOOK)
    assert root.is_dir() and (root / "index.html").is_file(), f"{BOOK_ENV}={root} holds no built book; run `make test`"
    return root


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium in which no host but the loopback address resolves."""
    if book_root() is None:
        pytest.skip(NO_BOOK)
    chromium = find_chromium(os.environ.get("CHROMIUM"))
    if chromium is None:
        pytest.fail("no Chromium found: install it (Debian: apt-get install chromium) or set CHROMIUM=/path/to/it")
    with sync_playwright() as driver:
        # No sandbox: CI containers run as root. The resolver rule is a second fence behind the
        # request filter of BookVisitor.
        chrome = driver.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
        )
        try:
            yield chrome
        finally:
            chrome.close()


@pytest.fixture(scope="session")
def visitor(book, browser):
    screenshots = Path(os.environ.get("METAREC_SCREENSHOTS", ROOT / "_build" / "screenshots"))
    with BookServer(book) as server:
        yield BookVisitor(browser, book, server.origin, screenshots)
