"""
A real Redis for tests: a C{redis-server} of the test's own, on a free port on 127.0.0.1, in a
directory of the test's own, stopped after the test. Skipped, saying why, when redis-server
cannot run; under C{CI=true}, failed instead (C{scripts/setup-redis} installs it: the Debian
package C{redis-server}).

Tested with Redis 7.0.15 (Debian 12's C{redis-server} 5:7.0.15-1~deb12u7).

How it runs:

  - C{redis-server} with its whole configuration on the command line (no configuration file,
    so nothing of /etc/redis is read): C{--bind 127.0.0.1 --port PORT --protected-mode yes
    --daemonize no --supervised no --save '' --dir DIR --logfile DIR/redis.log}, then
    C{--appendonly yes --appendfsync always} or C{--appendonly no}, and C{--requirepass} when
    there is a password. DIR is a fresh directory of the test's (L{SynchronousTestCase.mktemp});
    stdin is C{/dev/null}, stdout and stderr (errors in the options, before the log file is
    opened) go to C{DIR/output.txt}.
  - PORT is found by binding port 0 on 127.0.0.1 and closing that socket again; if another
    process takes it in between, redis-server cannot listen (C{Address already in use} in its
    log) and exits, and it is started again on another port, a few times.
  - Ready when it answers C{PING} with C{PONG} (after C{AUTH} when there is a password), and
    C{INFO server} gives the process id of the process started here (not another server's
    answering on that port); polled until a deadline, never a fixed sleep.
  - C{--save ''}: no RDB snapshot is ever written, not even at shutdown. With C{appendonly},
    every write is in the append-only file (C{DIR/appendonlydir}) before it is acknowledged
    (C{appendfsync always}), so that L{RedisServer.kill} (SIGKILL, a crash) loses nothing and
    L{RedisServer.restart} (the same port, the same directory) reads it all back. Without it,
    a restart starts empty.

The system's own redis-server (the Debian package's service, on port 6379) is never used: it
is not running where C{scripts/setup-redis} installed the package.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, TypeAlias
from urllib.parse import quote

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.processes import TIMEOUT, environment

__all__ = ["RedisServer", "RedisConnection", "RedisError", "Reply", "Argument"]

POLL = 0.02
"""Seconds between two tries while waiting for the server to answer."""

STOP_TIMEOUT = 5.0
"""Seconds redis-server may take to exit after SIGTERM before it is killed."""

ATTEMPTS = 5
"""How many free ports are tried when another process takes the one chosen first."""

IN_USE = "Address already in use"
"""What redis-server logs when it cannot listen on its port."""


class RedisError(Exception):
    """An error reply: its text without the C{-} (C{NOAUTH Authentication required.})."""

    @property
    def code(self) -> str:
        """Its first word (C{ERR}, C{NOAUTH}, C{WRONGTYPE}, C{LOADING})."""
        return str(self).split(" ", 1)[0]


Reply: TypeAlias = "str | int | bytes | RedisError | list[Reply] | None"
"""
A reply as read: a simple string as L{str} (C{OK}, C{PONG}), an integer as L{int}, a bulk
string as L{bytes}, an array as a L{list}, a null bulk string or array as L{None}, and an error
as a L{RedisError} (raised when it is the whole reply, kept when inside an array, as in
C{EXEC}'s).
"""

Argument: TypeAlias = "str | bytes | int | float"
"""An argument of a command: sent as a bulk string (text as UTF-8, numbers written out)."""


def encode(*arguments: Argument) -> bytes:
    """The command C{arguments} as RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(arguments)]
    for argument in arguments:
        if isinstance(argument, bytes):
            data = argument
        elif isinstance(argument, str):
            data = argument.encode("utf-8")
        elif isinstance(argument, (int, float)) and not isinstance(argument, bool):
            data = repr(argument).encode("ascii")
        else:
            raise TypeError(f"not a command argument: {argument!r}")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisConnection:
    """A tiny blocking RESP client: one TCP connection, one command at a time."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout)
        self._file = self._socket.makefile("rb")

    def command(self, *arguments: Argument) -> Reply:
        """
        Send one command (C{"SET", "key", "value"}) and read its reply.

        @raise RedisError: if the reply is an error.
        @raise ConnectionError: if the server closes the connection first.
        """
        self._socket.sendall(encode(*arguments))
        reply = self.read()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def read(self) -> Reply:
        """Read one reply (an error as a L{RedisError}, returned, not raised)."""
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError(f"the connection closed before a whole reply: {line!r}")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            data = self._file.read(length + 2)
            if len(data) != length + 2 or not data.endswith(b"\r\n"):
                raise ConnectionError(f"the connection closed within a bulk string: {data!r}")
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [self.read() for _ in range(count)]
        raise ValueError(f"not a RESP reply: {line!r}")

    def close(self) -> None:
        self._file.close()
        self._socket.close()

    def __enter__(self) -> RedisConnection:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def freePort() -> int:
    """A port on 127.0.0.1 that was free a moment ago: bound as port 0, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _unavailable(test: SynchronousTestCase, reason: str) -> SkipTest:
    # What to raise when redis-server cannot be had: a skip, but under CI=true a failure.
    if os.environ.get("CI") == "true":
        test.fail(f"{reason} (CI=true: required)")
    return SkipTest(reason)


