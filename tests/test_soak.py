"""
The soak test (benchmarks/soak.py), run small: a real server, real loopback clients, every
delivery checked. The big settings are run by hand; this keeps the script itself working.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import ROOT, runScript

SOAK = ROOT / "benchmarks" / "soak.py"
TIMEOUT = 120.0
"""Seconds the whole small soak run may take (it needs about 5)."""


class SoakTests(SynchronousTestCase):
    """benchmarks/soak.py as a person would run it."""

    def test_smallSoak(self) -> None:
        """
        Twenty clients sending two lines a second for three seconds: the script exits 0, and its
        JSON report shows every expected delivery made once, in order, with no error, and the
        server stopped cleanly.
        """
        output, results = runScript(
            self, SOAK, "--clients", "20", "--duration", "3", "--rate", "2", timeout=TIMEOUT
        )
        self.assertEqual(
            (results["lost"], results["duplicated"], results["reordered"], results["errors"]),
            (0, 0, 0, 0),
            output,
        )
        self.assertGreater(results["expected_deliveries"], 0)
        self.assertEqual(results["delivered"], results["expected_deliveries"])
        # Each line goes to the 19 other clients: about 20 clients x 3 s x 2 lines/s x 19.
        self.assertEqual(results["expected_deliveries"], results["sent"] * 19)
        self.assertTrue(results["server_exit_clean"], output)
        self.assertTrue(results["passed"])
