#!/usr/bin/env python3
"""
A soak test for chatsvc, run by hand (it is not a unit test): many real TCP clients on loopback
chat at a steady rate for a while, and every line every client receives is checked and timed.

    python benchmarks/soak.py --clients 200 --duration 10 --rate 1
    python benchmarks/soak.py --clients 1000 --duration 30 --rate 0.2 --json results.json
    python benchmarks/soak.py --clients 40 --duration 5 --rate 1 --connect 127.0.0.1:5051

What it does, in order:

 1. Unless C{--connect} is given, starts its own server, C{twistd --nodaemon --pidfile= chatroom
    --listen tcp:0:interface=127.0.0.1} with the connection and flood limits raised for the load
    (the defaults are meant for public servers), and waits for its C{server_listening} log line.
    With two cores or more, the server is pinned to one core and this generator to another.
 2. Connects C{--clients} clients, a few at a time (C{--connect-concurrency}), each with a unique
    nickname, and waits until every client has seen every other one join: after that barrier no
    join line can still be on its way, and the clock starts.
 3. For C{--duration} seconds each client sends C{--rate} lines a second, open loop (on schedule,
    whatever the server does), the first at a random phase so that sends are spread. A line is
    C{<seq> <send-time>}, the time from this process's monotonic clock, which also times receipt.
 4. Waits (at most C{--drain-timeout}) for every expected delivery, then every client sends
    C{/quit} and waits for the server to close its connection; then the server gets SIGTERM.

Every receiver checks every line: each message of each sender must reach every other client once
and in order (lost, duplicated and reordered deliveries are counted), and any line that is not a
chat line or one of the protocol's join, leave and notice lines is an error and is printed. It
reports latencies, throughput, the server's memory (VmRSS) and CPU, and its own CPU, to tell
whether the generator rather than the server was the bottleneck.

A latency runs from the write of a line to the read that returned it at a receiver, both in this
one single-threaded process. When the generator's loop is busy, its own delay is in it: the
"send lag" (how late sends left against their schedule) shows how much that can be.

The exit status is 0 only if nothing was lost, duplicated or reordered, no error was seen, and the
server stopped cleanly; otherwise 1. Every wait is bounded; it only talks to 127.0.0.1.

A clean stop is exit status 0 after our SIGTERM, with twistd's C{Server Shut Down.} logged and
no error logged while stopping. The raw status is reported as C{server_exit_code}.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import math
import os
import random
import re
import signal
import sys
import time
from array import array
from enum import Enum, auto
from pathlib import Path
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from harness import (
    DEFAULT_LIMITS,
    addressFloodOptions,
    Aborted,
    IReactor,
    Schedule,
    ServerProcess,
    Unfinished,
    chatroomCommand,
    chooseCPUs,
    fire,
    ownCPUSeconds,
    raiseFileLimit,
    readCPUSeconds,
    readRSSKB,
    runUntilDone,
    say,
    within,
)

MAX_ERRORS_SHOWN = 30
"""Errors kept (and printed) word for word; the rest are only counted."""

MAX_LINE = 1 << 20
"""Longest line a client accepts from the server (a member list of 1000 nicks is ~12 KB)."""

SPARE_FILES = 64
"""File descriptors this process needs beyond one per client."""


# Measuring


class Histogram:
    """
    Durations in seconds: counted in 10 µs steps below 1 s and 1 ms steps below 10 minutes (longer
    ones are only counted), so that millions of samples cost a few MB and percentiles are exact to
    the step. L{SoakClient.dataReceived} fills L{fine} directly, the hot path of the whole test.
    """

    FINE_STEP = 1e-5
    FINE_PER_SECOND = 100_000.0
    FINE_SLOTS = 100_000
    COARSE_STEP = 1e-3
    COARSE_SLOTS = 600_000

    def __init__(self) -> None:
        self.fine = [0] * self.FINE_SLOTS
        self._coarse: list[int] = []
        self._beyond = 0
        self.total = 0.0
        self.maximum = 0.0

    def add(self, value: float) -> None:
        """Count one duration."""
        slot = int(value * self.FINE_PER_SECOND)
        if 0 <= slot < self.FINE_SLOTS:
            self.fine[slot] += 1
        else:
            self.addSlow(value)
        self.total += value
        if value > self.maximum:
            self.maximum = value

    def addSlow(self, value: float) -> None:
        """Count a duration of a second or more (or a negative one, as zero)."""
        if value < 0:
            self.fine[0] += 1
            return
        slot = int(value / self.COARSE_STEP)
        if slot >= self.COARSE_SLOTS:
            self._beyond += 1
            return
        if not self._coarse:
            self._coarse = [0] * self.COARSE_SLOTS
        self._coarse[slot] += 1

    @property
    def count(self) -> int:
        """The number of durations counted."""
        return sum(self.fine) + sum(self._coarse) + self._beyond

    def percentile(self, percent: float) -> float:
        """
        The duration below which C{percent}% of the counted ones fall (the upper edge of its step,
        never above the maximum); 0 when nothing was counted.
        """
        count = self.count
        if not count:
            return 0.0
        rank = max(1, math.ceil(count * percent / 100))
        seen = 0
        for slots, step in ((self.fine, self.FINE_STEP), (self._coarse, self.COARSE_STEP)):
            for slot, number in enumerate(slots):
                seen += number
                if seen >= rank:
                    return min((slot + 1) * step, self.maximum)
        return self.maximum

    def summaryMs(self) -> dict[str, float]:
        """p50, p90, p99, p99.9, max and mean in milliseconds."""
        count = self.count
        summary = {
            name: round(self.percentile(percent) * 1000, 3)
            for name, percent in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9))
        }
        summary["max"] = round(self.maximum * 1000, 3)
        summary["mean"] = round(self.total / count * 1000, 3) if count else 0.0
        return summary


# The server


FAILURE = re.compile(r"#(error|critical)\]|Traceback|Unhandled")
"""A line of the server's log that tells of an error (a warning is not one)."""
SHUT_DOWN = "Server Shut Down."
"""What twistd logs last when its shutdown completed."""


