"""
End to end, the limits that keep one client from hurting the others: a real C{twistd -n
chatroom} on a free loopback port, and raw sockets standing in for clients good and bad.

Every wait polls for a condition until a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import re
import select
import socket
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import TIMEOUT, Client, Server

WELCOME = "*** Type /help for commands, /quit to leave; you are talking in lobby."


class Peer:
    """
    A raw TCP connection to the server, as C{nc} would make. What arrives is read only when the
    test pumps it, so a peer that is never pumped is a client that does not read.
    """

    def __init__(self, port: int, receiveBuffer: int | None = None) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receiveBuffer is not None:
            # Before connecting, so that the window offered to the server is small from the start.
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        self.socket.settimeout(TIMEOUT)
        self.socket.connect(("127.0.0.1", port))
        self.socket.setblocking(False)
        self.lines: list[str] = []
        """Every complete line received, without its line ending."""
        self.arrivals: list[float] = []
        """When each of L{lines} was read, by L{time.monotonic}."""
        self.received = 0
        """Bytes received in all."""
        self.closed = False
        """Whether the server has closed (or reset) the connection."""
        self._partial = b""
        self._expected = 0

    def fileno(self) -> int:
        return self.socket.fileno()

    def close(self) -> None:
        self.socket.close()

    def pump(self) -> None:
        """Read whatever has arrived, without waiting."""
        while not self.closed:
            try:
                data = self.socket.recv(1 << 16)
            except BlockingIOError:
                return
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return
            now = time.monotonic()
            self.received += len(data)
            *complete, self._partial = (self._partial + data).split(b"\r\n")
            self.lines.extend(line.decode("utf-8") for line in complete)
            self.arrivals.extend(now for _ in complete)

    def send(self, text: str, reading: Iterable[Peer] = ()) -> None:
        """
        Send C{text}, waiting (at most L{TIMEOUT}) while the socket's buffer is full; the
        peers in C{reading} (this one, say) read meanwhile.
        """
        data = memoryview(text.encode("utf-8"))
        reading = list(reading)
        deadline = time.monotonic() + TIMEOUT
        while data:
            try:
                data = data[self.socket.send(data) :]
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the server stopped reading") from None
                live = [peer for peer in reading if not peer.closed]
                select.select(live, [self.socket], [], remaining)
                for peer in live:
                    peer.pump()

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """
        Wait for a line, after those already expected, that matches the regular expression
        C{pattern}.
        """
        found: list[re.Match[str]] = []

        def matched() -> bool:
            while self._expected < len(self.lines):
                match = re.search(pattern, self.lines[self._expected])
                self._expected += 1
                if match:
                    found.append(match)
                    return True
            return False

        waitFor(matched, [self], f"a line matching {pattern!r}", timeout)
        return found[0]


def waitFor(
    condition: Callable[[], bool], peers: Iterable[Peer], what: str, timeout: float = TIMEOUT
) -> None:
    """
    Pump C{peers} until C{condition} holds.

    @raise AssertionError: if C{timeout} seconds pass first, or every peer is closed.
    """
    peers = list(peers)
    deadline = time.monotonic() + timeout
    while True:
        for peer in peers:
            peer.pump()
        if condition():
            return
        remaining = deadline - time.monotonic()
        live = [peer for peer in peers if not peer.closed]
        if remaining <= 0 or not live:
            seen = "\n".join(
                f"  {len(peer.lines)} lines{', closed' if peer.closed else ''}, ending "
                f"{[line[:60] for line in peer.lines[-3:]]}"
                for peer in peers
            )
            raise AssertionError(f"no {what} within {timeout}s; the peers got:\n{seen}")
        select.select(live, [], [], remaining)


def residentKiB(pid: int, field: str = "VmRSS") -> int:
    """
    The resident set size of process C{pid} in KiB: now (C{VmRSS}), or the most it has been
    (C{VmHWM}).
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")


