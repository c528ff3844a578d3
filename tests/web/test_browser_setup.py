"""
The browser tests' own machinery: L{tests.web.browser} (chromium launched through Playwright,
pages read back, screenshots, the skip-or-fail rule) and C{scripts/setup-browser}.

The page is served by a real C{twistd web} process on a free loopback port; the setup script is
run against fake C{apt-get}, C{id} and C{sudo} commands, so that what it would install, and how,
is checked without touching this machine's packages.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path
from unittest import SkipTest

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import ROOT, TIMEOUT, Running, twistdCommand
from tests.web import browser
from tests.web.browser import chromiumPath, launchBrowser, newPage, screenshot, unavailable

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>chatsvc browser check</title>
<style>body { background: #fff; font: 24px sans-serif; } #greeting { color: #06c; }</style>
</head><body><p id="greeting">Hello from chatsvc</p>
<p id="script"></p>
<script>document.getElementById("script").textContent = "scripts run: " + (6 * 7);</script>
</body></html>
"""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

SETUP = ROOT / "scripts" / "setup-browser"


def setEnvironment(testCase: SynchronousTestCase, name: str, value: str | None) -> None:
    """Set (or with L{None}, unset) the environment variable C{name} for C{testCase}."""
    old = os.environ.get(name)

    def restore() -> None:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old

    testCase.addCleanup(restore)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def pngSize(path: Path) -> tuple[int, int]:
    """The width and height of the PNG file at C{path}; fails on anything but a PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG: {data[:8]!r}"
    assert data[12:16] == b"IHDR", f"{path} has no IHDR chunk first"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


class StaticSite(Running):
    """C{twistd web --path DIRECTORY} on a free port on 127.0.0.1, found from its log."""

    def __init__(self, directory: Path) -> None:
        super().__init__(
            [
                *twistdCommand(),
                "--nodaemon",
                "--pidfile=",
                "web",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--path",
                str(directory),
            ],
            directory,
            stdin=subprocess.DEVNULL,
        )
        self.port = int(self.stdout.expect(r"Site starting on (\d+)").group(1))

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


class BrowserTests(SynchronousTestCase):
    """Chromium renders a page served over loopback, and screenshots it."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        (self.directory / "index.html").write_text(PAGE, encoding="utf-8")
        self.site = StaticSite(self.directory)
        self.addCleanup(self.site.stop)

    def test_rendersPage(self) -> None:
        """The page's text, and what its script wrote, are read back from chromium."""
        page = newPage(self)
        page.goto(self.site.url("index.html"))
        self.assertEqual(page.title(), "chatsvc browser check")
        self.assertEqual(page.inner_text("#greeting"), "Hello from chatsvc")
        self.assertEqual(page.inner_text("#script"), "scripts run: 42")
        version = page.context.browser.version if page.context.browser else ""
        self.assertRegex(version, r"^\d+\.")

    def test_screenshot(self) -> None:
        """
        L{screenshot} writes a PNG of the page's viewport, in the test's temporary directory when
        C{CHATSVC_SCREENSHOTS} is not set.
        """
        setEnvironment(self, browser.SCREENSHOTS, None)
        page = newPage(self)
        page.set_viewport_size({"width": 640, "height": 360})
        page.goto(self.site.url("index.html"))
        path = screenshot(page, "greeting")
        self.assertEqual(path.name, "greeting.png")
        self.assertTrue(path.is_absolute())
        self.assertEqual(pngSize(path), (640, 360))

    def test_screenshotsKept(self) -> None:
        """
        With C{CHATSVC_SCREENSHOTS} set, screenshots go there, in a directory named after the
        test, made as needed.
        """
        kept = Path(self.mktemp()).resolve() / "shots"
        setEnvironment(self, browser.SCREENSHOTS, str(kept))
        page = newPage(self)
        page.goto(self.site.url("index.html"))
        path = screenshot(page, "kept.png")
        self.assertEqual(path, kept / self.id() / "kept.png")
        self.assertGreater(pngSize(path)[0], 0)

    def test_pageTimeouts(self) -> None:
        """
        Waits on a L{newPage} page are bounded: waiting for what never comes fails (here after a
        short timeout given for the test; L{browser.PAGE_TIMEOUT} seconds by default).
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        page = newPage(self)
        page.goto(self.site.url("index.html"))
        page.set_default_timeout(200)
        with self.assertRaises(PlaywrightTimeoutError):
            page.wait_for_selector("#never")

    def test_inRunningReactor(self) -> None:
        """
        The sync API also works in a trial C{TestCase}, inside the running reactor (a callback of
        the Deferred its test method returns), the reactor blocked while each call waits.
        """
        from twisted.internet import reactor, task
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor
        from twisted.trial.reporter import TestResult
        from twisted.trial.unittest import TestCase

        url = self.site.url("index.html")
        seen: list[object] = []

        class InReactor(TestCase):
            def check(self) -> object:
                return task.deferLater(reactor, 0, self.inReactor)

            def inReactor(self) -> object:
                seen.append(reactor.running)
                page = newPage(self)
                page.goto(url)
                seen.append(page.inner_text("#greeting"))
                # The reactor still runs afterwards.
                return task.deferLater(reactor, 0, lambda: None)

        result = TestResult()
        InReactor("check").run(result)
        if isinstance(reactor, AsyncioSelectorReactor):
            # trial --reactor=asyncio: the reactor's asyncio loop is running; no sync API there.
            [(_, failure)] = result.failures
            self.assertIn("asyncio event loop is running", str(failure))
            self.assertEqual(seen, [True])
            return
        self.assertEqual((result.errors, result.failures, result.skips), ([], [], []))
        self.assertTrue(result.wasSuccessful())
        self.assertEqual(seen, [True, "Hello from chatsvc"])


class RuleTests(SynchronousTestCase):
    """Skip when chromium cannot start, fail under C{CI=true}; no browser is needed for these."""

    def missing(self) -> str | None:
        return None

    def test_missingSkips(self) -> None:
        """Without chromium, and C{CI} unset, the test skips, saying how to install it."""
        setEnvironment(self, "CI", None)
        self.patch(browser, "chromiumPath", self.missing)
        with self.assertRaises(SkipTest) as caught:
            launchBrowser(self)
        self.assertIn("chromium is not installed", str(caught.exception))
        self.assertIn("scripts/setup-browser", str(caught.exception))

    def test_missingFailsUnderCI(self) -> None:
        """Without chromium under C{CI=true}, the test fails, with the reason."""
        setEnvironment(self, "CI", "true")
        self.patch(browser, "chromiumPath", self.missing)
        with self.assertRaises(self.failureException) as caught:
            launchBrowser(self)
        self.assertIn("chromium is not installed", str(caught.exception))
        self.assertIn("CI=true", str(caught.exception))

    def test_bogusChromiumSkips(self) -> None:
        """A chromium that does not start skips the test, with Playwright's reason."""
        setEnvironment(self, "CI", None)
        bogus = str(Path(self.mktemp()).resolve() / "chromium")
        self.patch(browser, "chromiumPath", lambda: bogus)
        with self.assertRaises(SkipTest) as caught:
            launchBrowser(self)
        self.assertIn(f"chromium ({bogus}) did not start", str(caught.exception))

    def test_bogusChromiumFailsUnderCI(self) -> None:
        """A chromium that does not start under C{CI=true} fails the test."""
        setEnvironment(self, "CI", "true")
        notBrowser = Path(self.mktemp()).resolve()
        notBrowser.write_text("#!/bin/sh\nexit 1\n")
        notBrowser.chmod(0o755)
        self.patch(browser, "chromiumPath", lambda: str(notBrowser))
        with self.assertRaises(self.failureException) as caught:
            launchBrowser(self)
        self.assertIn(f"chromium ({notBrowser}) did not start", str(caught.exception))

    def test_onlyTrueIsCI(self) -> None:
        """C{CI} set to anything but C{true} skips, as the setup script reads it."""
        for value in ("", "false", "1", "TRUE"):
            setEnvironment(self, "CI", value)
            with self.assertRaises(SkipTest):
                unavailable(self, "reason")

    def test_asyncioLoopFails(self) -> None:
        """Inside a running asyncio loop, launching fails at once (CI or not), saying why."""
        setEnvironment(self, "CI", None)

        async def launch() -> None:
            launchBrowser(self)

        with self.assertRaises(self.failureException) as caught:
            asyncio.run(launch())
        self.assertIn("asyncio event loop is running", str(caught.exception))

    def test_screenshotName(self) -> None:
        """Screenshot names are plain file names."""
        for name in ("", "../up", "a/b", ".hidden", "sp ace"):
            with self.assertRaises(ValueError):
                screenshot(None, name)  # type: ignore[arg-type]


