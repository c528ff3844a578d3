"""
What the load scripts in this folder (C{soak.py}, C{fanout.py}) share: the server under test as a
child process, readings of /proc for its memory and CPU (and the machine's), the helpers that run
their phases on the reactor with every wait bounded, and the clock of an open-loop sender.

The scripts are run by path (C{python benchmarks/soak.py}), so Python puts this folder first on
C{sys.path}, from whatever the current directory is, and they import this module as C{harness}.

A server is started in a temporary directory of its own with this checkout importable, its output
(stdout and stderr) read by the reactor, so that it never fills its pipe, and searched for the line
that gives its port and for trouble. It is always stopped: SIGTERM, then SIGKILL if it has not
exited in time, and killed from an exit handler if the script ends first.

A C{redis-server} of a script's own (L{startRedis}, for C{fanout.py --workload cluster}) is one
too: on a free loopback port, no snapshot and no append-only file, ready once it answers C{PING}
with C{PONG} and says (C{INFO server}) that it is the process started here; started again on
another port if another process took the one chosen. L{RedisClient} is the few blocking
commands the scripts send it themselves.
"""

from __future__ import annotations

import atexit
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorCore,
    IReactorFDSet,
    IReactorTCP,
    IReactorTime,
    IReadDescriptor,
)
from twisted.python.failure import Failure
from zope.interface import implementer

ROOT = Path(__file__).resolve().parent.parent
"""The checkout these scripts belong to; its chatsvc is the one started."""

_T = TypeVar("_T")

DEFAULT_LIMITS = {
    "max-connections": 1000,
    "max-connections-per-address": 50,
    "flood-rate": 5.0,
    "flood-burst": 20,
    "address-flood-rate": 20.0,
    "address-flood-burst": 80,
    "max-send-queue": 1 << 20,
    "name-timeout": 60.0,
    "backlog": 4096,
    "crowd": 100,
}
"""chatsvc's defaults (chatsvc.sessions.limits.Limits) for the limits a load may need raised."""

LISTENING = re.compile(r"server_listening.*127\.0\.0\.1:(\d+)")
"""chatsvc's log line that it is listening; its first group is the port."""
TROUBLE = re.compile(r"#(warn|error|critical)\]|Traceback|Unhandled")
"""A line of a server's log that tells of trouble: a warning, an error, a traceback."""


class IReactor(IReactorCore, IReactorTime, IReactorTCP, IReactorFDSet):
    """The reactor features the scripts use; Twisted's POSIX reactors (epoll too) have them all."""


class Aborted(Exception):
    """A phase could not complete (a timeout, a refused connection, a dead server)."""


class Unfinished(Exception):
    """The work given to L{runUntilDone} did not finish: interrupted, or failed."""


# Reading /proc


def addressFloodOptions(clients: int, floodRate: float, floodBurst: float) -> tuple[list[str], str]:
    """
    The options that give C{clients} connections from one address (every client of a load
    test comes from 127.0.0.1) the joint flood limit of as many separate addresses, each at
    C{floodRate} lines/s with bursts of C{floodBurst}; and why.
    """
    rate = clients * floodRate
    burst = max(int(clients * floodBurst), int(DEFAULT_LIMITS["address-flood-burst"]))
    options = ["--address-flood-rate", f"{rate:g}", "--address-flood-burst", str(burst)]
    reason = (
        f"--address-flood-rate {rate:g} --address-flood-burst {burst} (defaults "
        f"{DEFAULT_LIMITS['address-flood-rate']:g}/s, {DEFAULT_LIMITS['address-flood-burst']}): "
        f"all {clients} clients come from 127.0.0.1, and each is to be held to its own flood "
        "limit only"
    )
    return options, reason