class SoakServer(ServerProcess):
    """
    The server this test starts: C{twistd -n chatroom} on a free loopback port (see
    L{ServerProcess}), which must also stop cleanly, so its log is watched while it stops.
    """

    def __init__(
        self, reactor: IReactor, options: list[str], cpu: int | None, log: Path | None = None
    ) -> None:
        """
        @param options: chatroom options after C{--listen tcp:0:interface=127.0.0.1}.
        @param cpu: the CPU to pin the server to, if any.
        @param log: a file to copy the server's whole log to, if any.
        """
        super().__init__(
            reactor, "the server", chatroomCommand(options), cpu, log,
            directoryPrefix="chatsvc-soak-", troubleKept=MAX_ERRORS_SHOWN,
        )
        self.shutDown = False
        self.failuresWhileStopping = 0

    def lineReceived(self, line: str) -> None:
        """One line of the server's log; while it stops, its last line and errors are noted."""
        super().lineReceived(line)
        if self.stopping:
            if line.endswith(SHUT_DOWN):
                self.shutDown = True
            if FAILURE.search(line):
                self.failuresWhileStopping += 1

    def cleanExit(self, status: int | None) -> bool:
        """
        Whether the server stopped cleanly: exit status 0 after our SIGTERM, once it had logged
        C{Server Shut Down.} with no error logged while stopping.
        """
        return (
            status == 0
            and not self.exitedEarly
            and self.stopping
            and self.shutDown
            and not self.failuresWhileStopping
        )


def serverOptions(clients: int, rate: float) -> tuple[list[str], list[str]]:
    """The chatroom options for a test of C{clients} clients at C{rate}, and why each is set."""
    connections = clients + 16
    options: list[str] = []
    reasons: list[str] = []
    if connections > DEFAULT_LIMITS["max-connections"]:
        options += ["--max-connections", str(connections)]
        reasons.append(
            f"--max-connections {connections} (default {DEFAULT_LIMITS['max-connections']}): "
            f"room for all {clients} clients, which all come from one address"
        )
    options += ["--max-connections-per-address", str(connections)]
    reasons.append(
        f"--max-connections-per-address {connections} (default "
        f"{DEFAULT_LIMITS['max-connections-per-address']}): every client connects from 127.0.0.1"
    )
    if clients > DEFAULT_LIMITS["crowd"]:
        options += ["--crowd", str(connections)]
        reasons.append(
            f"--crowd {connections} (default {DEFAULT_LIMITS['crowd']}): every client checks "
            "each other's join as a line of its own (a larger room would announce joins "
            "together, once a second)"
        )
    floodRate = max(DEFAULT_LIMITS["flood-rate"], 4 * rate)
    if floodRate > DEFAULT_LIMITS["flood-rate"]:
        options += ["--flood-rate", f"{floodRate:g}"]
        reasons.append(
            f"--flood-rate {floodRate:g} (default {DEFAULT_LIMITS['flood-rate']:g}): 4x the "
            f"{rate:g} lines/s each client sends, so that the flood limit never delays a line"
        )
    else:
        reasons.append(
            f"--flood-rate kept at its default {DEFAULT_LIMITS['flood-rate']:g} lines/s, already "
            f"at least 4x the {rate:g} lines/s each client sends"
        )
    addressOptions, reason = addressFloodOptions(
        connections, floodRate, float(DEFAULT_LIMITS["flood-burst"])
    )
    options += addressOptions
    reasons.append(reason)
    return options, reasons


# The clients


class Phase(Enum):
    """Where the whole run is: receivers judge some lines by it."""

    JOINING = auto()
    LOADING = auto()
    QUITTING = auto()


