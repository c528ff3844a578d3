#!/usr/bin/env python3
"""
What members who ask for long replies over and over cost everyone else, measured against a real
server with its default limits: run by hand (it is not a unit test).

    python benchmarks/abuse.py                          # /rooms, 999 rooms with long topics
    python benchmarks/abuse.py --attack history         # /history 100 of 4 KB lines
    python benchmarks/abuse.py --attackers 50 --duration 10 --json abuse.json

What it does, in order:

 1. Starts its own server, C{twistd --nodaemon --pidfile= chatroom --listen
    tcp:0:interface=127.0.0.1 --db :memory: --rooms-per-member 20}, every other limit at its
    default (the room budget is raised so that the setup below is quick; it plays no part in
    the attack).
 2. Sets the stage from loopback addresses of their own (127.0.1.N), so that it spends none of
    the attackers' address's budgets: for C{--attack rooms}, C{--rooms} rooms, each with a topic
    of 300 characters (so one unpaged C{/rooms} would be over 300 KB); for C{--attack history},
    100 lines of 4,000 characters in the lobby (so C{/history 100} is 400 KB).
 3. Two probe members from 127.0.0.2, C{Pinger} and C{Ponger}: Pinger sends Ponger a private
    message with its send time four times a second, and Ponger times each one.
 4. C{--attackers} connections from 127.0.0.1 join, and each sends 1,000 C{/rooms} (or
    C{/history 100}) lines at once, then reads everything that comes, for C{--duration}
    seconds: the flood limits decide how fast the server takes their requests.
 5. Reports the server's CPU use and peak memory during the attack, what the attackers got,
    and the probes' latency; then stops the server with SIGTERM.

Every wait is bounded; it only talks to loopback addresses. The exit status is 0 if the server
stayed up and every probe message arrived, else 1.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import LISTENING, chatroomCommand, childEnvironment, readCPUSeconds, readRSSKB

TIMEOUT = 30.0
"""Seconds any one step of the setup may take."""


class Peer:
    """A non-blocking loopback connection from C{source}, its lines read when pumped."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind((source, 0))
        self.socket.settimeout(TIMEOUT)
        self.socket.connect(("127.0.0.1", port))
        self.socket.setblocking(False)
        self.lines: list[str] = []
        self.arrivals: list[float] = []
        self.received = 0
        self.closed = False
        self._partial = b""
        self._unsent = b""

    def fileno(self) -> int:
        return self.socket.fileno()

    def send(self, text: str) -> None:
        """Queue C{text}; it goes out as the socket takes it (see L{flush})."""
        self._unsent += text.encode("utf-8")
        self.flush()

    def flush(self) -> None:
        """Send what the socket takes now of what is queued."""
        while self._unsent and not self.closed:
            try:
                self._unsent = self._unsent[self.socket.send(self._unsent) :]
            except BlockingIOError:
                return
            except OSError:
                self.closed = True

    def pump(self) -> None:
        """Read whatever has arrived."""
        while not self.closed:
            try:
                data = self.socket.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno != errno.ECONNRESET:
                    raise
                data = b""
            if not data:
                self.closed = True
                return
            now = time.monotonic()
            self.received += len(data)
            *complete, self._partial = (self._partial + data).split(b"\r\n")
            self.lines.extend(line.decode("utf-8", "replace") for line in complete)
            self.arrivals.extend(now for _ in complete)

    def close(self) -> None:
        self.socket.close()


def pumpUntil(
    peers: list[Peer], done: Callable[[], bool], what: str, timeout: float = TIMEOUT
) -> None:
    """Pump C{peers} until C{done()} is true, or fail after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SystemExit(f"abuse: no {what} within {timeout:g} s")
        live = [peer for peer in peers if not peer.closed]
        writing = [peer for peer in live if peer._unsent]
        select.select(live, writing, [], min(remaining, 0.05))
        for peer in live:
            peer.flush()
            peer.pump()


def join(port: int, nick: str, source: str) -> Peer:
    """A member who has joined as C{nick}, from C{source}."""
    peer = Peer(port, source)
    pumpUntil([peer], lambda: "GET_NAME" in peer.lines, "GET_NAME")
    peer.send(nick + "\n")
    pumpUntil([peer], lambda: any("/quit to leave;" in line for line in peer.lines), "welcome")
    return peer


def startServer(directory: Path, setup: list[str]) -> tuple[subprocess.Popen[bytes], int, Path]:
    """The server, with C{setup}'s options, its port and its log file."""
    log = directory / "server.log"
    options = ["--db", ":memory:", *setup]
    with log.open("wb") as output:
        process = subprocess.Popen(
            chatroomCommand(options), cwd=directory, env=childEnvironment(),
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        match = re.search(LISTENING, log.read_text(errors="replace"))
        if match:
            return process, int(match.group(1)), log
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"abuse: the server did not start:\n{log.read_text(errors='replace')}")


