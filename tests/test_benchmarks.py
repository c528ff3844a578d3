"""
The fan-out benchmark (benchmarks/fanout.py) and its reference relay (benchmarks/relay.py), run
tiny: each workload against both servers, every delivery checked. The real sizes are run by hand;
this keeps the harness itself working.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import ROOT, environment

FANOUT = ROOT / "benchmarks" / "fanout.py"
RELAY = ROOT / "benchmarks" / "relay.py"
TIMEOUT = 90.0
"""Seconds one small benchmark run may take (each needs a few)."""


class FanoutTests(SynchronousTestCase):
    """benchmarks/fanout.py as a person would run it, with tiny settings."""

    def bench(self, *arguments: str) -> dict[str, Any]:
        """
        Run the benchmark against both targets; its exit status must be 0. Returns the results
        of its one workload by target, after checking what every report holds.
        """
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        report = directory / "fanout.json"
        try:
            finished = subprocess.run(
                [sys.executable, str(FANOUT), *arguments, "--json", str(report)],
                cwd=directory,
                env=environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired as expired:
            self.fail(f"fanout.py still running after {TIMEOUT:g} s:\n{expired.output}")
        self.assertEqual(finished.returncode, 0, finished.stdout)
        self.assertIn("chatsvc/relay", finished.stdout)
        document = json.loads(report.read_text(encoding="utf-8"))
        self.assertTrue(document["passed"], finished.stdout)
        machine = document["machine"]
        self.assertGreater(machine["cpu_count"], 0)
        self.assertTrue(machine["python"])
        self.assertTrue(machine["twisted"])
        [workload] = document["workloads"]
        results: dict[str, Any] = workload["results"]
        self.assertEqual(sorted(results), ["chatsvc", "relay"])
        for target, figures in results.items():
            self.assertIsNone(figures["aborted"], f"{target}: {finished.stdout}")
            self.assertEqual(figures["errors"], 0, f"{target}: {figures['error_lines']}")
            self.assertGreater(figures["generator_cpu_percent"], 0, target)
        self.assertTrue(document["table"])
        for row in document["table"]:
            self.assertEqual(sorted(row), ["chatsvc", "figure", "ratio", "relay", "workload"])
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
        Five clients, all sending five lines a second for a second: every line delivered, with
        latencies and CPU figures.
        """
        results = self.bench(
            "--workload", "openloop", "--clients", "5", "--rate", "5", "--duration", "1"
        )
        for figures in results.values():
            self.assertDelivered(figures, 5)
            self.assertGreater(figures["offered_deliveries_per_s"], 0)
            latency = figures["latency_ms"]
            self.assertEqual(latency["count"], figures["delivered"])
            for name in ("p50", "p99", "max"):
                self.assertGreater(latency[name], 0, name)
            self.assertLessEqual(latency["p50"], latency["max"])
            # A hundred lines may cost the server less than one clock tick (10 ms) of CPU.
            self.assertGreaterEqual(figures["server_cpu_percent"], 0)

    def test_closedLoop(self) -> None:
        """
        Five clients, all sending in a closed loop: the ramp finds a window, and the sustained
        run at it delivers every line.
        """
        results = self.bench(
            "--workload", "closedloop", "--clients", "5", "--duration", "1", "--step", "0.3"
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