class ClientState(Enum):
    """Where one client's session is."""

    CONNECTING = auto()
    AWAITING_NAME = auto()
    AWAITING_JOIN = auto()
    MEMBER = auto()
    QUITTING = auto()


WELCOME = "*** Type /help for commands, /quit to leave"
FLOOD_NOTICE = "*** You are sending too fast; your lines are being delayed."
MEMBERS = re.compile(r"\*\*\* Members \((\d+)\): (.*)")
JOINED = re.compile(r"(\S+) joined!")
LEFT = re.compile(r"(\S+) left!(?: \((.*)\))?")
CHAT = re.compile(r"([^\s:]+): (.*)")


class Run:
    """What every client of one soak run shares: the nicknames, the phase, the tallies."""

    def __init__(self, reactor: IReactor, clients: int, rate: float, duration: float) -> None:
        self.reactor = reactor
        self.size = clients
        self.rate = rate
        self.duration = duration
        tag = f"{random.randrange(16**4):04x}"
        self.nicks = [f"sk{tag}_{index}" for index in range(clients)]
        self.indexByName = {nick: index for index, nick in enumerate(self.nicks)}
        self.indexByNick = {nick.encode("ascii"): index for nick, index in self.indexByName.items()}
        self.clients: list[SoakClient] = []
        self.phase = Phase.JOINING

        self.latency = Histogram()
        self.sendLag = Histogram()
        self.delivered = 0
        self.duplicated = 0
        self.reordered = 0
        self.foreignLines = 0
        self.floodNotices = 0
        self.errorCount = 0
        self.errors: list[str] = []
        self.firstDelivery: float | None = None
        self.lastDelivery: float | None = None

        self.start = 0.0
        self.sendEnd = 0.0
        self.expected: int | None = None
        self.sawEveryone = 0
        self.doneSending = 0
        self.closed = 0
        self.everyoneJoined: Deferred[None] = Deferred()
        self.sendingDone: Deferred[None] = Deferred()
        self.drained: Deferred[None] = Deferred()
        self.allClosed: Deferred[None] = Deferred()

    def error(self, nick: str, message: str) -> None:
        """Count an error seen by client C{nick}; the first ones are kept word for word."""
        self.errorCount += 1
        if len(self.errors) < MAX_ERRORS_SHOWN:
            self.errors.append(f"{nick}: {message}")

    def clientSawEveryone(self) -> None:
        """One more client knows every member of the test; the barrier falls with the last."""
        self.sawEveryone += 1
        if self.sawEveryone == self.size:
            fire(self.everyoneJoined)

    def clientDoneSending(self) -> None:
        """One more client has sent all it will; with the last, the expected total is known."""
        self.doneSending += 1
        if self.doneSending == self.size:
            sent = sum(client.sent for client in self.clients)
            self.expected = sent * (self.size - 1)
            fire(self.sendingDone)
            self.checkDrained()

    def checkDrained(self) -> None:
        """Fire L{drained} once every expected delivery has arrived."""
        if self.expected is not None and self.delivered >= self.expected:
            fire(self.drained)

    def clientClosed(self) -> None:
        """One more connection is closed."""
        self.closed += 1
        if self.closed == len(self.clients):
            fire(self.allClosed)


