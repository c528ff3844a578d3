"""
Debian's chromium, driven by Playwright's sync API, for browser end-to-end tests.

C{scripts/setup-browser} installs chromium (from apt; never Playwright's own downloads, which
cannot work here). A test gets a browser with L{launchBrowser} or, usually, a page with bounded
timeouts with L{newPage}; both close what they opened in the test's cleanups. L{screenshot}
saves a PNG. When chromium or Playwright cannot start, the test skips saying why, or fails
under C{CI=true} (L{unavailable}).

Sync Playwright under trial and pytest (checked with Twisted 26.10, Playwright 1.65, chromium
150, the default epoll reactor, under both runners):

  - C{sync_playwright} runs its own asyncio event loop, switching to it on a greenlet whenever
    a call waits; the Playwright driver (node) and chromium are child processes. It touches
    neither Twisted's SIGCHLD handler nor its wakeup fd, and a Twisted process spawned after it
    in the same test is still reaped.
  - It works in a L{SynchronousTestCase} (no reactor at all), and in a trial C{TestCase}, both
    in a test method run before the reactor starts (as trial runs every test method) and
    inside the running reactor (a callback of a Deferred the test returned): there each Playwright
    call blocks the reactor until it returns.
  - So the server under test must be another process (L{tests.processes.Server}). A server
    listening in the test's own process cannot answer the page while a Playwright call blocks
    the reactor: C{page.goto} to a twisted.web C{Site} listening in the test hangs until its
    timeout. Hence also the bounded timeouts of L{newPage}.
  - Under the asyncio reactor (C{trial --reactor=asyncio}), inside the running reactor,
    Playwright refuses ("using Playwright Sync API inside the asyncio loop");
    L{launchBrowser} fails such a test at once, saying so.

Browser tests should therefore be L{SynchronousTestCase}s, like the other end-to-end tests.
Each launch costs about 0.6 s here.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from unittest import SkipTest

from twisted.trial.unittest import SynchronousTestCase

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

DEBIAN_CHROMIUM = "/usr/bin/chromium"
"""Where Debian's C{chromium} package puts the browser."""

LAUNCH_TIMEOUT = 15.0
"""Seconds chromium may take to start."""

PAGE_TIMEOUT = 10.0
"""Seconds any one Playwright action or wait on a L{newPage} page may take."""

SCREENSHOTS = "CHATSVC_SCREENSHOTS"
"""The environment variable naming a directory to keep screenshots in."""

_directories: weakref.WeakKeyDictionary[Browser, tuple[Path, str]] = weakref.WeakKeyDictionary()
"""For each browser L{launchBrowser} launched: its test's temporary directory, and its id."""


def chromiumPath(default: str = DEBIAN_CHROMIUM, path: str | None = None) -> str | None:
    """
    The chromium binary to drive: C{default} if it is executable, else C{chromium} or
    C{chromium-browser} on C{path} (the C{PATH} by default), else L{None}.
    """
    if os.access(default, os.X_OK) and os.path.isfile(default):
        return default
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name, path=path)
        if found is not None:
            return found
    return None


def unavailable(testCase: SynchronousTestCase, reason: str) -> NoReturn:
    """
    A real component the test needs (here the browser) cannot be had: skip the test with
    C{reason}, or fail it under C{CI=true}, where everything must be there.
    """
    if os.environ.get("CI") == "true":
        testCase.fail(f"{reason} (CI=true: required)")
    raise SkipTest(reason)


def launchBrowser(testCase: SynchronousTestCase) -> Browser:
    """
    Start Playwright and a headless chromium for C{testCase}, both stopped in its cleanups.

    Skips or fails C{testCase} (L{unavailable}) when Playwright or chromium cannot start.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        testCase.fail(
            "an asyncio event loop is running (the asyncio reactor?): Playwright's sync API "
            "cannot run in it; use a SynchronousTestCase"
        )
    executable = chromiumPath()
    if executable is None:
        unavailable(
            testCase,
            f"chromium is not installed (no {DEBIAN_CHROMIUM}, no chromium on PATH): "
            "run scripts/setup-browser",
        )
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as error:
        unavailable(testCase, f"Playwright is not installed ({error}): pip install -e '.[test]'")
    try:
        playwright = sync_playwright().start()
    except Exception as error:
        unavailable(testCase, f"Playwright did not start: {_firstLine(error)}")
    testCase.addCleanup(playwright.stop)
    try:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            # As root (this machine, CI containers) chromium runs only without its sandbox.
            args=["--no-sandbox"],
            timeout=LAUNCH_TIMEOUT * 1000,
        )
    except Error as error:
        unavailable(testCase, f"chromium ({executable}) did not start: {_firstLine(error)}")
    testCase.addCleanup(browser.close)
    _directories[browser] = (Path(testCase.mktemp()).resolve(), testCase.id())
    return browser


def newPage(testCase: SynchronousTestCase, browser: Browser | None = None) -> Page:
    """
    A page in a new context of C{browser} (one L{launchBrowser} launches by default), on which
    every action and wait times out after L{PAGE_TIMEOUT} seconds; closed in the cleanups.
    """
    if browser is None:
        browser = launchBrowser(testCase)
    context = browser.new_context()
    testCase.addCleanup(context.close)
    context.set_default_timeout(PAGE_TIMEOUT * 1000)
    context.set_default_navigation_timeout(PAGE_TIMEOUT * 1000)
    return context.new_page()


def screenshot(page: Page, name: str) -> Path:
    """
    Save a PNG of C{page} as C{name}.png; its path.

    It goes under C{$CHATSVC_SCREENSHOTS}, in a directory named after the test, when that
    variable is set (to keep them, e.g. from CI), else in the test's own temporary directory.
    The page's browser must come from L{launchBrowser} (or L{newPage}).

    @raise ValueError: if C{name} is not made of letters, digits, C{.}, C{_} and C{-} only.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ValueError(f"not a plain file name: {name!r}")
    browser = page.context.browser
    if browser is None or browser not in _directories:
        raise ValueError("the page's browser was not launched by launchBrowser")
    temporary, testId = _directories[browser]
    kept = os.environ.get(SCREENSHOTS)
    directory = Path(kept) / testId if kept else temporary
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / (name if name.endswith(".png") else f"{name}.png")
    page.screenshot(path=target, type="png", timeout=PAGE_TIMEOUT * 1000)
    return target


def _firstLine(error: BaseException) -> str:
    """The first line of C{error}'s message (Playwright's go on with logs), with its type."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
