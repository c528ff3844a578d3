"""
The abuse benchmark (benchmarks/abuse.py), run small: a real server with its default limits,
connections from one address asking for long replies, and probes from another address.
The full settings are run by hand; this keeps the script itself working.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import ROOT, runScript

ABUSE = ROOT / "benchmarks" / "abuse.py"
TIMEOUT = 120.0
"""Seconds one small run may take (it needs about 5)."""


class AbuseTests(SynchronousTestCase):
    """benchmarks/abuse.py as a person would run it."""

    def check(self, attack: str) -> None:
        """
        Five attackers for two seconds: the script exits 0, every probe message arrived, no
        attacker (they all read) was cut, and some replies were received.
        """
        output, results = runScript(
            self, ABUSE, "--attack", attack, "--attackers", "5", "--rooms", "120",
            "--duration", "2", timeout=TIMEOUT,
        )
        self.assertTrue(results["passed"], output)
        self.assertEqual(results["probe_messages"], results["probe_sent"], output)
        self.assertGreater(results["probe_sent"], 0)
        self.assertEqual(results["attackers_cut"], 0, output)
        self.assertGreater(results["replies_received"], 0, output)
        self.assertEqual(results["server_exit_status"], 0, output)

    def test_rooms(self) -> None:
        """C{/rooms} over and over, against 120 rooms with long topics."""
        self.check("rooms")

    def test_history(self) -> None:
        """C{/history 100} over and over, against a lobby of 4 KB lines."""
        self.check("history")
