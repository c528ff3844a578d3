"""
End to end, a server that cannot start: a real C{twistd -n chatroom} given a history database it
cannot use, or an endpoint it cannot listen on, must say why in one log line and exit with
status 1, without a traceback.

Each test waits for the process to close its output and exit, within L{TIMEOUT}; nothing sleeps.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import TIMEOUT, Server


class FailedStartTests(SynchronousTestCase):
    """Each way of failing to start ends the same way: one clear line, then exit status 1."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()

    def failedStart(self, *options: str) -> list[str]:
        """
        Run the server with C{options}, which must keep it from starting; assert that it exits
        with status 1 and writes no traceback; return its output, stdout then stderr.
        """
        server = Server(self.directory, *options)
        self.addCleanup(server.stop)
        output = server.stdout.rest() + server.stderr.rest()
        self.assertEqual(server.wait(TIMEOUT), 1, output)
        self.assertFalse([line for line in output if "Traceback" in line], output)
        return output

    def assertOneLine(self, output: list[str], pattern: str) -> None:
        """Exactly one line of C{output} matches C{pattern}, and it is an error."""
        matching = [line for line in output if re.search(pattern, line)]
        self.assertEqual(len(matching), 1, output)
        self.assertIn("#error]", matching[0])

    def test_corruptDatabase(self) -> None:
        """A --db file that is not a database: history_open_failed names it and says why."""
        path = self.directory / "garbage.db"
        path.write_bytes(bytes(range(256)) * 20)
        output = self.failedStart("--db", str(path))
        self.assertOneLine(
            output,
            rf"history_open_failed reason='cannot use {re.escape(str(path))} for history: "
            r"file is not a database'",
        )

    def test_databaseIsDirectory(self) -> None:
        """A --db naming a directory: history_open_failed names it and says why."""
        output = self.failedStart("--db", str(self.directory))
        self.assertOneLine(
            output,
            rf"history_open_failed reason='cannot use {re.escape(str(self.directory))} for "
            r"history: unable to open database file'",
        )

    def test_portInUse(self) -> None:
        """
        An endpoint whose port another socket holds: listen_failed names the endpoint and says
        why, and the server exits although its other endpoint (the free port) was listened on.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        output = self.failedStart("--db", ":memory:", "--listen", f"tcp:{busy}:interface=127.0.0.1")
        self.assertOneLine(
            output,
            rf"listen_failed endpoint='tcp:{busy}:interface=127\.0\.0\.1:backlog=4096' "
            r"reason=.*Address already in use",
        )