class SoakClient(Protocol):
    """
    One chat client of the soak test: joins, sends numbered, timestamped lines on schedule, and
    checks each line it receives.

    Chat lines take a fast path (L{dataReceived}): they are the bulk of all traffic, and this one
    process must keep up with every delivery the server makes.
    """

    def __init__(self, run: Run, index: int) -> None:
        self.run = run
        self.index = index
        self.nick = run.nicks[index]
        self.state = ClientState.CONNECTING
        self.joined: Deferred[None] = Deferred()
        # Which test members this client knows to be in the room, and how many.
        self.known = bytearray(run.size)
        self.knownCount = 0
        self.sawMembers = False
        self.membersDue = 0
        """Names of the member list still to come on lines of their own."""
        self.sawWelcome = False
        # Per sender: the highest sequence number received, and the lower ones still missing.
        self.lastSeq = array("q", [0]) * run.size
        self.missing: dict[int, set[int]] = {}
        self.received = 0
        self.goodbye = False
        self.isClosed = False
        self._aborted = False
        self._buffer = b""
        self._schedule = Schedule(run.reactor, self._send, run.clientDoneSending)

    # Connection

    def connectionMade(self) -> None:
        """Chat is small writes that should go now: no Nagle."""
        transport = cast(ITCPTransport, self.transport)
        transport.setTcpNoDelay(True)
        self.state = ClientState.AWAITING_NAME

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Expected only after C{/quit} and the server's goodbye."""
        self.isClosed = True
        self._schedule.stop()
        if not self._aborted and (self.state is not ClientState.QUITTING or not self.goodbye):
            self.run.error(
                self.nick,
                f"connection closed while {self.state.name.lower()} in phase "
                f"{self.run.phase.name.lower()}: {reason.getErrorMessage()}",
            )
        if not self.joined.called:
            self.joined.errback(Aborted(f"{self.nick} lost its connection before joining"))
        self.run.clientClosed()

    def abort(self) -> None:
        """Cut the connection now (cleaning up after a failed phase)."""
        self._schedule.stop()
        if not self.isClosed and self.transport is not None:
            self._aborted = True
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # Receiving

    def dataReceived(self, data: bytes) -> None:
        """
        Check every line: chat lines from test members here, inline, the rest in L{_otherLine}.
        One receipt time serves every line of a read: they all arrived by then.
        """
        now = time.monotonic()
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > MAX_LINE:
            self.run.error(self.nick, f"a line longer than {MAX_LINE} bytes")
            self._buffer = b""
        run = self.run
        senders = run.indexByNick
        lastSeq = self.lastSeq
        fine = run.latency.fine
        slots = Histogram.FINE_SLOTS
        perSecond = Histogram.FINE_PER_SECOND
        delivered = 0
        total = 0.0
        longest = 0.0
        for line in lines:
            nick, separator, rest = line.partition(b": ")
            sender = senders.get(nick)
            if sender is None or not separator or sender == self.index:
                self._otherLine(line)
                continue
            sequenceText, _, stamp = rest.partition(b" ")
            try:
                sequence = int(sequenceText)
                sentAt = float(stamp)
            except ValueError:
                run.error(self.nick, f"malformed chat line {line!r}")
                continue
            if sequence == lastSeq[sender] + 1:
                lastSeq[sender] = sequence
            elif not self._outOfLine(sender, sequence):
                continue
            delivered += 1
            latency = now - sentAt
            total += latency
            if latency > longest:
                longest = latency
            slot = int(latency * perSecond)
            if 0 <= slot < slots:
                fine[slot] += 1
            else:
                run.latency.addSlow(latency)
        if delivered:
            self.received += delivered
            run.delivered += delivered
            run.latency.total += total
            if longest > run.latency.maximum:
                run.latency.maximum = longest
            if run.firstDelivery is None:
                run.firstDelivery = now
            run.lastDelivery = now
            if run.expected is not None:
                run.checkDrained()

    def _outOfLine(self, sender: int, sequence: int) -> bool:
        """
        A message that is not the next one from C{sender}: a jump ahead (the ones skipped are
        missing, for now), a missing one arriving late (reordered), or a duplicate.

        @return: whether it is a delivery to count.
        """
        last = self.lastSeq[sender]
        if sequence > last:
            if sequence - last > 10_000_000:
                self.run.error(self.nick, f"implausible sequence number {sequence} from {sender}")
                return False
            self.missing.setdefault(sender, set()).update(range(last + 1, sequence))
            self.lastSeq[sender] = sequence
            return True
        gaps = self.missing.get(sender)
        if gaps is not None and sequence in gaps:
            gaps.discard(sequence)
            self.run.reordered += 1
            return True
        if sequence <= 0:
            self.run.error(self.nick, f"invalid sequence number {sequence} from {sender}")
        else:
            self.run.duplicated += 1
        return False

    def _otherLine(self, raw: bytes) -> None:
        """Everything but test members' chat: the handshake, joins, leaves, notices."""
        text = raw.rstrip(b"\r").decode("utf-8", "replace")
        run = self.run
        if self.state is ClientState.AWAITING_NAME:
            if text == "GET_NAME":
                self.state = ClientState.AWAITING_JOIN
                assert self.transport is not None
                self.transport.write(self.nick.encode("ascii") + b"\n")
            else:
                self._refused(text)
            return
        if self.state is ClientState.AWAITING_JOIN:
            if text == f"{self.nick} connected to server!":
                self.state = ClientState.MEMBER
                fire(self.joined)
            else:
                self._refused(text)
            return
        if not text.strip():
            run.error(self.nick, "an empty line")
        elif text.startswith("*** "):
            self._notice(text)
        elif match := JOINED.fullmatch(text):
            index = run.indexByName.get(match.group(1))
            if index is None:
                run.foreignLines += 1
            elif self.known[index]:
                run.error(self.nick, f"a second join of {match.group(1)}: {text!r}")
            else:
                self._know(index)
        elif match := LEFT.fullmatch(text):
            if match.group(1) not in run.indexByName:
                run.foreignLines += 1
            elif run.phase is not Phase.QUITTING:
                phase = run.phase.name.lower()
                run.error(self.nick, f"a test member left during {phase}: {text!r}")
        elif match := CHAT.fullmatch(text):
            if match.group(1) == self.nick:
                run.error(self.nick, f"its own line echoed back: {text!r}")
            elif match.group(1) in run.indexByName:
                run.error(self.nick, f"malformed chat line {text!r}")
            else:
                run.foreignLines += 1
        else:
            run.error(self.nick, f"unexpected line {text!r}")

    def _notice(self, text: str) -> None:
        run = self.run
        if match := MEMBERS.fullmatch(text):
            if self.sawMembers:
                run.error(self.nick, f"a second member list: {text[:80]!r}...")
                return
            self.sawMembers = True
            names = match.group(2).split(", ")
            # Past a hundred names, the list goes on in lines of its own ("***   a, b").
            self.membersDue = int(match.group(1)) - len(names)
            self._knowMembers(names, text)
        elif text.startswith("***   ") and self.membersDue > 0:
            names = text[6:].split(", ")
            self.membersDue -= len(names)
            self._knowMembers(names, text)
        elif text.startswith(WELCOME) and not self.sawWelcome:
            self.sawWelcome = True
        elif text == f"*** Goodbye, {self.nick}!" and self.state is ClientState.QUITTING:
            self.goodbye = True
        elif text == FLOOD_NOTICE:
            # A known notice, not an error; but it means the server delayed this client's lines.
            run.floodNotices += 1
        else:
            run.error(self.nick, f"unexpected notice {text!r}")

    def _knowMembers(self, names: list[str], text: str) -> None:
        # Names of a member list (its first line or a later one).
        run = self.run
        if self.membersDue < 0:
            run.error(self.nick, f"member list with a wrong count: {text[:80]!r}...")
        for name in names:
            index = run.indexByName.get(name)
            if index is not None and not self.known[index]:
                self._know(index)

    def _refused(self, text: str) -> None:
        self.run.error(self.nick, f"unexpected line while joining: {text!r}")
        if not self.joined.called:
            self.joined.errback(Aborted(f"{self.nick} could not join: {text!r}"))

    def _know(self, index: int) -> None:
        self.known[index] = 1
        self.knownCount += 1
        if self.knownCount == self.run.size:
            self.run.clientSawEveryone()

    # Sending

    @property
    def sent(self) -> int:
        """How many lines this client has sent."""
        return self._schedule.sent

    def startSending(self, first: float) -> None:
        """Send one line every 1/rate seconds from monotonic time C{first} until the end."""
        self._schedule.start(first, 1 / self.run.rate, self.run.sendEnd)

    def _send(self, due: float) -> None:
        now = time.monotonic()
        assert self.transport is not None
        self.transport.write(b"%d %.6f\n" % (self.sent, now))
        self.run.sendLag.add(now - due)

    def quit(self) -> None:
        """Leave the room: C{/quit}, then the server says goodbye and closes."""
        if not self.isClosed and self.transport is not None:
            self.state = ClientState.QUITTING
            self.transport.write(b"/quit\n")


