"""
Real processes for end-to-end tests: a C{twistd -n chatroom} server on a free loopback port,
C{python -m chatsvc.client} processes with piped stdin, and the scripts in benchmarks/ run whole.

Every wait is for a specific line, bounded by a timeout; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20.0
"""Seconds to wait for any one expected line or exit."""


def environment() -> dict[str, str]:
    """The environment for child processes: this checkout importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def twistdCommand() -> list[str]:
    """How to run twistd with this interpreter."""
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    found = shutil.which("twistd")
    if found is None:
        raise RuntimeError("twistd is not installed")
    return [found]


class LineReader:
    """Reads a pipe's lines on a thread, so a test can wait for one with a timeout."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\r\n"))
        self._queue.put(None)

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """
        Wait for a line matching the regular expression C{pattern} (searched, not anchored).

        @raise AssertionError: if the pipe closes or C{timeout} passes first.
        """
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} within {timeout}s; got {self.lines!r}"
                ) from None
            if line is None:
                self._queue.put(None)
                raise AssertionError(f"closed before a line matching {pattern!r}: {self.lines!r}")
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def rest(self, timeout: float = TIMEOUT) -> list[str]:
        """Every line until the pipe closes."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"pipe still open after {timeout}s: {self.lines!r}") from None
            if line is None:
                self._queue.put(None)
                return self.lines
            self.lines.append(line)


class Running:
    """A child process with its stdout (and stderr) read line by line."""

    def __init__(self, command: list[str], cwd: str | Path, stdin: int | None = subprocess.PIPE) -> None:
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=environment(),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stdout = LineReader(self.process.stdout)
        self.stderr = LineReader(self.process.stderr)

    def send(self, text: str) -> None:
        """Write C{text} to the process's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(text)
        self.process.stdin.flush()

    def closeStdin(self) -> None:
        """End the process's input."""
        assert self.process.stdin is not None
        self.process.stdin.close()

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit; its exit code."""
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Make sure the process is gone (for cleanups)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def _choosesWeb(options: tuple[str, ...]) -> bool:
    # Whether a test's own options say where the web door listens (or that it does not).
    return any(option in ("--no-web", "--web-listen", "--web-port") for option in options)


def _choosesIrc(options: tuple[str, ...]) -> bool:
    # Whether a test's own options say where the IRC door listens (or that it does not).
    return any(option in ("--no-irc", "--irc-listen", "--irc-port") for option in options)


class Server(Running):
    """C{twistd -n chatroom} on a free port on 127.0.0.1, found from its own log."""

    def __init__(
        self,
        cwd: str | Path,
        *options: str,
        twistdOptions: tuple[str, ...] = (),
        port: int = 0,
        ircPort: int = 0,
    ) -> None:
        """
        @param port: the line door's port: a free one by default; a given one to start again
            where a stopped server listened.
        @param ircPort: the same, for the IRC door (unless C{options} say where it listens).
        """
        super().__init__(
            [
                *twistdCommand(),
                "--nodaemon",
                "--pidfile=",
                *twistdOptions,
                "chatroom",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
                *(() if _choosesWeb(options) else ("--web-listen", "tcp:0:interface=127.0.0.1")),
                *(() if _choosesIrc(options) else ("--irc-listen", f"tcp:{ircPort}:interface=127.0.0.1")),
                *options,
            ],
            cwd,
            stdin=subprocess.DEVNULL,
        )
        self.port = 0
        self.webPort = 0
        self.ircPort = 0

    def waitListening(self, log: LineReader | None = None) -> int:
        """Wait until the server logs that it is listening; the port it listens on."""
        match = (log or self.stdout).expect(r"server_listening.*127\.0\.0\.1:(\d+).*door='line'")
        self.port = int(match.group(1))
        return self.port

    def waitWebListening(self, log: LineReader | None = None) -> int:
        """After L{waitListening}: wait until the web door listens too; the port it listens on."""
        match = (log or self.stdout).expect(r"server_listening.*127\.0\.0\.1:(\d+).*door='web'")
        self.webPort = int(match.group(1))
        return self.webPort

    def waitIrcListening(self, log: LineReader | None = None) -> int:
        """After L{waitListening}: wait until the IRC door listens too; the port it listens on."""
        match = (log or self.stdout).expect(r"server_listening.*127\.0\.0\.1:(\d+).*door='irc'")
        self.ircPort = int(match.group(1))
        return self.ircPort

    def terminate(self, timeout: float = TIMEOUT) -> int:
        """Stop the server as an init system would (SIGTERM); its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)


class Client(Running):
    """C{python -m chatsvc.client NICK} connected to a L{Server}, stdin piped."""

    def __init__(
        self,
        cwd: str | Path,
        nick: str,
        port: int,
        stdin: int | None = subprocess.PIPE,
        passwordFile: str | None = None,
    ) -> None:
        password = () if passwordFile is None else ("--password-file", passwordFile)
        super().__init__(
            [sys.executable, "-m", "chatsvc.client", nick, "--host", "127.0.0.1", "--port", str(port), *password],
            cwd,
            stdin=stdin,
        )
        self.nick = nick


def runScript(
    test: SynchronousTestCase, script: Path, *arguments: str, timeout: float
) -> tuple[str, Any]:
    """
    Run C{script} (one of benchmarks/) as a person would, with C{arguments} and C{--json}, in a
    new directory of C{test}'s; it must exit with status 0 within C{timeout} seconds.

    @return: its output (stdout and stderr together) and its JSON report.
    """
    directory = Path(test.mktemp()).resolve()
    directory.mkdir()
    report = directory / f"{script.stem}.json"
    try:
        finished = subprocess.run(
            [sys.executable, str(script), *arguments, "--json", str(report)],
            cwd=directory,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as expired:
        test.fail(f"{script.name} still running after {timeout:g} s:\n{expired.output}")
    test.assertEqual(finished.returncode, 0, finished.stdout)
    return finished.stdout, json.loads(report.read_text(encoding="utf-8"))
