"""
The fan-out benchmark (benchmarks/fanout.py) and its reference relay (benchmarks/relay.py), run
tiny: each workload against both servers, every delivery checked. The real sizes are run by hand;
this keeps the harness itself working. How its clients count join notices is also checked on
lines in memory, summaries of a crowded room among them.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.sessions.outbox import FLUSH_CHUNK
from tests.processes import ROOT, environment, runScript

BENCHMARKS = ROOT / "benchmarks"
FANOUT = BENCHMARKS / "fanout.py"
RELAY = BENCHMARKS / "relay.py"

# The scripts import their shared module as "harness", found in their own folder, which Python
# puts first on sys.path when it runs one by path; importing one here needs the folder there too.
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from fanout import BenchClient, Phase, Run  # noqa: E402
TIMEOUT = 90.0
"""Seconds one small benchmark run may take (each needs a few)."""


class FanoutTests(SynchronousTestCase):
    """benchmarks/fanout.py as a person would run it, with tiny settings."""

    def bench(
        self, *arguments: str, targets: tuple[str, ...] = ("chatsvc", "relay")
    ) -> dict[str, Any]:
        """
        Run the benchmark against C{targets} (both by default); its exit status must be 0.
        Returns the results of its one workload by target, after checking what every report
        holds.
        """
        if targets != ("chatsvc", "relay"):
            arguments += ("--target", ",".join(targets))
        output, document = runScript(self, FANOUT, *arguments, timeout=TIMEOUT)
        self.assertIn("chatsvc/relay", output)
        self.assertTrue(document["passed"], output)
        machine = document["machine"]
        self.assertGreater(machine["cpu_count"], 0)
        self.assertTrue(machine["python"])
        self.assertTrue(machine["twisted"])
        [workload] = document["workloads"]
        results: dict[str, Any] = workload["results"]
        self.assertEqual(sorted(results), sorted(targets))
        for target, figures in results.items():
            self.assertIsNone(figures["aborted"], f"{target}: {output}")
            self.assertEqual(figures["errors"], 0, f"{target}: {figures['error_lines']}")
            self.assertGreater(figures["generator_cpu_percent"], 0, target)
        self.assertTrue(document["table"])
        ratios = ["history/chatsvc"] if "history" in targets else []
        if "accounts" in targets and "history" in targets:
            ratios.append("accounts/history")
        for row in document["table"]:
            self.assertEqual(
                sorted(row), sorted(["figure", "ratio", "workload", *targets, *ratios])
            )
        return results

    def assertDelivered(self, figures: dict[str, Any], clients: int) -> None:
        """Every line sent reached every other client once, in order."""
        self.assertGreater(figures["sent"], 0)
        self.assertEqual(figures["expected_deliveries"], figures["sent"] * (clients - 1))
        self.assertEqual(figures["delivered"], figures["expected_deliveries"])
        self.assertEqual(
            (figures["lost"], figures["duplicated"], figures["reordered"]), (0, 0, 0)
        )
        self.assertTrue(figures["drained"])
        self.assertGreater(figures["deliveries_per_s"], 0)

    def test_openLoop(self) -> None:
        """
        Five clients, all sending five lines a second for a second, three of them checking
        every line and two counting theirs: every line delivered, with latencies and CPU
        figures.
        """
        results = self.bench(
            "--workload", "openloop", "--clients", "5", "--rate", "5", "--duration", "1",
            "--checked", "3",
        )
        for figures in results.values():
            self.assertDelivered(figures, 5)
            self.assertGreater(figures["offered_deliveries_per_s"], 0)
            latency = figures["latency_ms"]
            # Latencies are the checking receivers': three, each hearing four senders.
            self.assertEqual(latency["count"], 3 * 4 * figures["sent"] // 5)
            for name in ("p50", "p99", "max"):
                self.assertGreater(latency[name], 0, name)
            self.assertLessEqual(latency["p50"], latency["max"])
            # A hundred lines may cost the server less than one clock tick (10 ms) of CPU.
            self.assertGreaterEqual(figures["server_cpu_percent"], 0)

    def test_loggedIn(self) -> None:
        """
        Against the accounts target, every client logs in to an account of its own (the
        database made beforehand), and every line is delivered as to guests.
        """
        results = self.bench(
            "--workload", "openloop", "--clients", "5", "--rate", "5", "--duration", "1",
            targets=("chatsvc", "relay", "history", "accounts"),
        )
        self.assertIn("an account for every client", " ".join(results["accounts"]["server_settings"]))
        for figures in results.values():
            self.assertDelivered(figures, 5)

    def test_loginStorm(self) -> None:
        """benchmarks/loginstorm.py, small: chatters' latencies in each phase, and the storm's time."""
        output, document = runScript(
            self, BENCHMARKS / "loginstorm.py", "--chatters", "4", "--storm", "20", "--calm", "0.5",
            timeout=TIMEOUT,
        )
        self.assertEqual(document["errors"], [], output)
        self.assertGreater(document["storm_seconds"], 0)
        for phase in ("before", "during", "after"):
            self.assertGreater(document[phase]["deliveries"], 0, phase)
            self.assertLessEqual(document[phase]["p50_ms"], document[phase]["max_ms"])

    def test_terminal(self) -> None:
        """benchmarks/terminal.py, small: lines drawn per second, each with bytes on the screen."""
        output, document = runScript(
            self, BENCHMARKS / "terminal.py", "--lines", "200", "--runs", "1", timeout=TIMEOUT
        )
        self.assertGreater(document["median"], 0, output)
        self.assertGreater(document["bytes_per_line"][0], 40)

    def test_openLoopBigRoom(self) -> None:
        """
        A room bigger than the server writes to in one go (L{FLUSH_CHUNK}), with lines read
        between its chunks, on real sockets: every line reaches every member once, in order,
        for the receivers that check and for those that count, read every 50 ms.
        """
        clients = FLUSH_CHUNK + 50
        results = self.bench(
            "--workload", "openloop", "--clients", str(clients), "--senders", "20",
            "--rate", "10", "--duration", "1", "--checked", "40",
        )
        for figures in results.values():
            self.assertDelivered(figures, clients)
            # Latencies are the checking receivers': each line is timed by all 40 but its
            # sender (the 20 senders check, and 20 others spread over the room).
            self.assertEqual(figures["latency_ms"]["count"], 39 * figures["sent"])

    def test_closedLoop(self) -> None:
        """
        Five clients, all sending in a closed loop, against chatsvc, chatsvc storing history
        and the relay at once: the ramp finds a window, and the sustained run at it delivers
        every line.
        """
        results = self.bench(
            "--workload", "closedloop", "--clients", "5", "--duration", "1", "--step", "0.3",
            targets=("chatsvc", "history", "relay"),
        )
        for figures in results.values():
            self.assertDelivered(figures, 5)
            self.assertGreaterEqual(figures["window"], 1)
            self.assertTrue(figures["ramp"])
            self.assertGreater(figures["best_step_deliveries_per_s"], 0)
            self.assertGreater(figures["messages_per_s"], 0)
            self.assertGreater(figures["server_cpu_percent"], 0)

    def test_idle(self) -> None:
        """Twenty idle connections: the time to connect them and the server's memory."""
        results = self.bench("--workload", "idle", "--clients", "20")
        for figures in results.values():
            self.assertEqual(figures["connections"], 20)
            self.assertGreater(figures["connect_seconds"], 0)
            self.assertGreater(figures["server_rss_kb_before"], 0)
            self.assertGreater(figures["server_rss_kb_after"], 0)
            self.assertIsInstance(figures["rss_per_connection_kb"], float)
            self.assertEqual(figures["joins_seen"], figures["joins_expected"])

    def test_joinStorm(self) -> None:
        """Twenty clients join at once: each sees everyone who joined after it."""
        results = self.bench("--workload", "joinstorm", "--clients", "20")
        for figures in results.values():
            self.assertTrue(figures["joins_complete"])
            self.assertEqual(figures["joins_expected"], 20 * 19 // 2)
            self.assertEqual(figures["joins_seen"], figures["joins_expected"])
            self.assertGreater(figures["join_seconds"], 0)
            self.assertGreater(figures["handshake_seconds"], 0)
        # chatsvc's member list tells each client its place, so each one's count is checked.
        self.assertEqual(results["chatsvc"]["joins_missing_by_member_list"], 0)

    def test_webDoor(self) -> None:
        """
        The web door (C{--door web}): five WebSocket clients in a closed loop against chatsvc's
        web door and the WebSocket relay at once, every message delivered; chatsvc sends each
        member its own messages too (counted apart), the relay none; and twenty idle ones, each
        told of everyone who joined after it (the relay tells of nothing).
        """
        results = self.bench(
            "--workload", "closedloop", "--door", "web", "--clients", "5", "--duration", "1",
            "--step", "0.3",
        )
        for figures in results.values():
            self.assertDelivered(figures, 5)
            self.assertIn("wsrelay.py" if figures is results["relay"] else "--web-listen",
                          " ".join(figures["server_command"]))
            self.assertGreater(figures["server_cpu_percent"], 0)
        chatsvc = results["chatsvc"]
        self.assertGreater(chatsvc["own_messages_received"], 0)
        self.assertLessEqual(chatsvc["own_messages_received"], chatsvc["own_messages_sent"])
        self.assertEqual(results["relay"]["own_messages_received"], 0)
        idle = self.bench("--workload", "idle", "--door", "web", "--clients", "20")
        for figures in idle.values():
            self.assertEqual(figures["connections"], 20)
            self.assertGreater(figures["server_rss_kb_after"], 0)
            self.assertIsInstance(figures["rss_per_connection_kb"], float)
        self.assertEqual(idle["chatsvc"]["joins_seen"], 20 * 19 // 2)
        self.assertEqual(idle["relay"]["joins_seen"], 0)

    def test_mixedRoom(self) -> None:
        """
        A room of both doors' members (C{--door mixed}): six clients, every second one a
        WebSocket, in a closed loop, against rooms of each door's members alone, the three
        servers at once; every line and message delivered to every other member, whichever
        door each came by, with the ratios to each door's room alone.
        """
        output, document = runScript(
            self, FANOUT, "--workload", "closedloop", "--door", "mixed", "--clients", "6",
            "--duration", "1", "--step", "0.3", timeout=TIMEOUT,
        )
        self.assertTrue(document["passed"], output)
        [workload] = document["workloads"]
        self.assertEqual(workload["workload"]["door"], "mixed")
        results = workload["results"]
        self.assertEqual(sorted(results), ["line", "mixed", "web"])
        for target, figures in results.items():
            self.assertIsNone(figures["aborted"], f"{target}: {output}")
            self.assertEqual(figures["errors"], 0, f"{target}: {figures['error_lines']}")
            self.assertDelivered(figures, 6)
        self.assertNotIn("own_messages_received", results["line"])
        self.assertGreater(results["mixed"]["own_messages_received"], 0)
        for row in document["table"]:
            self.assertEqual(
                sorted(row),
                ["figure", "line", "mixed", "mixed/line", "mixed/web", "web", "workload"],
            )
        [peak] = [row for row in document["table"] if row["figure"].startswith("peak")]
        self.assertGreater(peak["mixed/line"], 0)
        self.assertGreater(peak["mixed/web"], 0)


class JoinNoticeTests(SynchronousTestCase):
    """
    How fanout.py's clients count join notices, alone (C{<nick> joined!}) or in the summaries
    of a crowded chatsvc room (C{*** Joined: <nick>, ...}), from lines in memory.
    """

    CLIENTS = 5

    def setUp(self) -> None:
        self.shared = Run(cast(Any, Clock()), self.CLIENTS, 0, 80, exactLatency=False)
        self.addCleanup(self.shared.readers.close)

    def member(self, index: int) -> BenchClient:
        """Client C{index}, past its handshake."""
        client = BenchClient(self.shared, index)
        client.member = True
        return client

    def assertNoErrors(self) -> None:
        """No client saw an error or a notice it had no use for."""
        self.assertEqual(self.shared.errorCount, 0, self.shared.errors)
        self.assertEqual(self.shared.noticeCount, 0, self.shared.notices)

    def test_summaryCountsEachName(self) -> None:
        """
        Each of the clients' nicknames in a C{*** Joined: } line is a join notice seen, as a
        C{joined!} line is; a summary line may come in pieces; a newcomer's member line with
        the count only gives its place, and a long member list's further lines are ignored.
        """
        client = self.member(0)
        client.dataReceived(
            b"*** Members (1): too many to list here; /who shows them all\r\n"
            b"***   n0000009, n0000010\r\n"
            b"*** Joined: n0000001, n00"
        )
        self.assertEqual((client.joins, self.shared.joinsSeen), (0, 0))
        client.dataReceived(b"00002, n0000003\r\nn0000004 joined!\r\n")
        self.assertEqual(client.position, 1)
        self.assertEqual((client.joins, self.shared.joinsSeen), (4, 4))
        self.assertNoErrors()

    def test_foreignNames(self) -> None:
        """
        Names that are not the clients' in a summary count for nothing but foreign lines; the
        same line received by another client counts alike.
        """
        first, second = self.member(0), self.member(1)
        line = b"*** Joined: n0000001, Alice, n0000002\r\n"
        first.dataReceived(line + b"*** Joined: Bob\r\n")
        self.assertEqual((first.joins, self.shared.joinsSeen), (2, 2))
        self.assertEqual(self.shared.foreignLines, 2)
        second.dataReceived(line)
        self.assertEqual((second.joins, self.shared.joinsSeen), (2, 4))
        self.assertEqual(self.shared.foreignLines, 3)
        self.assertNoErrors()

    def test_leftSummary(self) -> None:
        """
        Each name in a C{*** Left: } line is a leave; while the load runs, each such line is an
        error, as a C{left!} line is.
        """
        client = self.member(0)
        client.dataReceived(b"*** Left: n0000001, n0000002\r\n")
        self.assertEqual(self.shared.leaves, 2)
        self.assertNoErrors()
        self.shared.phase = Phase.LOADING
        client.dataReceived(b"*** Left: n0000003, n0000004, n0000005\r\nn0000006 left!\r\n")
        self.assertEqual(self.shared.leaves, 6)
        self.assertEqual(self.shared.errorCount, 2, self.shared.errors)
        self.assertIn("a member left during the load", self.shared.errors[0])

    def test_stormCompleteOnLastNotice(self) -> None:
        """
        With every client in, the storm is complete the moment its C*(C-1)/2-th notice arrives,
        however the notices came.
        """
        shared = self.shared
        shared.handshaked = shared.count
        self.assertEqual(shared.joinsExpected, 10)
        clients = [self.member(index) for index in range(self.CLIENTS)]
        clients[0].dataReceived(b"*** Joined: n0000001, n0000002, n0000003, n0000004\r\n")
        clients[1].dataReceived(b"*** Joined: n0000002, n0000003\r\nn0000004 joined!\r\n")
        clients[2].dataReceived(b"*** Joined: n0000003\r\n*** Joined: n0000004\r\n")
        self.assertIsNone(shared.joinsCompleteAt)
        clients[3].dataReceived(b"n0000004 joined!\r\n")
        self.assertIsNotNone(shared.joinsCompleteAt)
        self.assertEqual([client.joins for client in clients], [4, 3, 2, 1, 0])
        self.assertEqual(shared.joinsSeen, shared.joinsExpected)
        self.assertNoErrors()


class RelayTests(SynchronousTestCase):
    """benchmarks/relay.py on its own: the handshake and the relaying the benchmark relies on."""

    def test_handshakeAndRelay(self) -> None:
        """
        The relay prints its port; a client is asked its name, greeted, told of later joins, and
        gets the others' lines with their nicknames in front, not its own.
        """
        import socket

        relay = subprocess.Popen(
            [sys.executable, str(RELAY), "--port", "0"],
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.addCleanup(relay.wait, 10)
        self.addCleanup(relay.kill)
        assert relay.stdout is not None
        self.addCleanup(relay.stdout.close)
        port = int(relay.stdout.readline())

        def connect(nick: bytes) -> tuple[socket.socket, Any]:
            connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            self.addCleanup(connection.close)
            reader = connection.makefile("rb")
            self.addCleanup(reader.close)
            self.assertEqual(reader.readline(), b"GET_NAME\r\n")
            connection.sendall(nick + b"\n")
            self.assertEqual(reader.readline(), nick + b" connected to server!\r\n")
            return connection, reader

        alice, aliceReads = connect(b"Alice")
        bob, bobReads = connect(b"Bob")
        self.assertEqual(aliceReads.readline(), b"Bob joined!\r\n")
        alice.sendall(b"hello\r\n")
        self.assertEqual(bobReads.readline(), b"Alice: hello\r\n")
        bob.sendall(b"hi\n")
        self.assertEqual(aliceReads.readline(), b"Bob: hi\r\n")
