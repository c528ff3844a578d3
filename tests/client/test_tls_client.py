"""
The terminal client over TLS, against a real server on an C{ssl:} endpoint with a certificate
made in the test (trustme): verified against a private authority (C{--ca}), refused when it does
not verify, accepted unverified with C{--insecure}; and the same server reached by
C{openssl s_client}.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.certificates import serverCertificate
from tests.processes import TIMEOUT, Server, environment


class ClientTLSTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        key, chain, _ = serverCertificate(self.directory)
        self.ca = self.directory / "ca.pem"
        self.server = Server(
            self.directory, "--db", ":memory:",
            "--listen", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={chain}",
        )
        self.addCleanup(self.server.stop)
        self.server.waitListening()
        match = self.server.stdout.expect(r"server_listening.*ssl:.*127\.0\.0\.1:(\d+)")
        self.port = int(match.group(1))

    def client(self, *options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chatsvc.client", "Alice", "--host", "localhost", "--port",
             str(self.port), *options],
            input="hello over TLS\n", env=environment(), capture_output=True, text=True,
            timeout=TIMEOUT, cwd=self.directory,
        )

    def test_verified(self) -> None:
        finished = self.client("--tls", "--ca", str(self.ca))
        self.assertEqual(finished.returncode, 0, finished.stderr)
        self.assertIn("Alice connected to server!", finished.stdout)

    def test_notVerified(self) -> None:
        """A certificate the system does not trust: a clear error, and no chat."""
        finished = self.client("--tls")
        self.assertEqual(finished.returncode, 1)
        self.assertEqual(finished.stdout, "")
        self.assertEqual(
            finished.stderr,
            "chatsvc: TLS failed: the server's certificate could not be verified "
            "(certificate verify failed); give --ca FILE to trust a private authority, or "
            "--insecure to skip the check\n",
        )

    def test_insecure(self) -> None:
        finished = self.client("--tls", "--insecure")
        self.assertEqual(finished.returncode, 0, finished.stderr)
        self.assertIn("Alice connected to server!", finished.stdout)

    def test_optionsTogether(self) -> None:
        finished = self.client("--ca", str(self.ca))
        self.assertEqual(finished.returncode, 2)
        self.assertIn("--ca and --insecure go with --tls", finished.stderr)

    def test_opensslClient(self) -> None:
        """openssl s_client verifies the server's certificate and chats with it."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise SkipTest("openssl is not installed")
        finished = subprocess.run(
            [openssl, "s_client", "-connect", f"127.0.0.1:{self.port}", "-CAfile", str(self.ca),
             "-verify_return_error", "-verify_hostname", "localhost", "-quiet"],
            input="Bob\n/quit\n", capture_output=True, text=True, timeout=TIMEOUT,
        )
        self.assertIn("GET_NAME", finished.stdout, finished.stderr)
        self.assertIn("Bob connected to server!", finished.stdout)
        self.assertIn("*** Goodbye, Bob!", finished.stdout)