# The run


class Settings(argparse.Namespace):
    """The command line."""

    clients: int
    duration: float
    rate: float
    json: Path | None
    connect: str | None
    server_pid: int | None
    server_log: Path | None
    connect_concurrency: int
    join_timeout: float
    drain_timeout: float
    pin: bool
    seed: int | None
    db: str | None


def parseArguments(argv: list[str]) -> Settings:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Soak-test a chatsvc server with many loopback clients.",
        epilog="Exit status 0 only if nothing was lost, duplicated or reordered, no error was "
        "seen, and the server stopped cleanly (status 0 after SIGTERM).",
    )
    parser.add_argument("--clients", type=int, required=True, help="number of clients")
    parser.add_argument("--duration", type=float, required=True, help="seconds of load")
    parser.add_argument("--rate", type=float, required=True, help="lines per second per client")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument(
        "--connect", metavar="HOST:PORT", help="use a running server on loopback, not our own"
    )
    parser.add_argument(
        "--server-pid", type=int, help="with --connect: the server's pid, for its RSS and CPU"
    )
    parser.add_argument(
        "--server-log", type=Path, help="copy the log of the server this test starts to this file"
    )
    parser.add_argument(
        "--connect-concurrency", type=int, default=32,
        help="handshakes in progress at once while connecting (default 32)",
    )
    parser.add_argument(
        "--join-timeout", type=float, default=120.0,
        help="seconds for all clients to connect and join (default 120)",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=30.0,
        help="seconds to wait for deliveries after the last send (default 30)",
    )
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false",
        help="do not pin the server and the generator to separate CPUs",
    )
    parser.add_argument("--seed", type=int, help="seed for nicknames and send phases")
    parser.add_argument(
        "--db", help="the server's --db (default: its own, a file in the server's temporary "
        "directory; :memory: to store no history)",
    )
    settings = parser.parse_args(argv, namespace=Settings())
    if settings.clients < 2:
        parser.error("--clients must be at least 2 (messages go to the other clients)")
    if not settings.duration > 0 or not settings.rate > 0:
        parser.error("--duration and --rate must be positive")
    if settings.connect_concurrency < 1:
        parser.error("--connect-concurrency must be at least 1")
    if settings.connect is not None:
        host, _, port = settings.connect.rpartition(":")
        host = "127.0.0.1" if host == "localhost" else host
        try:
            loopback = ipaddress.IPv4Address(host).is_loopback
            portNumber = int(port)
        except ValueError:
            parser.error(f"--connect takes HOST:PORT (an IPv4 host), not {settings.connect!r}")
        if not loopback:
            parser.error("--connect: this test only talks to loopback (127.0.0.0/8) servers")
        if not 0 < portNumber < 65536:
            parser.error(f"--connect: {portNumber} is not a TCP port")
    elif settings.server_pid is not None:
        parser.error("--server-pid only goes with --connect")
    if settings.connect is not None and settings.server_log is not None:
        parser.error("--server-log only goes without --connect")
    return settings