class LimitsTestCase(SynchronousTestCase):
    """Starts a server with C{serverOptions} for each test and stops everything afterwards."""

    serverOptions: tuple[str, ...] = ()

    def setUp(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        self.server = Server(directory, *self.serverOptions)
        self.addCleanup(self.server.stop)
        self.server.waitListening()

    def connect(self, receiveBuffer: int | None = None) -> Peer:
        """A new connection to the server."""
        peer = Peer(self.server.port, receiveBuffer)
        self.addCleanup(peer.close)
        return peer

    def join(self, nick: str, *others: Peer) -> Peer:
        """A connection that has joined as C{nick}, once every one of C{others} has seen it."""
        peer = self.connect()
        self.answer(peer, nick)
        peer.expect(f"^{re.escape(nick)} connected to server!$")
        peer.expect(f"^{re.escape(WELCOME)}$")
        for other in others:
            other.expect(f"^{re.escape(nick)} joined!$")
        return peer

    def answer(self, peer: Peer, nick: str) -> None:
        """Wait for C{GET_NAME} on C{peer} and answer it with C{nick}."""
        peer.expect("^GET_NAME$")
        peer.send(nick + "\n")


class SlowReaderTests(LimitsTestCase):
    """A member who stops reading is cut; nobody else notices anything."""

    maxSendQueue = 256 * 1024
    rate = 300
    """Lines per second the sender sends: enough to fill the kernel's buffers for the slow
    reader (some megabytes over loopback) and then the server's queue within the run."""
    duration = 3.0
    serverOptions = (
        "--max-send-queue", str(maxSendQueue), "--flood-rate", "1000", "--flood-burst", "2000",
        "--address-flood-rate", "1000", "--address-flood-burst", "2000",
    )

    def test_slowReaderCut(self) -> None:
        """
        A member who joins and then never reads is cut once its send queue passes the bound,
        and the room is told why; meanwhile every line the sender sends reaches a reading member,
        in order and promptly, and the server's memory stays bounded.
        """
        reader = self.join("Reader")
        sender = self.join("Sender", reader)
        pid = self.server.process.pid
        rssStart = residentKiB(pid)
        padding = "x" * 3993  # a 4000-byte line: five digits, a space, then this
        # The server keeps the last 1024 lines it rendered (see renderEvent): fill that cache
        # first, so that its fixed size is not mistaken for growth.
        warmUp = 1100
        sender.send("".join(f"w{n:04d} {padding}\n" for n in range(warmUp)), [reader, sender])
        waitFor(
            lambda: f"Sender: w{warmUp - 1:04d} {padding}" in reader.lines[-1:],
            [reader, sender],
            "the warm-up lines",
        )
        slow = self.connect(receiveBuffer=4096)
        self.answer(slow, "Slow")
        waitFor(lambda: "Slow joined!" in reader.lines, [reader, sender], "Slow joining")
        rssBefore = residentKiB(pid)

        total = int(self.rate * self.duration)
        sentAt: list[float] = []
        start = time.monotonic()
        while len(sentAt) < total:
            due = min(total, int((time.monotonic() - start) * self.rate) + 1)
            while len(sentAt) < due:
                sender.send(f"{len(sentAt):05d} {padding}\n", [reader, sender])
                sentAt.append(time.monotonic())
            reader.pump()
            sender.pump()
            nextLine = start + len(sentAt) / self.rate
            select.select([reader, sender], [], [], max(0.0, nextLine - time.monotonic()))

        def fromSender() -> list[tuple[str, float]]:
            return [
                (line, arrival)
                for line, arrival in zip(reader.lines, reader.arrivals)
                if line.startswith("Sender: ") and not line.startswith("Sender: w")
            ]

        waitFor(
            lambda: len(fromSender()) == total
            and "Slow left! (send queue exceeded)" in reader.lines,
            [reader, sender],
            "delivery of every line and the cut",
        )
        rssAfter = residentKiB(pid)
        rssPeak = residentKiB(pid, "VmHWM")
        queued = int(self.server.stdout.expect(r"connection_cut .*queued=(\d+)").group(1))
        waitFor(lambda: slow.closed, [slow], "the end of the slow reader's connection")

        delivered = fromSender()
        self.assertEqual(
            [line for line, _ in delivered],
            [f"Sender: {n:05d} {padding}" for n in range(total)],
        )
        latencies = sorted(arrival - sent for (_, arrival), sent in zip(delivered, sentAt))
        self.assertIn("Slow left! (send queue exceeded)", sender.lines)
        self.assertNotIn("Reader left!", sender.lines)
        self.assertNotIn("Sender left!", reader.lines)
        self.assertFalse(reader.closed or sender.closed)
        print(
            f"\nslow reader: {total} lines of 4000 bytes at {self.rate}/s; "
            f"server RSS {rssStart} KiB at start, {rssBefore} KiB after warm-up, "
            f"{rssAfter} KiB after the run ({rssAfter - rssBefore:+d} KiB), peak {rssPeak} KiB; "
            f"delivery latency p50 "
            f"{statistics.median(latencies) * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms; "
            f"slow reader got {slow.received} bytes; queued at the cut: {queued} bytes"
        )
        self.assertLess(latencies[-1], 2.0)
        self.assertGreater(queued, self.maxSendQueue)
        # The cut comes with the write that would pass the bound: one line, or the lines of
        # one read of the sender's that held several (they go to each member in one write).
        self.assertLess(queued, self.maxSendQueue + 16 * 4100)
        self.assertLess(rssAfter - rssBefore, 4 * 1024)
        self.assertLess(rssPeak - rssBefore, 4 * 1024)


class BusyRoomTests(LimitsTestCase):
    """With the default limits, a busy room cuts nobody who reads."""

    def test_everyonePastes(self) -> None:
        """
        Five members paste a flood burst (20 lines) of 4000-byte lines each, all at once:
        every member gets every other member's lines, in order, and nobody is cut.
        """
        reader = self.join("Reader")
        members: list[Peer] = []
        for n in range(5):
            members.append(self.join(f"Paster{n}", reader, *members))
        everyone = [reader, *members]
        pastes = [
            "".join(f"{n} {line:02d} {'y' * 3990}\n" for line in range(20)) for n in range(5)
        ]
        for member, paste in zip(members, pastes):
            member.send(paste, everyone)

        def expected(peer: Peer) -> list[str]:
            return [
                f"Paster{n}: {line}"
                for n, paste in enumerate(pastes)
                if members[n] is not peer
                for line in paste.splitlines()
            ]

        def chat(peer: Peer) -> list[str]:
            return [line for line in peer.lines if line.startswith("Paster") and ": " in line]

        waitFor(
            lambda: all(sorted(chat(peer)) == sorted(expected(peer)) for peer in everyone),
            everyone,
            "every line at every member",
        )
        for peer in everyone:
            lines = chat(peer)
            for n, (member, paste) in enumerate(zip(members, pastes)):
                # Each member's lines arrive in the order they were sent.
                self.assertEqual(
                    [line for line in lines if line.startswith(f"Paster{n}: ")],
                    [] if member is peer else [f"Paster{n}: {line}" for line in paste.splitlines()],
                )
            self.assertEqual([line for line in peer.lines if "left!" in line], [])
            self.assertFalse(peer.closed)
        reader.send("/who\n")
        reader.expect(r"^\*\*\* Members \(6\): ")


class ConnectionCapTestCase(LimitsTestCase):
    """Connections past a cap get one line and are closed; the members already in never notice."""

    def assertRefused(self, message: str) -> None:
        """A new connection gets exactly one line, C{*** Disconnected: message}, and is closed."""
        refused = self.connect()
        waitFor(lambda: refused.closed, [refused], "the refused connection closing")
        self.assertEqual(refused.lines, [f"*** Disconnected: {message}"])
        self.assertEqual(refused.received, len(f"*** Disconnected: {message}\r\n"))

    def assertUndisturbed(self, alice: Peer, bob: Peer) -> None:
        """Alice and Bob, both joined, have seen nothing since Bob joined, and still chat."""
        self.assertEqual(alice.lines[-1], "Bob joined!")
        self.assertEqual(bob.lines[-1], WELCOME)
        seen = len(bob.lines)
        alice.send("still here\n")
        bob.expect("^Alice: still here$")
        self.assertEqual(bob.lines[seen:], ["Alice: still here"])
        bob.send("me too\n")
        alice.expect("^Bob: me too$")
        self.assertEqual(alice.lines[-2:], ["Bob joined!", "Bob: me too"])
        self.assertFalse(alice.closed or bob.closed)


class PerAddressCapTests(ConnectionCapTestCase):
    """The cap on connections from one address."""

    serverOptions = ("--max-connections-per-address", "3")

    def test_perAddress(self) -> None:
        """
        With three connections open from 127.0.0.1, a fourth is told there are too many from
        its address, and closed; once one closes, a new one gets in.
        """
        alice = self.join("Alice")
        bob = self.join("Bob", alice)
        waiting = self.connect()
        waiting.expect("^GET_NAME$")
        self.assertRefused("too many connections from your address")
        self.assertUndisturbed(alice, bob)
        self.assertEqual(waiting.lines, ["GET_NAME"])
        waiting.close()
        self.server.stdout.expect(r"connection_closed .*connections=2")
        self.connect().expect("^GET_NAME$")


class GlobalCapTests(ConnectionCapTestCase):
    """The cap on connections in all."""

    serverOptions = ("--max-connections", "3")

    def test_global(self) -> None:
        """
        With three connections open, a fourth is told the server is full, and closed; once one
        closes, a new one gets in.
        """
        alice = self.join("Alice")
        bob = self.join("Bob", alice)
        waiting = self.connect()
        waiting.expect("^GET_NAME$")
        self.assertRefused("the server is full, try again later")
        self.assertUndisturbed(alice, bob)
        waiting.close()
        self.server.stdout.expect(r"connection_closed .*connections=2")
        self.connect().expect("^GET_NAME$")


class NameTimeoutTests(LimitsTestCase):
    """A connection that never chooses a nickname is told why and closed."""

    serverOptions = ("--name-timeout", "1")

    def test_noNickname(self) -> None:
        """
        Silent for a second after C{GET_NAME}, a connection is told so and closed; a member who
        answered in time stays.
        """
        alice = self.join("Alice")
        silent = self.connect()
        silent.expect("^GET_NAME$")
        connected = time.monotonic()
        waitFor(lambda: silent.closed, [silent], "the silent connection closing", timeout=10)
        waited = time.monotonic() - connected
        self.assertEqual(silent.lines, ["GET_NAME", "*** Disconnected: no nickname within 1 second"])
        self.assertGreater(waited, 0.5)
        self.assertLess(waited, 5)
        alice.send("/who\n")
        alice.expect(r"^\*\*\* Members \(1\): Alice$")
        self.assertFalse(alice.closed)


class OneAddressAttackTests(LimitsTestCase):
    """
    Attacks from many connections from one address, against a server with its default limits,
    in the shape they were tried: a member who reads is never cut.
    """

    serverOptions = ("--db", ":memory:")

    def test_whisperBurstsAtAReader(self) -> None:
        """
        Forty-nine connections from one address each send a flood burst of private messages
        full of C1 control characters to one member, who reads with the bundled client: half
        of them as long as a line may be (2,040 C1 characters, refused as too long once
        shown), half as long as may be shown (512 of them: 4 KB each). The reader is not cut,
        and still chats afterwards.
        """
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        reader = Client(directory, "Reader", self.server.port)
        self.addCleanup(reader.stop)
        reader.stdout.expect("^Reader connected to server!$")
        reader.stdout.expect(re.escape(WELCOME))
        attackers = [self.join(f"a{n}") for n in range(49)]
        huge, longest = "\x80" * 2040, "\x80" * 512
        for attacker in attackers:
            attacker.send("".join(f"/msg Reader {huge if n % 2 else longest}\n" for n in range(20)))
        # What the address's burst lets through arrives at once; the rest would follow at
        # the address's rate (and the reader's own lines wait with them: it shares the
        # address). The attackers go once the reader has had a good share.
        for _ in range(20):
            reader.stdout.expect(r"^\*a\d+\* (<U\+0080>){512}$")
        for attacker in attackers:
            attacker.close()
        self.server.stdout.expect(r"connection_closed .*connections=1$")
        reader.send("/who\n")
        reader.stdout.expect(r"^\*\*\* Members \(1\): Reader$")
        self.assertIsNone(reader.process.poll())
        log = "\n".join(self.server.stdout.lines)
        self.assertNotIn("connection_cut", log)
        self.assertNotIn("Reader left", log)


class HistorySpamTests(LimitsTestCase):
    """
    Members who ask for long replies and never read them cost the server little: with the
    flood limits out of the way (so that nothing but the pacing of replies bounds it).
    """

    serverOptions = (
        "--db", ":memory:", "--flood-rate", "1000", "--flood-burst", "1000",
        "--address-flood-rate", "100000", "--address-flood-burst", "100000",
    )

    def test_historySpamByNonReaders(self) -> None:
        """
        Forty connections from one address that never read each send C{/history 100} twenty
        times (8 MB of replies each, 320 MB in all): the server's memory grows by a few
        megabytes, and a member who reads chats on undisturbed.
        """
        writer = self.join("Writer")
        watcher = self.join("Watcher", writer)
        # The lobby's history: 100 lines of 4 KB.
        writer.send("".join(f"{n:03d} {'h' * 3990}\n" for n in range(100)), [watcher])
        waitFor(
            lambda: f"Writer: 099 {'h' * 3990}" in watcher.lines,
            [watcher, writer],
            "the history to fill",
        )
        pid = self.server.process.pid
        before = residentKiB(pid)
        spammers = []
        for n in range(40):
            spammer = self.connect(receiveBuffer=4096)
            self.answer(spammer, f"s{n}")
            spammers.append(spammer)
        for spammer in spammers:
            spammer.socket.sendall(b"/history 100\n" * 20)
        # Three round trips of a member who reads: the spammers' lines, sent first, have been
        # read (and answered as far as they will be) by then.
        for n in range(3):
            watcher.send(f"/msg Writer ping {n}\n")
            writer.expect(f"^\\*Watcher\\* ping {n}$")
        grown = residentKiB(pid, "VmHWM") - before
        print(f"\nhistory spam: 40 non-readers x 20 x /history 100; server RSS peak +{grown} KiB")
        self.assertLess(grown, 32 * 1024)
        self.assertNotIn("Watcher left!", writer.lines)
