#!/usr/bin/env python3
"""
What 500 members logging in at once cost the others: a room of members, all logged in to
accounts, chatting at a steady rate, while a storm of further members logs in (each answering
C{GET_PASSWORD}, so that each costs the server one argon2id check of a password).

    python benchmarks/loginstorm.py                      # 50 chatting, 500 logging in
    python benchmarks/loginstorm.py --chatters 100 --storm 1000 --json /tmp/storm.json

The server is chatsvc (twistd, epoll), with a database made beforehand holding an account for
every client (benchmarks/fanout.py's C{accountsDatabase}: the server's own argon2id
parameters). The chatters log in first, then each sends a line every 1/C{--rate} seconds,
stamped with the time it was sent, in a room of their own (the storm lands in the lobby, so that
what is measured is what the logins cost, not a bigger room); every chatter reads every other's
lines, and the latency of
each delivery is recorded against the phase it was sent in: C{before} the storm, C{during} it
(from the first storm connection until the last storm member is welcomed), and C{after}. The
storm's members connect all at once, on the same loopback address as everyone. Printed: the
latency median and p99 of each phase, how long the storm took, and logins per second.

Loopback only; the server's limits raised for one address (every client is 127.0.0.1), as
fanout.py raises them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory
from twisted.internet.task import LoopingCall
from twisted.protocols.basic import LineReceiver

import fanout
from harness import (
    IReactor,
    ServerProcess,
    addressFloodOptions,
    chatroomCommand,
    chooseCPUs,
    runUntilDone,
    say,
    within,
)
from relay import installEpoll

PHASES = ("before", "during", "after")


class Member(LineReceiver):
    """One client: logs in, then (if a chatter) sends stamped lines and times the others'."""

    delimiter = b"\n"

    def __init__(self, storm: Storm, nick: bytes, chatter: bool) -> None:
        self.storm = storm
        self.nick = nick
        self.chatter = chatter
        self.welcomed: Deferred[None] = Deferred()
        self.sent = 0

    def lineReceived(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if line == b"GET_NAME":
            self.sendLine(self.nick)
        elif line == b"GET_PASSWORD":
            self.sendLine(fanout.PASSWORD)
        elif line == self.nick + b" connected to server!":
            if self.chatter:
                # A room of their own: the storm lands in the lobby, so that what is measured
                # is the logins' cost, not a room eleven times bigger.
                self.sendLine(b"/join talk")
                self.sendLine(b"/part lobby")
            if not self.welcomed.called:
                self.welcomed.callback(None)
        elif line.startswith(b"*** Error"):
            self.storm.errors.append(f"{self.nick.decode()}: {line.decode(errors='replace')}")
        elif self.chatter and b": t=" in line:
            # "<nick>: t=<sent, ns> p=<phase>"
            _, _, rest = line.partition(b": t=")
            stamp, _, phase = rest.partition(b" p=")
            try:
                sent = int(stamp)
            except ValueError:
                return
            self.storm.latencies[phase.decode()].append((time.monotonic_ns() - sent) / 1e6)

    def say(self) -> None:
        self.sent += 1
        stamp = time.monotonic_ns()
        self.sendLine(b"t=%d p=%s" % (stamp, self.storm.phase.encode()))


class Storm:
    """The whole run: the server, the chatters, the storm, and what was measured."""

    def __init__(self, reactor: IReactor, settings: argparse.Namespace) -> None:
        self.reactor = reactor
        self.settings = settings
        self.phase = "before"
        self.latencies: dict[str, list[float]] = {phase: [] for phase in PHASES}
        self.errors: list[str] = []

    def connect(self, port: int, nick: bytes, chatter: bool) -> Member:
        member = Member(self, nick, chatter)
        factory = ClientFactory()
        factory.protocol = lambda: member
        self.reactor.connectTCP("127.0.0.1", port, factory)
        return member

    async def run(self) -> dict[str, Any]:
        settings = self.settings
        clients = settings.chatters + settings.storm
        database = fanout.accountsDatabase(clients)
        flood, _ = addressFloodOptions(clients, 1000, 1000)
        options = [
            "--db", str(database),
            "--max-connections", str(clients + 16),
            "--max-connections-per-address", str(clients + 16),
            "--backlog", str(clients + 16),
            "--flood-rate", "1000", "--flood-burst", "1000",
            "--name-timeout", "600",
            *flood,
        ]
        serverCPU, _ = chooseCPUs(settings.pin)
        server = ServerProcess(
            self.reactor, "the server",
            chatroomCommand(options, twistdOptions=["--reactor=epoll"]), serverCPU,
        )
        port = await server.start()
        try:
            return await self._measure(port)
        finally:
            await server.stop(10)

    async def _measure(self, port: int) -> dict[str, Any]:
        settings = self.settings
        chatters = [
            self.connect(port, fanout.NICK_FORMAT % number, True) for number in range(settings.chatters)
        ]
        for member in chatters:
            await within(self.reactor, member.welcomed, 60, "the chatters to log in")
        interval = 1 / settings.rate
        timers = []
        for index, member in enumerate(chatters):
            timer = LoopingCall(member.say)
            timer.clock = self.reactor
            self.reactor.callLater(interval * index / len(chatters), timer.start, interval, True)
            timers.append(timer)
        await sleep(self.reactor, settings.calm)
        self.phase = "during"
        started = time.monotonic()
        storm = [
            self.connect(port, fanout.NICK_FORMAT % number, False)
            for number in range(settings.chatters, settings.chatters + settings.storm)
        ]
        for member in storm:
            await within(self.reactor, member.welcomed, 300, "the storm to log in")
        took = time.monotonic() - started
        self.phase = "after"
        await sleep(self.reactor, settings.calm)
        for timer in timers:
            if timer.running:
                timer.stop()
        await sleep(self.reactor, 0.5)  # the last lines arrive
        results: dict[str, Any] = {
            "chatters": settings.chatters,
            "storm": settings.storm,
            "rate": settings.rate,
            "storm_seconds": round(took, 3),
            "logins_per_second": round(settings.storm / took, 1),
            "errors": self.errors[:10],
        }
        for phase in PHASES:
            values = sorted(self.latencies[phase])
            results[phase] = {
                "deliveries": len(values),
                "p50_ms": round(statistics.median(values), 3) if values else None,
                "p99_ms": round(values[int(len(values) * 0.99)], 3) if values else None,
                "max_ms": round(values[-1], 3) if values else None,
            }
        return results


def sleep(reactor: IReactor, seconds: float) -> Deferred[None]:
    waiting: Deferred[None] = Deferred()
    reactor.callLater(seconds, waiting.callback, None)
    return waiting


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Chat latency while members log in all at once.")
    parser.add_argument("--chatters", type=int, default=50, help="members chatting (default 50)")
    parser.add_argument("--storm", type=int, default=500, help="members logging in at once (default 500)")
    parser.add_argument("--rate", type=float, default=2.0, help="lines/s per chatter (default 2)")
    parser.add_argument("--calm", type=float, default=3.0, help="seconds before and after the storm (default 3)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin server and generator to CPUs")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    settings = parser.parse_args(argv)
    installEpoll()
    from twisted.internet import reactor

    storm = Storm(cast(IReactor, reactor), settings)
    results = runUntilDone(cast(IReactor, reactor), storm.run)
    say(
        f"{settings.chatters} members chatting at {settings.rate:g} lines/s each, "
        f"{settings.storm} logging in at once"
    )
    say(f"  storm: {results['storm_seconds']} s until the last was welcomed "
        f"({results['logins_per_second']} logins/s)")
    for phase in PHASES:
        figures = results[phase]
        say(f"  {phase:6}  {figures['deliveries']:7,} deliveries  p50 {figures['p50_ms']} ms  "
            f"p99 {figures['p99_ms']} ms  max {figures['max_ms']} ms")
    if results["errors"]:
        say(f"  errors: {results['errors']}")
    if settings.json is not None:
        settings.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
