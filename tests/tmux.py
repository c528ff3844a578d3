"""
A real terminal for end-to-end tests: a tmux session on a server of its own (a socket of the
test's own), keys sent with C{send-keys}, the screen read with C{capture-pane}. Skipped, saying
why, when tmux cannot run; under C{CI=true}, failed instead (C{scripts/setup-terminal} installs
it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.processes import TIMEOUT, environment

__all__ = ["Tmux"]


class Tmux:
    """One tmux session running C{command}, C{width} by C{height}, stopped after the test."""

    def __init__(
        self,
        test: SynchronousTestCase,
        command: Sequence[str],
        width: int = 80,
        height: int = 24,
        env: dict[str, str] | None = None,
    ) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:
            reason = "tmux is not installed (scripts/setup-terminal installs it)"
            if os.environ.get("CI") == "true":
                test.fail(reason)
            raise SkipTest(reason)
        self.tmux = tmux
        self.socket = f"chatsvc-test-{uuid.uuid4().hex[:12]}"
        self.test = test
        environ = {**environment(), "TERM": "xterm-256color", **(env or {})}
        settings = [f"{name}={value}" for name, value in environ.items() if name in _PASSED]
        shell = " ".join(_quote(part) for part in command)
        self.run(
            "new-session", "-d", "-s", "test", "-x", str(width), "-y", str(height),
            *(item for setting in settings for item in ("-e", setting)),
            # The pane stays after the command ends, so that its last screen can be read.
            f"{shell}; echo EXITED $?; sleep 600",
        )
        test.addCleanup(self.stop)

    def run(self, *arguments: str) -> str:
        finished = subprocess.run(
            [self.tmux, "-L", self.socket, "-f", "/dev/null", *arguments],
            capture_output=True, text=True, timeout=TIMEOUT,
        )
        if finished.returncode != 0:
            self.test.fail(f"tmux {' '.join(arguments)}: {finished.stderr.strip()}")
        return finished.stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        """Keys, as tmux names them (C{Enter}, C{C-a}, C{Up}), or C{literal} text."""
        self.run("send-keys", "-t", "test", *(["-l"] if literal else []), *keys)

    def type(self, text: str) -> None:
        self.keys(text, literal=True)

    def screen(self, escapes: bool = False) -> str:
        """The screen as text (with its colours' escape sequences, if C{escapes})."""
        return self.run("capture-pane", "-t", "test", "-p", *(["-e"] if escapes else []))

    def waitFor(self, pattern: str, escapes: bool = False, timeout: float = TIMEOUT) -> str:
        """Poll the screen until C{pattern} is found on it; the screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(escapes)
            if re.search(pattern, screen, re.MULTILINE):
                return screen
            if time.monotonic() > deadline:
                self.test.fail(f"no {pattern!r} on the screen after {timeout:g} s:\n{screen}")
            time.sleep(0.05)

    def stop(self) -> None:
        subprocess.run(
            [self.tmux, "-L", self.socket, "kill-server"], capture_output=True, timeout=TIMEOUT
        )


_PASSED = ("PATH", "PYTHONPATH", "HOME", "LANG", "LC_ALL", "TERM", "NO_COLOR", "CHATSVC_PASSWORD")


def _quote(part: str) -> str:
    return "'" + part.replace("'", "'\\''") + "'"