class Soak:
    """One soak run, phase by phase; L{results} holds every figure."""

    def __init__(self, reactor: IReactor, settings: Settings) -> None:
        self.reactor = reactor
        self.settings = settings
        self.run = Run(reactor, settings.clients, settings.rate, settings.duration)
        self.server: SoakServer | None = None
        self.serverPid = settings.server_pid
        self.results: dict[str, Any] = {
            "clients": settings.clients,
            "duration": settings.duration,
            "rate": settings.rate,
            "aborted": None,
        }
        self.rss: dict[str, int | None] = {
            "before": None, "joined": None, "end": None, "after_quit": None,
        }

    def _rss(self, when: str) -> None:
        if self.serverPid is not None:
            self.rss[when] = readRSSKB(self.serverPid)

    def _serverCPU(self) -> float | None:
        return None if self.serverPid is None else readCPUSeconds(self.serverPid)

    async def __call__(self) -> None:
        """Run every phase; whatever happens, close every connection and stop the server."""
        try:
            host, port = await self._startServer()
            self._rss("before")
            await self._join(host, port)
            self._rss("joined")
            await self._load()
            self._rss("end")
            await self._quit()
            self._rss("after_quit")
        except Aborted as error:
            self.results["aborted"] = str(error)
            say(f"ABORTED: {error}")
        finally:
            for client in self.run.clients:
                client.abort()
            if self.server is not None:
                say("stopping the server (SIGTERM)...")
                status = await self.server.stop(30)
                self.results["server_exit_code"] = status
                self.results["server_exit_clean"] = self.server.cleanExit(status)
                self.results["server_exited_early"] = self.server.exitedEarly
                if self.server.exitedEarly:
                    say(f"the server exited before the test stopped it (status {status})")
            self._summarize()

    async def _startServer(self) -> tuple[str, int]:
        settings = self.settings
        serverCPU, generatorCPU = chooseCPUs(settings.pin)
        if settings.connect is not None:
            host, _, portText = settings.connect.rpartition(":")
            say(f"using the server at {settings.connect} (limits are the server's own)")
            self.results["server_exit_code"] = None
            if generatorCPU is not None:
                os.sched_setaffinity(0, {generatorCPU})
            self.results["cpus"] = {"server": None, "generator": generatorCPU}
            return ("127.0.0.1" if host == "localhost" else host), int(portText)
        options, reasons = serverOptions(settings.clients, settings.rate)
        say("starting a server, limits raised for this load (the defaults are for public servers):")
        for reason in reasons:
            say(f"  {reason}")
        if settings.db is not None:
            options += ["--db", settings.db]
        say(f"  history: --db {settings.db or 'chatsvc.db (in the server directory)'}")
        self.results["db"] = settings.db or "chatsvc.db"
        self.server = SoakServer(self.reactor, options, serverCPU, settings.server_log)
        listening = self.server.start()
        self.serverPid = self.server.pid
        if generatorCPU is not None:
            os.sched_setaffinity(0, {generatorCPU})
            say(f"server pinned to CPU {serverCPU}, generator to CPU {generatorCPU}")
        self.results["cpus"] = {"server": serverCPU, "generator": generatorCPU}
        self.results["server_command"] = self.server.command
        port = await within(self.reactor, listening, 30, "the server's listening line")
        say(f"server pid {self.server.pid} listening on 127.0.0.1:{port}")
        return "127.0.0.1", port

    async def _join(self, host: str, port: int) -> None:
        settings = self.settings
        run = self.run
        say(
            f"connecting {settings.clients} clients, "
            f"{settings.connect_concurrency} handshakes at a time..."
        )
        started = time.monotonic()
        semaphore = defer.DeferredSemaphore(settings.connect_concurrency)

        async def joinOne(index: int) -> None:
            client = SoakClient(run, index)
            run.clients.append(client)
            endpoint = TCP4ClientEndpoint(self.reactor, host, port, timeout=10)
            await connectProtocol(endpoint, client)
            await client.joined

        async def joinAll() -> None:
            joins = [semaphore.run(joinOne, index) for index in range(settings.clients)]
            await defer.gatherResults(joins, consumeErrors=True)
            joined = time.monotonic()
            self.results["connect_seconds"] = round(joined - started, 3)
            await run.everyoneJoined

        try:
            await within(
                self.reactor, defer.ensureDeferred(joinAll()), settings.join_timeout,
                f"{settings.clients} clients to join and see each other",
            )
        except defer.FirstError as error:
            # A refused connection, or a client the server turned away or disconnected.
            failure = error.subFailure
            raise Aborted(f"a client failed to join: {failure.getErrorMessage()}") from None
        elapsed = time.monotonic() - started
        self.results["join_seconds"] = round(elapsed, 3)
        say(f"all {settings.clients} joined and seen by all in {elapsed:.2f} s")

    async def _load(self) -> None:
        settings = self.settings
        run = self.run
        # Everything allocated so far lives to the end: keep the collector from rescanning it.
        gc.collect()
        gc.freeze()
        say(f"sending: {settings.rate:g} lines/s from each client for {settings.duration:g} s...")
        run.phase = Phase.LOADING
        cpuBefore, serverBefore = ownCPUSeconds(), self._serverCPU()
        run.start = time.monotonic()
        run.sendEnd = run.start + settings.duration
        period = 1 / settings.rate
        for client in run.clients:
            client.startSending(run.start + random.uniform(0, period))
        await within(
            self.reactor, run.sendingDone, settings.duration + 60, "the clients to finish sending"
        )
        sendingEnded = time.monotonic()
        say(f"sent {sum(c.sent for c in run.clients)} lines; draining...")
        try:
            await within(self.reactor, run.drained, settings.drain_timeout, "deliveries to drain")
            drained = True
        except Aborted:
            drained = False
        end = time.monotonic()
        cpuAfter, serverAfter = ownCPUSeconds(), self._serverCPU()
        wall = end - run.start
        self.results["drained"] = drained
        self.results["drain_seconds"] = round(end - sendingEnded, 3)
        self.results["load_wall_seconds"] = round(wall, 3)
        self.results["generator_cpu_percent"] = round(100 * (cpuAfter - cpuBefore) / wall, 1)
        self.results["server_cpu_percent"] = (
            None if serverBefore is None or serverAfter is None
            else round(100 * (serverAfter - serverBefore) / wall, 1)
        )
        gc.unfreeze()
        if not drained:
            say(f"drain timed out after {settings.drain_timeout:g} s")

    async def _quit(self) -> None:
        run = self.run
        run.phase = Phase.QUITTING
        say("every client sends /quit...")
        for client in run.clients:
            client.quit()
        await within(self.reactor, run.allClosed, 60, "the server to close every connection")

    def _summarize(self) -> None:
        run = self.run
        results = self.results
        sent = [client.sent for client in run.clients]
        totalSent = sum(sent)
        expected = totalSent * (run.size - 1)
        # A sequence number beyond what its sender sent would be a forged delivery.
        if totalSent:
            for client in run.clients:
                for sender, last in enumerate(client.lastSeq):
                    if sender < len(sent) and last > sent[sender]:
                        run.error(client.nick, f"got message {last} of {run.nicks[sender]}, "
                                  f"which sent only {sent[sender]}")
        shortReceivers = sum(
            1 for client in run.clients if client.received < totalSent - client.sent
        )
        span = (
            run.lastDelivery - run.start
            if run.lastDelivery is not None and run.start else 0.0
        )
        rssBefore, rssJoined = self.rss["before"], self.rss["joined"]
        results.update(
            sent=totalSent,
            expected_deliveries=expected,
            delivered=run.delivered,
            lost=expected - run.delivered,
            duplicated=run.duplicated,
            reordered=run.reordered,
            receivers_short=shortReceivers,
            errors=run.errorCount,
            error_lines=run.errors,
            flood_notices=run.floodNotices,
            foreign_lines=run.foreignLines,
            latency_ms=run.latency.summaryMs(),
            send_lag_ms=run.sendLag.summaryMs(),
            offered_deliveries_per_s=round(expected / run.duration, 1),
            deliveries_per_s=round(run.delivered / span, 1) if span > 0 else 0.0,
            rss_kb=self.rss,
            rss_per_connection_kb=(
                round((rssJoined - rssBefore) / run.size, 2)
                if rssBefore is not None and rssJoined is not None else None
            ),
            server_pid=self.serverPid,
        )
        if self.server is not None:
            results["server_log_lines"] = self.server.lines
            results["server_log_trouble"] = self.server.troubleCount
            results["server_log_trouble_lines"] = self.server.trouble
        results.setdefault("generator_cpu_percent", None)
        results.setdefault("server_cpu_percent", None)
        results["passed"] = (
            results["aborted"] is None
            and expected > 0
            and results["lost"] == 0
            and run.duplicated == 0
            and run.reordered == 0
            and run.errorCount == 0
            and (self.server is None or results.get("server_exit_clean") is True)
        )


