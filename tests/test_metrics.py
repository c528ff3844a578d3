"""
Tests for L{chatsvc.metrics}: the text format, and a real server's C{/metrics} and C{/healthz}
on a free loopback port, read over HTTP while members of two doors talk.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.metrics import Histogram, Metric, render
from tests.irc.ircsocket import IrcSocket
from tests.processes import TIMEOUT, Server
from tests.test_accounts_e2e import member


class RenderTests(SynchronousTestCase):
    def test_format(self) -> None:
        text = render([
            Metric("a_total", "counter", "Things.", lambda: 3),
            Metric("b", "gauge", "By door.", lambda: {(("door", 'x"y'),): 1.5}),
        ]).decode()
        self.assertEqual(
            text,
            '# HELP a_total Things.\n# TYPE a_total counter\na_total 3\n'
            '# HELP b By door.\n# TYPE b gauge\nb{door="x\\"y"} 1.5\n',
        )


    def test_histogram(self) -> None:
        """A histogram's buckets count up to each bound, then its sum and count follow."""
        lag = Metric("lag_seconds", "histogram", "Lag.", lambda: Histogram((0.001, 0.01, float("inf")), [2, 1, 1], 0.5))
        self.assertEqual(
            render([lag]).decode(),
            "# HELP lag_seconds Lag.\n"
            "# TYPE lag_seconds histogram\n"
            'lag_seconds_bucket{le="0.001"} 2\n'
            'lag_seconds_bucket{le="0.01"} 3\n'
            'lag_seconds_bucket{le="+Inf"} 4\n'
            "lag_seconds_sum 0.5\n"
            "lag_seconds_count 4\n",
        )


class EndpointTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        self.server = Server(directory, "--db", str(directory / "chat.db"),
                             "--metrics-listen", "tcp:0:interface=127.0.0.1")
        self.addCleanup(self.server.stop)
        self.port = self.server.waitListening()
        self.ircPort = self.server.waitIrcListening()
        match = self.server.stdout.expect(r"server_listening.*127\.0\.0\.1:(\d+).*door='metrics'")
        self.metricsPort = int(match.group(1))

    def get(self, path: str) -> tuple[int, str, str]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.metricsPort}{path}", timeout=TIMEOUT) as answer:
            return answer.status, answer.headers["content-type"], answer.read().decode()

    def values(self) -> dict[str, float]:
        status, kind, text = self.get("/metrics")
        self.assertEqual((status, kind), (200, "text/plain; version=0.0.4; charset=utf-8"))
        found = {}
        for line in text.splitlines():
            if not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                found[name] = float(value)
        return found

    def test_metrics(self) -> None:
        before = self.values()
        self.assertEqual(before["chatsvc_members"], 0)
        alice = member(self, self.port, "Alice")
        bob = IrcSocket(self.ircPort)
        self.addCleanup(bob.close)
        bob.register("Bob")
        alice.send("hello")
        bob.expect("PRIVMSG", "#lobby")
        after = self.values()
        self.assertEqual(after['chatsvc_connections{door="line"}'], 1)
        self.assertEqual(after['chatsvc_connections{door="irc"}'], 1)
        self.assertEqual(after['chatsvc_connections{door="web"}'], 0)
        self.assertEqual(after["chatsvc_members"], 2)
        self.assertEqual(after["chatsvc_messages_total"], before["chatsvc_messages_total"] + 1)
        self.assertGreaterEqual(after["chatsvc_deliveries_total"], before["chatsvc_deliveries_total"] + 1)
        self.assertGreaterEqual(after["chatsvc_rooms"], 1)
        for name in ("chatsvc_flood_delays_total", "chatsvc_send_queue_cuts_total",
                     "chatsvc_login_failures_total", "chatsvc_history_queue",
                     "chatsvc_history_written_total", "chatsvc_history_failures_total"):
            self.assertIn(name, after)

    def test_health(self) -> None:
        status, _, text = self.get("/healthz")
        self.assertEqual((status, text), (200, "ok\n"))
        with self.assertRaises(urllib.error.HTTPError) as raised:
            self.get("/elsewhere")
        self.assertEqual(raised.exception.code, 404)