def executable(path: Path, text: str) -> Path:
    """Write an executable shell script C{text} at C{path}."""
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class ChromiumPathTests(SynchronousTestCase):
    """L{chromiumPath} finds Debian's chromium, or one on the C{PATH}."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        self.nowhere = str(self.directory / "none")

    def test_debian(self) -> None:
        """Debian's path comes first, when it is an executable file."""
        default = executable(self.directory / "chromium", "#!/bin/sh\n")
        self.assertEqual(chromiumPath(str(default), path=self.nowhere), str(default))

    def test_onPath(self) -> None:
        """Otherwise C{chromium}, then C{chromium-browser}, on the C{PATH}."""
        found = executable(self.directory / "chromium-browser", "#!/bin/sh\n")
        self.assertEqual(chromiumPath(self.nowhere, path=str(self.directory)), str(found))
        first = executable(self.directory / "chromium", "#!/bin/sh\n")
        self.assertEqual(chromiumPath(self.nowhere, path=str(self.directory)), str(first))

    def test_none(self) -> None:
        """Neither, or a file that is not executable: L{None}."""
        (self.directory / "chromium").write_text("")
        self.assertIsNone(chromiumPath(str(self.directory / "chromium"), path=str(self.directory)))

    def test_thisMachine(self) -> None:
        """With the defaults, an executable file, or L{None}."""
        found = chromiumPath()
        if found is not None:
            self.assertTrue(os.access(found, os.X_OK))