def describeExit(results: dict[str, Any]) -> str:
    """The server's exit status, and whether it counts as a clean stop."""
    status = results.get("server_exit_code")
    if "server_exit_clean" not in results:
        return "n/a (not our server)"
    if status is None:
        return "did not exit after SIGTERM: killed (not clean)"
    if results.get("server_exited_early"):
        return f"{status} (EXITED BEFORE THE END OF THE TEST: not clean)"
    clean = "clean" if results["server_exit_clean"] else "NOT clean"
    if status < 0:
        return f"{status} (killed by {signal.Signals(-status).name}: {clean})"
    return f"{status} ({clean})"


def formatReport(results: dict[str, Any]) -> str:
    """The results as a readable table."""

    def value(figure: object, unit: str = "") -> str:
        return "n/a" if figure is None else f"{figure}{unit}"

    latency = results["latency_ms"]
    lag = results["send_lag_ms"]
    rss = results["rss_kb"]
    rows = [
        ("clients x duration x rate",
         f"{results['clients']} x {results['duration']:g} s x {results['rate']:g} lines/s"),
        ("join (connect all / all seen)",
         f"{value(results.get('connect_seconds'), ' s')} / "
         f"{value(results.get('join_seconds'), ' s')}"),
        ("lines sent", f"{results['sent']}"),
        ("expected deliveries", f"{results['expected_deliveries']}"),
        ("delivered", f"{results['delivered']}"),
        ("lost / duplicated / reordered",
         f"{results['lost']} / {results['duplicated']} / {results['reordered']}"),
        ("errors (unexpected lines etc.)", f"{results['errors']}"),
        ("flood notices", f"{results['flood_notices']}"),
        ("latency ms p50 / p90 / p99",
         f"{latency['p50']:.2f} / {latency['p90']:.2f} / {latency['p99']:.2f}"),
        ("latency ms p99.9 / max / mean",
         f"{latency['p999']:.2f} / {latency['max']:.2f} / {latency['mean']:.2f}"),
        ("send lag ms p99 / max", f"{lag['p99']:.2f} / {lag['max']:.2f}"),
        ("deliveries/s (achieved / offered)",
         f"{results['deliveries_per_s']:.0f} / {results['offered_deliveries_per_s']:.0f}"),
        ("drain after last send", f"{value(results.get('drain_seconds'), ' s')}"
         + ("" if results.get("drained", True) else " (TIMED OUT)")),
        ("server RSS KB before / joined / end / after quit",
         " / ".join(value(rss[key]) for key in ("before", "joined", "end", "after_quit"))),
        ("server RSS per connection", value(results["rss_per_connection_kb"], " KB")),
        ("server CPU during load", value(results["server_cpu_percent"], " %")),
        ("generator CPU during load", value(results["generator_cpu_percent"], " % of wall")),
        ("server exit code", describeExit(results)),
    ]
    if "server_log_trouble" in results:
        rows.append(("server log warnings/errors", f"{results['server_log_trouble']}"))
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {figure}" for name, figure in rows]
    if results["errors"]:
        lines.append(f"errors (first {len(results['error_lines'])} of {results['errors']}):")
        lines.extend(f"  {line}" for line in results["error_lines"])
    if results.get("server_log_trouble"):
        lines.append("server log warnings/errors (first ones):")
        lines.extend(f"  {line}" for line in results["server_log_trouble_lines"])
    generatorCPU = results["generator_cpu_percent"]
    if generatorCPU is not None and generatorCPU > 85:
        lines.append(
            f"NOTE: the generator used {generatorCPU:g}% of a CPU: it may be the bottleneck, "
            "and latencies include its own queueing."
        )
    if lag["p99"] > 50:
        lines.append(
            f"NOTE: 1% of sends left over {lag['p99']:g} ms late: the generator's loop was busy, "
            "so latencies include some of its own delay (and the load was burstier than planned)."
        )
    if results["aborted"]:
        lines.append(f"ABORTED: {results['aborted']}")
    lines.append("PASS" if results["passed"] else "FAIL")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the soak test; the exit status."""
    settings = parseArguments(sys.argv[1:] if argv is None else argv)
    if settings.seed is not None:
        random.seed(settings.seed)
    files = raiseFileLimit()
    if files < settings.clients + SPARE_FILES:
        say(f"open-files limit {files} is too low for {settings.clients} clients (ulimit -Hn)")
        return 1
    from twisted.internet import reactor as globalReactor

    reactor = cast(IReactor, globalReactor)
    soak = Soak(reactor, settings)
    try:
        runUntilDone(reactor, soak)
    except Unfinished:
        if soak.server is not None:
            soak.server.kill()
        return 1
    results = soak.results
    print()
    print(formatReport(results))
    if settings.json is not None:
        settings.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        say(f"figures written to {settings.json}")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
