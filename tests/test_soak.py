"""
The soak test (benchmarks/soak.py), run small: a real server, real loopback clients, every
delivery checked. The big settings are run by hand; this keeps the script itself working.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import ROOT, environment

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
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        report = directory / "soak.json"
        try:
            finished = subprocess.run(
                [
                    sys.executable, str(SOAK),
                    "--clients", "20", "--duration", "3", "--rate", "2",
                    "--json", str(report),
                ],
                cwd=directory,
                env=environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired as expired:
            self.fail(f"soak.py still running after {TIMEOUT:g} s:\n{expired.output}")
        self.assertEqual(finished.returncode, 0, finished.stdout)
        results = json.loads(report.read_text(encoding="utf-8"))
        self.assertEqual(
            (results["lost"], results["duplicated"], results["reordered"], results["errors"]),
            (0, 0, 0, 0),
            finished.stdout,
        )
        self.assertGreater(results["expected_deliveries"], 0)
        self.assertEqual(results["delivered"], results["expected_deliveries"])
        # Each line goes to the 19 other clients: about 20 clients x 3 s x 2 lines/s x 19.
        self.assertEqual(results["expected_deliveries"], results["sent"] * 19)
        self.assertTrue(results["server_exit_clean"], finished.stdout)
        self.assertTrue(results["passed"])
