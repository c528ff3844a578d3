"""Tests for C{scripts/setup-irc}, run on a C{PATH} of fakes, as setup-terminal's are."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import ROOT, TIMEOUT
from tests.web.test_browser_setup import executable

SETUP = ROOT / "scripts" / "setup-irc"

PLUGINS = "lib/x86_64-linux-gnu/weechat/plugins"
"""Where Debian's weechat-plugins puts the fifo plugin, under the prefix of C{bin/weechat-headless}."""

FAKE_APT = f"""#!/bin/sh
echo "$*" >> "$FAKE/calls"
if [ "$1" = install ]; then
    printf '#!/bin/sh\\necho 3.8\\n' > "$FAKE/bin/weechat-headless"
    chmod +x "$FAKE/bin/weechat-headless"
    if [ -z "$NO_PLUGIN" ]; then
        mkdir -p "$FAKE/{PLUGINS}"
        printf '' > "$FAKE/{PLUGINS}/fifo.so"
    fi
fi
"""

FAKE_APT_WITHOUT_LISTS = """#!/bin/sh
echo "$*" >> "$FAKE/calls"
if [ "$1" = update ]; then
    : > "$FAKE/updated"
elif [ ! -e "$FAKE/updated" ]; then
    echo "E: Unable to locate package weechat-headless"
    exit 100
else
    printf '#!/bin/sh\\necho 3.8\\n' > "$FAKE/bin/weechat-headless"
    chmod +x "$FAKE/bin/weechat-headless"
    mkdir -p "$FAKE/lib/weechat/plugins"
    printf '' > "$FAKE/lib/weechat/plugins/fifo.so"
fi
"""

INSTALL = "install -y -q --no-install-recommends weechat-headless weechat-plugins\n"


class SetupIRCTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fake = Path(self.mktemp()).resolve()
        self.bin = self.fake / "bin"
        self.bin.mkdir(parents=True)
        for tool in ("env", "mktemp", "grep", "cat", "rm", "chmod", "printf", "mkdir"):
            real = shutil.which(tool)
            if real is not None:
                (self.bin / tool).symlink_to(real)
        executable(self.bin / "id", "#!/bin/sh\necho 0\n")

    def run_(self, ci: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": str(self.bin), "FAKE": str(self.fake), **({"CI": ci} if ci else {}), **extra}
        return subprocess.run(
            [shutil.which("bash") or "bash", str(SETUP)], env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=TIMEOUT,
        )

    def plugin(self) -> Path:
        plugin = self.fake / PLUGINS / "fifo.so"
        plugin.parent.mkdir(parents=True)
        plugin.write_bytes(b"")
        return plugin

    def test_executable(self) -> None:
        self.assertTrue(os.access(SETUP, os.X_OK))

    def test_alreadyInstalled(self) -> None:
        """weechat-headless and its fifo plugin there: said so, and apt is not called."""
        executable(self.bin / "weechat-headless", "#!/bin/sh\n")
        executable(self.bin / "apt-get", FAKE_APT)
        plugin = self.plugin()
        finished = self.run_()
        self.assertEqual(
            (finished.returncode, finished.stdout),
            (0, f"setup-irc: weechat-headless already installed at {self.bin / 'weechat-headless'}, "
                f"with its fifo plugin at {plugin}\n"),
        )
        self.assertFalse((self.fake / "calls").exists())

    def test_installs(self) -> None:
        executable(self.bin / "apt-get", FAKE_APT)
        finished = self.run_()
        self.assertEqual((finished.returncode, finished.stdout), (0, "setup-irc: installed weechat-headless: WeeChat 3.8\n"))
        self.assertEqual((self.fake / "calls").read_text(), INSTALL)

    def test_installsThePluginsToo(self) -> None:
        """weechat-headless alone (installed without its recommends) is not enough: the fifo plugin is installed."""
        executable(self.bin / "weechat-headless", "#!/bin/sh\necho 3.8\n")
        executable(self.bin / "apt-get", FAKE_APT)
        finished = self.run_()
        self.assertEqual((finished.returncode, finished.stdout), (0, "setup-irc: installed weechat-headless: WeeChat 3.8\n"))
        self.assertEqual((self.fake / "calls").read_text(), INSTALL)
        self.assertTrue((self.fake / PLUGINS / "fifo.so").exists())

    def test_afterUpdate(self) -> None:
        """No package lists: apt-get update, then both packages again."""
        executable(self.bin / "apt-get", FAKE_APT_WITHOUT_LISTS)
        finished = self.run_()
        self.assertEqual(
            (finished.returncode, finished.stdout),
            (0, "setup-irc: installed weechat-headless (after apt-get update): WeeChat 3.8\n"),
        )
        self.assertEqual((self.fake / "calls").read_text(), INSTALL + "update -q\n" + INSTALL)

    def test_noPluginAfterInstall(self) -> None:
        """apt succeeds but no fifo plugin appears: a skip, an error under CI=true."""
        executable(self.bin / "apt-get", FAKE_APT)
        finished = self.run_(NO_PLUGIN="1")
        self.assertEqual(finished.returncode, 0)
        self.assertIn("no fifo plugin was found", finished.stdout)
        self.assertIn("the WeeChat tests will be skipped", finished.stdout)
        self.assertEqual(self.run_("true", NO_PLUGIN="1").returncode, 1)

    def test_cannotUnderCI(self) -> None:
        """No apt: a skip elsewhere, an error under CI=true."""
        self.assertEqual(self.run_().returncode, 0)
        finished = self.run_("true")
        self.assertEqual(finished.returncode, 1)
        self.assertIn("cannot install weechat-headless weechat-plugins: apt-get not found", finished.stderr)