def setStage(port: int, attack: str, rooms: int) -> None:
    """Make the rooms (or the history) the attack asks for, from addresses of their own."""
    builders: list[Peer] = []
    expected: list[int] = []
    if attack == "rooms":
        perBuilder = 20  # the room budget the server is given for the setup
        for first in range(0, rooms, perBuilder):
            builder = join(port, f"builder{first}", f"127.0.1.{len(builders) + 1}")
            count = min(perBuilder, rooms - first)
            builder.send(
                "".join(f"/join r{n:04d}\n/topic {'t' * 300}\n" for n in range(first, first + count))
            )
            builders.append(builder)
            expected.append(count)
        pattern = "set the topic"
    else:
        witness = join(port, "witness", "127.0.1.100")
        for n in range(5):
            builder = join(port, f"builder{n}", f"127.0.1.{n + 1}")
            builder.send("".join(f"{n}{line:02d} {'h' * 3996}\n" for line in range(20)))
            builders.append(builder)
        builders, expected, pattern = [witness, *builders], [100] + [0] * 5, "builder"

    def done() -> bool:
        return all(
            sum(pattern in line for line in builder.lines) >= count
            for builder, count in zip(builders, expected)
        )

    pumpUntil(builders, done, "stage set", timeout=120)
    for builder in builders:
        builder.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attack", choices=["rooms", "history"], default="rooms")
    parser.add_argument("--attackers", type=int, default=50)
    parser.add_argument("--rooms", type=int, default=999)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--setup-options",
        default="--rooms-per-member 20",
        help="server options for setting the stage (default: %(default)s); '' for a server "
        "that has no room budget",
    )
    arguments = parser.parse_args()
    request = "/rooms\n" if arguments.attack == "rooms" else "/history 100\n"

    with tempfile.TemporaryDirectory(prefix="chatsvc-abuse-") as scratch:
        process, port, log = startServer(Path(scratch), arguments.setup_options.split())
        try:
            setStage(port, arguments.attack, arguments.rooms)
            pinger = join(port, "Pinger", "127.0.0.2")
            ponger = join(port, "Ponger", "127.0.0.2")
            attackers = [
                join(port, f"a{n}", "127.0.0.1") for n in range(arguments.attackers)
            ]
            peers = [pinger, ponger, *attackers]
            for peer in peers:
                peer.lines.clear()
                peer.arrivals.clear()
            cpuBefore = readCPUSeconds(process.pid) or 0.0
            rssBefore = readRSSKB(process.pid) or 0
            rssPeak = rssBefore
            for attacker in attackers:
                attacker.send(request * 1000)
            started = time.monotonic()
            sent = 0
            while (now := time.monotonic()) < started + arguments.duration:
                if sent < (now - started) * 4:
                    pinger.send(f"/msg Ponger {time.monotonic():.6f}\n")
                    sent += 1
                live = [peer for peer in peers if not peer.closed]
                select.select(live, [peer for peer in live if peer._unsent], [], 0.01)
                for peer in live:
                    peer.flush()
                    peer.pump()
                rssPeak = max(rssPeak, readRSSKB(process.pid) or 0)
            elapsed = time.monotonic() - started
            cpu = (readCPUSeconds(process.pid) or 0.0) - cpuBefore
            pumpUntil(
                peers,
                lambda: sum(line.startswith("*Pinger* ") for line in ponger.lines) >= sent,
                "probe messages",
                timeout=60,
            )
            latencies = [
                (arrival - float(line.split()[1])) * 1000
                for line, arrival in zip(ponger.lines, ponger.arrivals)
                if line.startswith("*Pinger* ")
            ]
            replies = sum(
                line.startswith(("*** Rooms (", "*** History of")) for a in attackers for line in a.lines
            )
            results = {
                "attack": arguments.attack,
                "attackers": arguments.attackers,
                "duration_s": round(elapsed, 2),
                "server_cpu_percent": round(100 * cpu / elapsed, 1),
                "server_rss_kb_before": rssBefore,
                "server_rss_kb_peak": rssPeak,
                "replies_received": replies,
                "reply_bytes_per_s": round(sum(a.received for a in attackers) / elapsed),
                "attackers_cut": sum(a.closed for a in attackers),
                "probe_messages": len(latencies),
                "probe_sent": sent,
                "probe_latency_ms": {
                    "p50": round(statistics.median(latencies), 2),
                    "p99": round(percentile(latencies, 0.99), 2),
                    "max": round(max(latencies), 2),
                },
            }
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                status = process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                status = -1
        results["server_exit_status"] = status
    ok = status == 0 and results["probe_messages"] == results["probe_sent"]
    results["passed"] = ok
    print(
        f"{arguments.attackers} connections from one address sending {request.strip()!r} "
        f"as fast as the flood limits take it, {results['duration_s']} s:\n"
        f"  server CPU {results['server_cpu_percent']}%, RSS {rssBefore} KB before, "
        f"{rssPeak} KB at most\n"
        f"  attackers: {replies} replies, {results['reply_bytes_per_s']:,} bytes/s, "
        f"{results['attackers_cut']} cut\n"
        f"  probe (another address): {len(latencies)} of {sent} messages, latency p50 "
        f"{results['probe_latency_ms']['p50']} ms, p99 {results['probe_latency_ms']['p99']} ms, "
        f"max {results['probe_latency_ms']['max']} ms\n"
        f"  server: exit status {status}"
    )
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