class _NotReady(Exception):
    """Why a redis-server that was started does not serve; C{inUse} if it could not listen."""

    def __init__(self, reason: str, inUse: bool = False) -> None:
        super().__init__(reason)
        self.inUse = inUse


class RedisServer:
    """One C{redis-server} of C{test}'s, on a free port on 127.0.0.1, stopped after the test."""

    def __init__(
        self,
        test: SynchronousTestCase,
        appendonly: bool = False,
        password: str | None = None,
        timeout: float = TIMEOUT,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """
        Start it and wait until it answers.

        @param appendonly: keep every write in an append-only file, synced before each reply,
            so that L{restart} after L{kill} finds the data again.
        @param password: what clients must send with C{AUTH} first (C{requirepass}).
        @param timeout: seconds it may take to answer, at each start.
        @param tls: a certificate, its key and the CA that signed it (PEM files): the server
            then also speaks TLS, on L{tlsPort} (L{tlsUrl}); the harness itself still talks
            to it on its plain port.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            raise _unavailable(test, "redis-server is not installed (scripts/setup-redis installs it)")
        self.test = test
        self.binary = binary
        self.appendonly = appendonly
        self.password = password
        self.timeout = timeout
        self.tls = tls
        self.tlsPort = 0
        self.directory = Path(test.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.logFile = self.directory / "redis.log"
        self.outputFile = self.directory / "output.txt"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        test.addCleanup(self.stop)
        self.version = self._version()
        for attempt in range(ATTEMPTS):
            self.port = freePort()
            if tls is not None:
                self.tlsPort = freePort()
            try:
                self._start()
                return
            except _NotReady as notReady:
                self.stop()
                if notReady.inUse and attempt + 1 < ATTEMPTS:
                    continue
                raise _unavailable(test, f"redis-server did not start: {notReady}\n{self.report()}") from None

    @property
    def url(self) -> str:
        """C{redis://127.0.0.1:PORT/0}, or C{redis://:PASSWORD@127.0.0.1:PORT/0}."""
        password = "" if self.password is None else f":{quote(self.password, safe='')}@"
        return f"redis://{password}127.0.0.1:{self.port}/0"

    @property
    def tlsUrl(self) -> str:
        """C{rediss://localhost:TLSPORT/0} (with the password, if any), for a server with C{tls}."""
        password = "" if self.password is None else f":{quote(self.password, safe='')}@"
        return f"rediss://{password}localhost:{self.tlsPort}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # Talking to it

    def connect(self, auth: bool = True) -> RedisConnection:
        """
        A new connection, closed after the test at the latest; authenticated with the password
        (if there is one) unless not C{auth}.
        """
        connection = RedisConnection(self.port, timeout=self.timeout)
        self.test.addCleanup(connection.close)
        if auth and self.password is not None:
            connection.command("AUTH", self.password)
        return connection

    def command(self, *arguments: Argument, auth: bool = True) -> Reply:
        """
        Run one command (C{"GET", "key"}) on a connection of its own; its reply.

        @param auth: send C{AUTH} first, if there is a password.
        @raise RedisError: if the reply is an error (C{NOAUTH} without C{AUTH}).
        """
        with RedisConnection(self.port, timeout=self.timeout) as connection:
            if auth and self.password is not None:
                connection.command("AUTH", self.password)
            return connection.command(*arguments)

    # The process

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still running after L{STOP_TIMEOUT} (for cleanups)."""
        process = self.process
        try:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(TIMEOUT)
        finally:
            self._closeOutput()

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is written at exit."""
        process = self.process
        try:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(TIMEOUT)
        finally:
            self._closeOutput()

    def restart(self) -> None:
        """
        Start it again (stopped first if it is still running) on the same port, in the same
        directory: with C{appendonly}, every write acknowledged before is still there.
        """
        self.stop()
        try:
            self._start()
        except _NotReady as notReady:
            self.stop()
            self.test.fail(f"redis-server did not start again on port {self.port}: {notReady}\n{self.report()}")

    def report(self) -> str:
        """Its log and output, the last lines of each, for failure messages."""
        parts = [f"redis-server {'.'.join(map(str, self.version))} on 127.0.0.1:{self.port} in {self.directory}"]
        for path in (self.logFile, self.outputFile):
            lines = _read(path).splitlines()
            parts.append(f"--- {path.name} ({len(lines)} lines)")
            parts.extend(lines[-50:])
        return "\n".join(parts)

    def _version(self) -> tuple[int, ...]:
        finished = subprocess.run(
            [self.binary, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=TIMEOUT,
        )
        # "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=..."
        found = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", finished.stdout)
        if finished.returncode != 0 or found is None:
            raise _unavailable(
                self.test, f"{self.binary} --version: {finished.stdout.strip()!r} {finished.stderr.strip()!r}"
            )
        return tuple(int(part) for part in found.groups())

    def _command(self) -> list[str]:
        command = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--supervised", "no",
            "--save", "",
            "--dir", str(self.directory),
            "--logfile", str(self.logFile),
        ]
        if self.appendonly:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            command += ["--appendonly", "no"]
        if self.password is not None:
            command += ["--requirepass", self.password]
        if self.tls is not None:
            certificate, key, authority = self.tls
            command += [
                "--tls-port", str(self.tlsPort),
                "--tls-cert-file", str(certificate),
                "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(authority),
                "--tls-auth-clients", "no",
            ]
        return command

    def _start(self) -> None:
        self._output = self.outputFile.open("ab")
        self.process = subprocess.Popen(
            self._command(),
            cwd=self.directory,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._waitReady()

    def _waitReady(self) -> None:
        # PONG from this very process (INFO's process_id), polled until the deadline.
        process = self.process
        assert process is not None
        deadline = time.monotonic() + self.timeout
        while True:
            code = process.poll()
            if code is not None:
                inUse = IN_USE in _read(self.logFile) or IN_USE in _read(self.outputFile)
                raise _NotReady(f"exited with status {code}", inUse)
            try:
                with RedisConnection(self.port, timeout=max(POLL, min(1.0, deadline - time.monotonic()))) as connection:
                    if self.password is not None:
                        connection.command("AUTH", self.password)
                    if connection.command("PING") == "PONG":
                        info = connection.command("INFO", "server")
                        found = re.search(rb"^process_id:(\d+)", info if isinstance(info, bytes) else b"", re.MULTILINE)
                        if found is not None and int(found.group(1)) == process.pid:
                            return
                        raise _NotReady(f"another server answers on port {self.port}: {info!r}", inUse=True)
            except RedisError as error:
                if error.code != "LOADING":
                    raise _NotReady(f"answered with an error: {error}") from None
            except OSError:
                pass  # not listening yet; ConnectionError and socket timeouts are OSErrors too
            if time.monotonic() > deadline:
                raise _NotReady(f"no PONG on port {self.port} within {self.timeout:g} s")
            time.sleep(POLL)

    def _closeOutput(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