FAKE_APT = """#!/bin/sh
# Records each call (with DEBIAN_FRONTEND and whether stdin is a terminal), and acts as apt would.
echo "$DEBIAN_FRONTEND $*" >> "$FAKE/calls"
case "$1" in
    update) touch "$FAKE/lists"; echo "Reading package lists..." ;;
    install)
        if [ ! -e "$FAKE/lists" ]; then
            echo "E: Unable to locate package chromium" >&2
            exit 100
        fi
        printf '#!/bin/sh\\necho "Chromium 150.0 fake"\\n' > "$SETUP_BROWSER_CHROMIUM"
        chmod +x "$SETUP_BROWSER_CHROMIUM" ;;
esac
"""

FAKE_SUDO = """#!/bin/sh
echo "sudo $*" >> "$FAKE/calls"
[ "$1" = "-n" ] || exit 1
shift
exec "$@"
"""


class SetupScriptTests(SynchronousTestCase):
    """
    C{scripts/setup-browser}, run on a C{PATH} of fakes and the few real tools it uses, with
    C{SETUP_BROWSER_CHROMIUM} standing for C{/usr/bin/chromium}.
    """

    def setUp(self) -> None:
        self.fake = Path(self.mktemp()).resolve()
        self.bin = self.fake / "bin"
        self.bin.mkdir(parents=True)
        for tool in ("env", "mktemp", "grep", "cat", "rm", "chmod", "touch", "true"):
            real = shutil.which(tool)
            assert real is not None, tool
            (self.bin / tool).symlink_to(real)
        self.chromium = self.fake / "usr-bin-chromium"
        self.uid(0)

    def uid(self, uid: int) -> None:
        executable(self.bin / "id", f"#!/bin/sh\necho {uid}\n")

    def withApt(self) -> None:
        executable(self.bin / "apt-get", FAKE_APT)

    def withSudo(self) -> None:
        executable(self.bin / "sudo", FAKE_SUDO)

    def runScript(self, ci: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": str(self.bin),
            "FAKE": str(self.fake),
            "SETUP_BROWSER_CHROMIUM": str(self.chromium),
        }
        if ci is not None:
            env["CI"] = ci
        bash = shutil.which("bash")
        assert bash is not None
        return subprocess.run(
            [bash, str(SETUP)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    def calls(self) -> list[str]:
        path = self.fake / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def test_executable(self) -> None:
        """The script is executable, as the README's command runs it."""
        self.assertTrue(os.access(SETUP, os.X_OK))

    def test_alreadyInstalled(self) -> None:
        """With chromium there, one line says so, and apt is not called."""
        executable(self.chromium, "#!/bin/sh\n")
        self.withApt()
        finished = self.runScript(ci="true")
        self.assertEqual((finished.returncode, finished.stderr), (0, ""))
        self.assertEqual(
            finished.stdout, f"setup-browser: chromium already installed at {self.chromium}\n"
        )
        self.assertEqual(self.calls(), [])

    def test_installs(self) -> None:
        """
        As root, it installs chromium without recommends, non-interactively, updating the package
        lists only when the install fails for want of them; one line says what it did.
        """
        self.withApt()
        finished = self.runScript()
        self.assertEqual((finished.returncode, finished.stderr), (0, ""))
        self.assertEqual(
            finished.stdout,
            "setup-browser: installed chromium (after apt-get update): Chromium 150.0 fake\n",
        )
        install = "noninteractive install -y -q --no-install-recommends chromium"
        self.assertEqual(self.calls(), [install, "noninteractive update -q", install])

    def test_installsWithLists(self) -> None:
        """With package lists there, no update."""
        self.withApt()
        (self.fake / "lists").touch()
        finished = self.runScript()
        self.assertEqual(finished.stdout, "setup-browser: installed chromium: Chromium 150.0 fake\n")
        self.assertEqual(
            self.calls(), ["noninteractive install -y -q --no-install-recommends chromium"]
        )

    def test_sudo(self) -> None:
        """Not root, it goes through C{sudo -n}, which never prompts."""
        self.uid(1000)
        self.withApt()
        self.withSudo()
        (self.fake / "lists").touch()
        finished = self.runScript()
        self.assertEqual((finished.returncode, finished.stderr), (0, ""))
        self.assertEqual(
            self.calls(),
            [
                "sudo -n true",
                "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q"
                " --no-install-recommends chromium",
                "noninteractive install -y -q --no-install-recommends chromium",
            ],
        )

    def test_noApt(self) -> None:
        """Without apt-get, it says why and exits 0, or 1 under C{CI=true}."""
        finished = self.runScript()
        self.assertEqual(finished.returncode, 0)
        self.assertEqual(
            finished.stdout,
            "setup-browser: cannot install chromium: apt-get not found (not a Debian-like "
            "system); the browser tests will be skipped\n",
        )
        finished = self.runScript(ci="true")
        self.assertEqual((finished.returncode, finished.stdout), (1, ""))
        self.assertIn("apt-get not found", finished.stderr)
        self.assertIn("CI=true", finished.stderr)

    def test_noRoot(self) -> None:
        """Neither root nor sudo: it says why and exits 0, or 1 under C{CI=true}; apt not run."""
        self.uid(1000)
        self.withApt()
        finished = self.runScript()
        self.assertEqual(finished.returncode, 0)
        self.assertIn("not root, and sudo is missing or needs a password", finished.stdout)
        self.assertEqual(self.runScript(ci="true").returncode, 1)
        self.assertEqual(self.calls(), [])

    def test_installFails(self) -> None:
        """An install that fails for another reason shows apt's error; no update is tried."""
        executable(
            self.bin / "apt-get",
            '#!/bin/sh\necho "$*" >> "$FAKE/calls"\necho "E: dpkg was interrupted" >&2\nexit 100\n',
        )
        finished = self.runScript(ci="true")
        self.assertEqual(finished.returncode, 1)
        self.assertIn("E: dpkg was interrupted", finished.stderr)
        self.assertIn("apt-get install chromium failed", finished.stderr)
        self.assertEqual(len(self.calls()), 1)