def readRSSKB(pid: int) -> int | None:
    """The resident set size of process C{pid} in KB (VmRSS), or None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def readCPUSeconds(pid: int) -> float | None:
    """User plus system CPU seconds process C{pid} has used (/proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            text = stat.read()
        # The command name (field 2) is in parentheses and may hold spaces: split after it.
        fields = text[text.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def readWaitSeconds(pid: int | str) -> float | None:
    """
    Seconds process C{pid}'s main thread has spent runnable but waiting for a CPU
    (/proc/PID/schedstat): time it wanted to run while something else ran on its CPU.
    """
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def readCPUTicks() -> dict[int, tuple[int, int, int]]:
    """Per CPU, ticks busy, stolen (by the hypervisor) and in all, from /proc/stat."""
    ticks: dict[int, tuple[int, int, int]] = {}
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            for line in stat:
                if not line.startswith("cpu") or line.startswith("cpu "):
                    continue
                name, *values = line.split()
                numbers = [int(value) for value in values[:8]]
                numbers += [0] * (8 - len(numbers))
                user, nice, system, idle, iowait, irq, softirq, steal = numbers
                busy = user + nice + system + irq + softirq
                ticks[int(name[3:])] = (busy, steal, busy + steal + idle + iowait)
    except (OSError, ValueError):
        pass
    return ticks


def ownCPUSeconds() -> float:
    """User plus system CPU seconds this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# This process


def raiseFileLimit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def chooseCPUs(pin: bool) -> tuple[int | None, int | None]:
    """The CPUs for the server and for this generator, when there are two to spare."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


def say(text: str) -> None:
    """Print a progress line now."""
    print(text, flush=True)


# The reactor


async def within(reactor: IReactor, deferred: Deferred[_T], seconds: float, what: str) -> _T:
    """Wait for C{deferred}, at most C{seconds}; L{Aborted} naming C{what} if it is late."""
    deferred.addTimeout(seconds, reactor)
    try:
        return await deferred
    except defer.TimeoutError:
        raise Aborted(f"gave up after {seconds:g} s waiting for {what}") from None


def fire(deferred: Deferred[None]) -> None:
    """Fire C{deferred} unless it already has."""
    if not deferred.called:
        deferred.callback(None)


def runUntilDone(reactor: IReactor, work: Callable[[], Coroutine[Deferred[Any], Any, _T]]) -> _T:
    """
    Run the reactor until the coroutine C{work()}, started once it runs, is done; its result.

    @raise Unfinished: if it did not finish: the reactor stopped first (an interrupt, which is
        said), or it failed (its traceback is printed).
    """
    outcome: list[_T | Failure] = []

    def finished(result: _T | Failure) -> None:
        outcome.append(result)
        reactor.stop()

    def begin() -> None:
        defer.ensureDeferred(work()).addBoth(finished)

    reactor.callWhenRunning(begin)
    reactor.run()
    if not outcome:
        say("interrupted")
        raise Unfinished()
    result = outcome[0]
    if isinstance(result, Failure):
        result.printTraceback()
        raise Unfinished()
    return result


class Schedule:
    """
    An open-loop sender's clock: C{send(due)} once every C{period} seconds from monotonic time
    C{first} until C{end}, each as near its due time as the reactor allows, whatever the server
    does; then C{done()}, once, also when L{stop} ends it early. A schedule stopped before it
    started (its connection was cut) sends nothing: starting it only calls C{done()}.
    """

    def __init__(
        self, reactor: IReactorTime, send: Callable[[float], None], done: Callable[[], None]
    ) -> None:
        """
        @param send: sends the next line; given the monotonic time it was due, to time its lag.
        @param done: called once the schedule has sent all it will.
        """
        self._reactor = reactor
        self._send = send
        self._done = done
        self._timer: IDelayedCall | None = None
        self._running = False
        self._stopped = False
        self._first = 0.0
        self._period = 0.0
        self._end = 0.0
        self.sent = 0
        """How many times C{send} has been called."""

    def start(self, first: float, period: float, end: float) -> None:
        """Send at C{first}, C{first + period}, ... while before C{end} (monotonic times)."""
        if self._stopped:
            self._done()
            return
        self._first = first
        self._period = period
        self._end = end
        self._running = True
        self._next()

    def _next(self) -> None:
        due = self._first + self.sent * self._period
        if due >= self._end:
            self.stop()
            return
        delay = max(0.0, due - time.monotonic())
        self._timer = self._reactor.callLater(delay, self._due, due)

    def _due(self, due: float) -> None:
        self._timer = None
        self.sent += 1
        self._send(due)
        self._next()

    def stop(self) -> None:
        """Send no more; a running schedule calls C{done()}."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._stopped = True
        if self._running:
            self._running = False
            self._done()


# The server


def twistdCommand() -> list[str]:
    """How to run twistd with this interpreter."""
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "twisted", "twistd"]


def chatroomCommand(
    options: Sequence[str],
    listen: str = "tcp:0:interface=127.0.0.1",
    twistdOptions: Sequence[str] = (),
) -> list[str]:
    """
    The command that runs chatsvc in the foreground: C{twistd [twistdOptions] --nodaemon
    --pidfile= chatroom --listen LISTEN [options]}.

    @param options: chatroom options after C{--listen}.
    @param listen: the endpoint to listen on; a free port on 127.0.0.1 unless told otherwise.
    @param twistdOptions: twistd's own options, such as C{--reactor=epoll}.
    """
    return [
        *twistdCommand(),
        *twistdOptions,
        "--nodaemon",
        "--pidfile=",
        "chatroom",
        "--listen",
        listen,
        *(() if "--web-listen" in options else ("--no-web",)),
        *(() if "--irc-listen" in options else ("--no-irc",)),
        *options,
    ]


def childEnvironment() -> dict[str, str]:
    """The environment for a server: this checkout importable first, output unbuffered."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), environment.get("PYTHONPATH")])
    )
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


@implementer(IReadDescriptor)
class _LogPipe:
    """The read end of a server's stdout in the reactor: hands over each line, then the end."""

    def __init__(
        self, reactor: IReactor, fd: int, onLine: Callable[[str], None], onEnd: Callable[[], None]
    ) -> None:
        os.set_blocking(fd, False)
        self._reactor = reactor
        self._fd = fd
        self._onLine = onLine
        self._onEnd = onEnd
        self._partial = b""

    def fileno(self) -> int:
        """The pipe's file descriptor."""
        return self._fd

    def logPrefix(self) -> str:
        """How the reactor names this in its log."""
        return "server-log"

    def doRead(self) -> None:
        """Read what the server wrote; at the end of the pipe, stop reading and say so."""
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._reactor.removeReader(self)
            self.connectionLost(Failure(ConnectionDone()))
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._onLine(line.rstrip(b"\r").decode("utf-8", "replace"))

    def connectionLost(self, reason: Failure) -> None:
        """The server closed its end: it has exited (or is about to)."""
        if self._partial:
            self._onLine(self._partial.decode("utf-8", "replace"))
            self._partial = b""
        self._onEnd()


class ServerProcess:
    """
    A server under test: a child process on a free loopback port, pinned to its CPU, run in a
    temporary directory of its own, its output (stdout and stderr) read by the reactor (never
    left to fill its pipe) and searched for its port and for trouble.
    """

    def __init__(
        self,
        reactor: IReactor,
        name: str,
        command: list[str],
        cpu: int | None,
        log: Path | None = None,
        listening: re.Pattern[str] = LISTENING,
        directoryPrefix: str = "chatsvc-",
        troubleKept: int = 10,
        expectedTrouble: re.Pattern[str] | None = None,
    ) -> None:
        """
        @param name: how messages name the server (C{"relay"}, C{"the server"}).
        @param command: the command that runs it in the foreground.
        @param cpu: the CPU to pin the server to, if any.
        @param log: a file to copy the server's whole output to, if any.
        @param listening: matches the output line that gives the port (its first group);
            chatsvc's C{server_listening} line unless told otherwise.
        @param directoryPrefix: how the name of its temporary directory begins.
        @param troubleKept: how many lines that tell of trouble to keep word for word (the
            rest are only counted).
        @param expectedTrouble: matches the lines that look like trouble but are expected of
            this run (a warning about a setting the benchmark chose): kept in L{expected}, not
            counted as trouble.
        """
        self._reactor = reactor
        self.name = name
        self.command = command
        self.cpu = cpu
        self._listeningLine = listening
        self._troubleKept = troubleKept
        self._expectedTrouble = expectedTrouble
        self.lines = 0
        self.tail: list[str] = []
        self.trouble: list[str] = []
        self.troubleCount = 0
        self.expected: list[str] = []
        """Lines that looked like trouble but were expected (see C{expectedTrouble}), the first few."""
        self.stopping = False
        """Whether L{stop} has sent it SIGTERM."""
        self.exitedEarly = False
        """Whether it had already exited when L{stop} was called."""
        self.listening: Deferred[int] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self._popen: subprocess.Popen[bytes] | None = None
        self._log = None if log is None else open(log, "w", encoding="utf-8")
        self._directory = tempfile.TemporaryDirectory(prefix=directoryPrefix)

    @property
    def started(self) -> bool:
        """Whether the server process was started."""
        return self._popen is not None

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self._popen is not None
        return self._popen.pid

    def _inChild(self) -> None:
        # Runs in the child between fork and exec (preexec_fn): no threads exist yet, so it is safe.
        raiseFileLimit()
        if self.cpu is not None:
            os.sched_setaffinity(0, {self.cpu})

    def start(self) -> Deferred[int]:
        """Start the server; fires with its port once it says it is listening."""
        self._popen = subprocess.Popen(
            self.command,
            cwd=self._directory.name,
            env=childEnvironment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=self._inChild,
        )
        atexit.register(self.kill)
        assert self._popen.stdout is not None
        self._reactor.addReader(
            _LogPipe(self._reactor, self._popen.stdout.fileno(), self.lineReceived, self._end)
        )
        return self.listening

    def lineReceived(self, line: str) -> None:
        """
        One line of the server's output: copied to the log file, kept in the tail, and searched
        for the port (until it is found) and for trouble.
        """
        self.lines += 1
        if self._log is not None:
            self._log.write(line + "\n")
        self.tail = [*self.tail[-19:], line]
        if not self.listening.called:
            match = self._listeningLine.search(line)
            if match:
                self.listening.callback(int(match.group(1)))
        if TROUBLE.search(line):
            if self._expectedTrouble is not None and self._expectedTrouble.search(line):
                if len(self.expected) < self._troubleKept:
                    self.expected.append(line)
                return
            self.troubleCount += 1
            if len(self.trouble) < self._troubleKept:
                self.trouble.append(line)

    def _end(self) -> None:
        assert self._popen is not None and self._popen.stdout is not None
        self._popen.stdout.close()
        if self._log is not None:
            self._log.close()
        if not self.listening.called:
            tail = "\n    ".join(self.tail)
            self.listening.errback(Aborted(f"{self.name} exited before listening:\n    {tail}"))
        fire(self.ended)

    def running(self) -> bool:
        """Whether the server process is still alive."""
        return self._popen is not None and self._popen.poll() is None

    def rssKB(self) -> int | None:
        """The server's resident set size now, in KB."""
        return readRSSKB(self.pid)

    def cpuSeconds(self) -> float | None:
        """CPU seconds the server has used so far."""
        return readCPUSeconds(self.pid)

    async def stop(self, grace: float) -> int | None:
        """
        Stop the (started) server with SIGTERM, as an init system would, and SIGKILL if it has
        not exited after C{grace} seconds; then remove its directory. Its exit status (negative:
        the signal that ended it), or None if it had to be killed.
        """
        assert self._popen is not None
        self.exitedEarly = self.ended.called
        if self._popen.poll() is None:
            self.stopping = True
            self._popen.send_signal(signal.SIGTERM)
        try:
            await within(self._reactor, self.ended, grace, f"{self.name} to exit")
            return self._popen.wait(timeout=grace)
        except (Aborted, subprocess.TimeoutExpired):
            self.kill()
            return None
        finally:
            self._directory.cleanup()

    def kill(self) -> None:
        """Make sure the server is gone (an exit handler too, so it never outlives the script)."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait(timeout=30)
        self._directory.cleanup()


# Redis


REDIS_READY = re.compile(r"Ready to accept connections")
"""redis-server's log line that it listens (and has loaded what it had)."""
REDIS_IN_USE = "Address already in use"
"""What redis-server logs when another process holds its port."""
REDIS_ATTEMPTS = 5
"""How many free ports are tried when another process takes the one chosen first."""


def freePort() -> int:
    """A port on 127.0.0.1 that was free a moment ago: bound as port 0, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisError(Exception):
    """An error reply from Redis (its text without the C{-})."""


class RedisClient:
    """
    A tiny blocking RESP client on one connection to a Redis on 127.0.0.1, one command at a
    time: for the few commands a script sends between its measurements (C{PING}, C{INFO},
    C{PUBSUB NUMSUB}), each a round trip on loopback of well under a millisecond.
    """

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._file = self._socket.makefile("rb")

    def command(self, *arguments: str | bytes | int) -> Any:
        """
        Send one command and read its reply: a simple string as L{str}, an integer as L{int},
        a bulk string as L{bytes}, an array as a L{list}, a null as None.

        @raise RedisError: if the reply is an error.
        @raise OSError: if the connection fails or closes first.
        """
        parts = [b"*%d\r\n" % len(arguments)]
        for argument in arguments:
            data = argument if isinstance(argument, bytes) else str(argument).encode("utf-8")
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self._socket.sendall(b"".join(parts))
        reply = self._read()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def _read(self) -> Any:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError(f"Redis closed the connection within a reply: {line!r}")
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
            if len(data) != length + 2:
                raise ConnectionError("Redis closed the connection within a bulk string")
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise ConnectionError(f"not a RESP reply: {line!r}")

    def info(self, section: str) -> dict[str, str]:
        """One section of C{INFO}, as its fields."""
        text = cast(bytes, self.command("INFO", section)).decode("utf-8", "replace")
        fields: dict[str, str] = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and ":" in line:
                name, value = line.split(":", 1)
                fields[name] = value
        return fields

    def close(self) -> None:
        """Close the connection."""
        self._file.close()
        self._socket.close()


def redisBinary() -> str | None:
    """Where C{redis-server} is, or None if it is not installed."""
    return shutil.which("redis-server")


class RedisProcess(ServerProcess):
    """
    A C{redis-server} of the script's own, as a L{ServerProcess} (its output read by the
    reactor, always stopped): on C{port} of 127.0.0.1, its whole configuration on the command
    line (no configuration file, so nothing of /etc/redis is read), no RDB snapshot
    (C{--save ''}) and no append-only file, in a temporary directory of its own.
    """

    def __init__(self, reactor: IReactor, binary: str, port: int, log: Path | None = None) -> None:
        command = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--supervised", "no",
            "--save", "",
            "--appendonly", "no",
            "--dir", ".",
            "--logfile", "",
        ]
        super().__init__(
            reactor, "redis-server", command, None, log,
            listening=REDIS_READY, directoryPrefix="fanout-redis-",
        )
        self.port = port

    def lineReceived(self, line: str) -> None:
        """A line of Redis's log: the port once it says it is ready (its line has none)."""
        if not self.listening.called and REDIS_READY.search(line):
            self.listening.callback(self.port)
        super().lineReceived(line)

    def client(self) -> RedisClient:
        """A new connection to it."""
        return RedisClient(self.port)

    async def ready(self, timeout: float) -> None:
        """
        Wait until it answers C{PING} with C{PONG} and C{INFO server} gives this process's id
        (not another server's answering on the port), polled every 20 ms, at most C{timeout}.

        @raise Aborted: if it exits first (its log's last lines said), or does not answer.
        """
        await within(self._reactor, self.start(), timeout, "redis-server to listen")
        deadline = time.monotonic() + timeout
        while True:
            try:
                connection = self.client()
                try:
                    if connection.command("PING") == "PONG":
                        pid = connection.info("server").get("process_id")
                        if pid == str(self.pid):
                            return
                        raise Aborted(f"another Redis (pid {pid}) answers on port {self.port}")
                finally:
                    connection.close()
            except (OSError, RedisError):
                pass  # not answering yet (LOADING, or not accepting yet)
            if not self.running():
                raise Aborted("redis-server exited:\n    " + "\n    ".join(self.tail))
            if time.monotonic() > deadline:
                raise Aborted(f"redis-server did not answer PING within {timeout:g} s")
            sleeping: Deferred[None] = Deferred()
            self._reactor.callLater(0.02, fire, sleeping)
            await sleeping


async def startRedis(reactor: IReactor, binary: str, log: Path | None, timeout: float) -> RedisProcess:
    """
    A C{redis-server} started on a free port of 127.0.0.1 and answering: if another process
    takes the port between its choice and Redis's binding it, Redis exits, and it is started
    again on another, a few times (L{REDIS_ATTEMPTS}).
    """
    for attempt in range(REDIS_ATTEMPTS):
        redis = RedisProcess(reactor, binary, freePort(), log)
        try:
            await redis.ready(timeout)
            return redis
        except Aborted:
            inUse = any(REDIS_IN_USE in line for line in redis.tail)
            await redis.stop(5.0)
            if not inUse or attempt + 1 == REDIS_ATTEMPTS:
                raise
    raise AssertionError("unreachable")
