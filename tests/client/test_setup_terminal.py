"""Tests for C{scripts/setup-terminal}, run on a C{PATH} of fakes, as setup-browser's are."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import ROOT, TIMEOUT
from tests.web.test_browser_setup import executable

SETUP = ROOT / "scripts" / "setup-terminal"

FAKE_APT = """#!/bin/sh
echo "$*" >> "$FAKE/calls"
if [ "$1" = install ]; then
    printf '#!/bin/sh\\necho "tmux 9.9 fake"\\n' > "$FAKE/bin/tmux"
    chmod +x "$FAKE/bin/tmux"
fi
"""


class SetupTerminalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fake = Path(self.mktemp()).resolve()
        self.bin = self.fake / "bin"
        self.bin.mkdir(parents=True)
        for tool in ("env", "mktemp", "grep", "cat", "rm", "chmod", "printf"):
            real = shutil.which(tool)
            if real is not None:
                (self.bin / tool).symlink_to(real)
        executable(self.bin / "id", "#!/bin/sh\necho 0\n")

    def run_(self, ci: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {"PATH": str(self.bin), "FAKE": str(self.fake), **({"CI": ci} if ci else {})}
        return subprocess.run(
            [shutil.which("bash") or "bash", str(SETUP)], env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=TIMEOUT,
        )

    def test_executable(self) -> None:
        self.assertTrue(os.access(SETUP, os.X_OK))

    def test_alreadyInstalled(self) -> None:
        executable(self.bin / "tmux", "#!/bin/sh\n")
        finished = self.run_()
        self.assertEqual(finished.stdout, f"setup-terminal: tmux already installed at {self.bin / 'tmux'}\n")

    def test_installs(self) -> None:
        executable(self.bin / "apt-get", FAKE_APT)
        finished = self.run_()
        self.assertEqual((finished.returncode, finished.stdout), (0, "setup-terminal: installed tmux: tmux 9.9 fake\n"))
        self.assertEqual((self.fake / "calls").read_text(), "install -y -q --no-install-recommends tmux\n")

    def test_cannotUnderCI(self) -> None:
        """No apt: a skip elsewhere, an error under CI=true."""
        self.assertEqual(self.run_().returncode, 0)
        finished = self.run_("true")
        self.assertEqual(finished.returncode, 1)
        self.assertIn("cannot install tmux: apt-get not found", finished.stderr)
