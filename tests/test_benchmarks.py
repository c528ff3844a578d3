"""
The fan-out benchmark (benchmarks/fanout.py) and its reference relay (benchmarks/relay.py), run
tiny: each workload against both servers, every delivery checked. The real sizes are run by hand;
this keeps the harness itself working. How its clients count join notices is also checked on
lines in memory, summaries of a crowded room among them, and how its IRC clients register and
read what the IRC door sends them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from chatsvc.sessions.outbox import FLUSH_CHUNK
from tests.processes import ROOT, environment, runScript

BENCHMARKS = ROOT / "benchmarks"
FANOUT = BENCHMARKS / "fanout.py"
RELAY = BENCHMARKS / "relay.py"

# The scripts import their shared module as "harness", found in their own folder, which Python
# puts first on sys.path when it runs one by path; importing one here needs the folder there too.
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from fanout import (  # noqa: E402
    BenchClient,
    IrcClient,
    Phase,
    Run,
    clusterProjection,
    commandStats,
    parseMetrics,
    windowFigures,
)
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

    def ircBench(self, *arguments: str) -> dict[str, Any]:
        """
        Run the benchmark with C{--door irc}; its exit status must be 0. Returns the results of
        its one workload by target, after checking that both targets ran, IRC clients in
        chatsvc's IRC door and line clients in a room of their own, and the table's ratio
        irc/line.
        """
        output, document = runScript(self, FANOUT, *arguments, "--door", "irc", timeout=TIMEOUT)
        self.assertIn("irc/line", output)
        self.assertTrue(document["passed"], output)
        [workload] = document["workloads"]
        self.assertEqual(workload["workload"]["door"], "irc")
        results: dict[str, Any] = workload["results"]
        self.assertEqual(sorted(results), ["irc", "line"])
        for target, figures in results.items():
            self.assertIsNone(figures["aborted"], f"{target}: {output}")
            self.assertEqual(figures["errors"], 0, f"{target}: {figures['error_lines']}")
            self.assertEqual(figures["other_notices"], 0, f"{target}: {figures['other_notice_lines']}")
            self.assertEqual(figures["server_log_trouble"], 0, figures["server_log_trouble_lines"])
            # Both servers have the IRC door; only the irc target's clients use it.
            self.assertIn("--irc-listen", figures["server_command"])
            self.assertNotIn("--no-irc", figures["server_command"])
        self.assertTrue(document["table"])
        for row in document["table"]:
            self.assertEqual(sorted(row), ["figure", "irc", "irc/line", "line", "workload"])
        return results

    def test_ircOpenLoop(self) -> None:
        """
        Five IRC clients, all sending five lines a second for a second, three of them checking
        every line and two counting theirs, against as many line clients: every line delivered
        to every other client once, in order, each timed.
        """
        results = self.ircBench(
            "--workload", "openloop", "--clients", "5", "--rate", "5", "--duration", "1",
            "--checked", "3",
        )
        for figures in results.values():
            self.assertDelivered(figures, 5)
            self.assertEqual(figures["latency_ms"]["count"], 3 * 4 * figures["sent"] // 5)
            self.assertGreater(figures["latency_ms"]["max"], 0)
            self.assertEqual(figures["flood_notices"], 0)

    def test_ircClosedLoop(self) -> None:
        """
        Five IRC clients in a closed loop, and five line clients, the two servers at once: the
        ramp finds a window for each, the sustained run delivers every line, and the table has
        the ratio irc/line.
        """
        results = self.ircBench(
            "--workload", "closedloop", "--clients", "5", "--duration", "0.5", "--step", "0.2",
        )
        for figures in results.values():
            self.assertDelivered(figures, 5)
            self.assertGreaterEqual(figures["window"], 1)
            self.assertGreater(figures["best_step_deliveries_per_s"], 0)
            # The IRC door sends nobody their own messages: none came back, none counted.
            self.assertNotIn("own_messages_received", figures)

    def test_ircIdle(self) -> None:
        """
        Twenty idle IRC clients, registered and in #lobby, and twenty line clients: the time
        to connect them, the server's memory per connection, and each told of everyone who
        came after it (a JOIN each).
        """
        results = self.ircBench("--workload", "idle", "--clients", "20")
        for figures in results.values():
            self.assertEqual(figures["connections"], 20)
            self.assertGreater(figures["connect_seconds"], 0)
            self.assertGreater(figures["server_rss_kb_after"], 0)
            self.assertIsInstance(figures["rss_per_connection_kb"], float)
            self.assertEqual(figures["joins_seen"], 20 * 19 // 2)

    def test_ircJoinStorm(self) -> None:
        """
        A hundred and twenty IRC clients join at once, more than a crowded room's 100: each
        client sees everyone who joined after it, by a JOIN of its own or, once the room is
        crowded, in the server's summaries, as many as its place in the room (its names, or
        the count it is given instead) says; likewise for the line clients.
        """
        clients = 120
        results = self.ircBench("--workload", "joinstorm", "--clients", str(clients))
        for figures in results.values():
            self.assertTrue(figures["joins_complete"])
            self.assertEqual(figures["joins_expected"], clients * (clients - 1) // 2)
            self.assertEqual(figures["joins_seen"], figures["joins_expected"])
            self.assertEqual(figures["joins_missing_by_member_list"], 0)
            self.assertGreater(figures["join_seconds"], 0)


class ClusterWorkloadTests(SynchronousTestCase):
    """
    C{fanout.py --workload cluster}: a Redis of its own, a one-node and a two-node cluster on
    it, run tiny; and the arithmetic of its measures and of its projection, in memory.
    """

    def requireRedis(self) -> None:
        """Skip, saying why, without redis-server; under CI=true, fail instead."""
        if shutil.which("redis-server") is None:
            reason = "redis-server is not installed (scripts/setup-redis installs it)"
            if os.environ.get("CI") == "true":
                self.fail(f"{reason} (CI=true: required)")
            raise SkipTest(reason)

    def test_clusterWorkload(self) -> None:
        """
        Ten members, all sending, on one node and spread over two (five each): the open loop
        and the closed loop deliver every line once, in order; each node's CPU per delivery
        and Redis' per published message are measured, the nodes' own counts agree with what
        the clients got, and the projection to larger clusters is made.
        """
        self.requireRedis()
        clients = 10
        output, document = runScript(
            self, FANOUT, "--workload", "cluster", "--clients", str(clients), "--duration", "2",
            "--window", "4", timeout=TIMEOUT,
        )
        self.assertTrue(document["passed"], output)
        self.assertIn("share this machine's", output)
        self.assertIn("Projection", output)
        self.assertEqual(
            [entry["workload"]["kind"] for entry in document["workloads"]], ["openloop", "closedloop"]
        )
        for entry in document["workloads"]:
            kind = entry["workload"]["kind"]
            self.assertEqual(sorted(entry["results"]), ["one_node", "two_nodes"])
            for name, figures in entry["results"].items():
                where = f"{kind} {name}"
                self.assertIsNone(figures["aborted"], f"{where}: {output}")
                self.assertEqual(figures["errors"], 0, f"{where}: {figures['error_lines']}")
                self.assertEqual(
                    figures["server_log_trouble"], 0, f"{where}: {figures['server_log_trouble_lines']}"
                )
                nodes = 1 if name == "one_node" else 2
                self.assertEqual(len(figures["nodes"]), nodes, where)
                self.assertEqual(figures["members_per_node"], [clients // nodes] * nodes, where)
                self.assertEqual(figures["subscribers"], nodes, where)
                self.assertGreater(figures["sent"], 0, where)
                self.assertEqual(figures["delivered"], figures["sent"] * (clients - 1), where)
                self.assertEqual(
                    (figures["lost"], figures["duplicated"], figures["reordered"]), (0, 0, 0), where
                )
                cluster = figures["cluster"]
                self.assertEqual(len(cluster["nodes"]), nodes, where)
                self.assertGreater(cluster["node_cpu_seconds"], 0, where)
                self.assertGreater(cluster["cpu_us_per_delivery"], 0, where)
                self.assertIsNotNone(cluster["redis_own_cpu_us_per_message"], where)
                if kind == "openloop":
                    # Measured from the load's start to its last delivery: every one of them,
                    # each line published once.
                    self.assertEqual(cluster["deliveries"], figures["delivered"], where)
                    self.assertEqual(cluster["published"], figures["sent"], where)
                    self.assertGreater(figures["latency_ms"]["p99"], 0, where)
                    if nodes == 2:
                        self.assertIsNotNone(cluster["lag_mean_ms"], where)
                elif nodes == 1:
                    # Redis' cost per subscriber: its node's alone, and four passive ones more.
                    cost = figures["subscriber_cost"]
                    self.assertEqual(
                        (cost["subscribers_alone"], cost["subscribers_with"]), (1, 5), where
                    )
                    self.assertGreater(cost["alone"]["published"], 0, where)
                    self.assertGreater(cost["with"]["published"], 0, where)
        goals = document["cluster"]["targets"]
        self.assertTrue(goals)
        self.assertTrue(any("p99" in goal["target"] for goal in goals))
        projection = document["cluster"]["projection"]["chosen"]
        self.assertEqual([row["nodes"] for row in projection["rows"]], [1, 2, 4, 8, 16])
        self.assertEqual(projection["subscribers_per_node"], 1.0)
        cores = document["machine"]["shared_cores"]
        self.assertIn(f"share this machine's {cores} cores", document["cluster"]["note"])

    def test_clusterMeasures(self) -> None:
        """
        /metrics and INFO commandstats are read as they are written; windows are summed into
        CPU per delivery per node and in all, and Redis' CPU per published message.
        """
        samples = parseMetrics(
            "# HELP chatsvc_deliveries_total Events.\n# TYPE chatsvc_deliveries_total counter\n"
            "chatsvc_deliveries_total 990\nchatsvc_cluster_lag_seconds_bucket{le=\"0.001\"} 3\n"
        )
        self.assertEqual(samples, {
            "chatsvc_deliveries_total": 990.0, 'chatsvc_cluster_lag_seconds_bucket{le="0.001"}': 3.0,
        })
        self.assertEqual(
            commandStats({
                "cmdstat_publish": "calls=10,usec=25,usec_per_call=2.50,rejected_calls=0,failed_calls=0",
                "other": "x",
            }),
            {"publish": (10, 25)},
        )

        def node(name: str, cpu: float, deliveries: int, published: int) -> dict[str, Any]:
            return {
                "name": name, "cpu_seconds": cpu, "deliveries": deliveries, "published": published,
                "received": 0, "messages": published, "lag_count": 2, "lag_sum": 0.004,
            }

        windows = [
            {
                "seconds": 1.0, "redis_cpu_seconds": 0.01, "redis_own_cpu_seconds": 0.012,
                "redis_commands": {"publish": [100, 200]},
                "nodes": [node("a", 0.2, 5000, 100), node("b", 0.3, 5000, 0)],
            },
        ] * 2
        figures = windowFigures(windows)
        self.assertEqual(figures["deliveries"], 20000)
        self.assertEqual(figures["published"], 200)
        self.assertEqual(figures["cpu_us_per_delivery"], 50.0)
        self.assertEqual([n["cpu_us_per_delivery"] for n in figures["nodes"]], [40.0, 60.0])
        self.assertEqual([n["cpu_percent"] for n in figures["nodes"]], [20.0, 30.0])
        self.assertEqual(figures["redis_cpu_us_per_message"], 100.0)
        self.assertEqual(figures["redis_own_cpu_us_per_message"], 120.0)
        self.assertEqual(figures["redis_commands_per_message"]["publish"], {"calls": 1.0, "us": 2.0})
        self.assertEqual(figures["lag_mean_ms"], 2.0)

    def test_clusterProjection(self) -> None:
        """
        From c = 1 us a delivery and Redis' 10 us a message with one subscriber, 15 with two
        (r(S) = 5 + 5 S): a room of 100 spread over N nodes is bound by its nodes (N / 100 us)
        until Redis' 1 / (5 + 5 N) meets it, at N = 4 (40,000 messages/s); a room of 50 a
        node, by its nodes' 20,000 messages/s until Redis' meets it at N = 9.
        """
        costs = {
            "workload": "closedloop N=100", "members": 100,
            "node_seconds_per_delivery_one": 0.5e-6, "node_seconds_per_delivery_two": 1e-6,
            "redis_seconds_per_message_one": 10e-6, "redis_seconds_per_message_two": 15e-6,
            "subscribers_one": 1, "subscribers_two": 2,
        }
        projection = clusterProjection(costs, costs)
        self.assertEqual(projection["redis_us_per_message_without_subscribers"], 5.0)
        self.assertEqual(projection["redis_us_per_subscriber"], 5.0)
        self.assertEqual(projection["notes"], [])
        rows = {row["nodes"]: row for row in projection["rows"]}
        self.assertEqual(sorted(rows), [1, 2, 4, 8, 16])
        self.assertEqual(rows[2]["spread"]["node_bound_messages_per_s"], 20000.0)
        self.assertEqual(rows[2]["redis_bound_messages_per_s"], 66666.7)
        self.assertEqual(rows[2]["spread"]["limited_by"], "nodes")
        self.assertEqual(rows[8]["spread"]["limited_by"], "Redis")
        self.assertEqual(rows[8]["spread"]["messages_per_s"], 22222.2)
        self.assertEqual(rows[8]["spread"]["deliveries_per_s"], round(1e6 / 45 * 99))
        self.assertEqual(projection["spread_peak_nodes"], 4.0)
        self.assertEqual(projection["spread_peak_messages_per_s"], 40000.0)
        self.assertEqual(rows[8]["grown"]["room_members"], 400)
        self.assertEqual(rows[8]["grown"]["limited_by"], "nodes")
        self.assertEqual(rows[16]["grown"]["limited_by"], "Redis")
        self.assertEqual(projection["grown_redis_bound_from_nodes"], 9.0)
        self.assertEqual(projection["grown_deliveries_per_s_limit"], 10_000_000)


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


class NoDelayTransport(StringTransport):
    """A transport in memory that takes the TCP option the clients set."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        """Nothing to set in memory."""


class IrcClientTests(SynchronousTestCase):
    """
    How fanout.py's IRC clients register, and read what chatsvc's IRC door sends them: chat
    lines checked against what each sender sent (in bulk or one by one), joins, names, pings
    and notices, from lines in memory.
    """

    def setUp(self) -> None:
        # Three clients, the first two sending; the third is the one under test.
        self.shared = Run(cast(Any, Clock()), 3, 2, 80, exactLatency=False, door="irc")
        self.addCleanup(self.shared.readers.close)
        self.shared.readers.add = lambda client: None  # type: ignore[method-assign]
        self.client = IrcClient(self.shared, 2)
        self.transport = NoDelayTransport()
        self.client.makeConnection(self.transport)

    def register(self) -> None:
        """The server's welcome, the client's own JOIN and the names of #lobby."""
        self.client.dataReceived(
            b":vm 001 n0000002 :Welcome to vm, n0000002!chat@chatsvc\r\n"
            b":vm 005 n0000002 CASEMAPPING=ascii :are supported by this server\r\n"
            b":vm 422 n0000002 :MOTD File is missing\r\n:vm 221 n0000002 +\r\n"
            b":n0000002!chat@chatsvc JOIN #lobby\r\n"
            b":vm 353 n0000002 = #lobby :n0000000 n0000001\r\n"
            b":vm 353 n0000002 = #lobby n0000002\r\n"
            b":vm 366 n0000002 #lobby :End of /NAMES list\r\n"
        )

    def assertNoErrors(self) -> None:
        """The client saw no error, and no notice it had no use for."""
        self.assertEqual(self.shared.errorCount, 0, self.shared.errors)
        self.assertEqual(self.shared.noticeCount, 0, self.shared.notices)

    def test_registration(self) -> None:
        """
        The client sends NICK and USER at once, and no CAP; from 001 it is a member, the rest
        of the welcome passes unremarked, and the names in its 353 replies are its place.
        """
        self.assertEqual(
            self.transport.value(), b"NICK n0000002\r\nUSER n0000002 0 * :n0000002\r\n"
        )
        self.register()
        self.assertTrue(self.client.member)
        self.assertTrue(self.client.inRoom)
        self.assertEqual(self.client.position, 3)
        self.assertEqual(self.shared.handshaked, 1)
        self.assertEqual(self.shared.joinsSeen, 0)
        self.assertNoErrors()

    def test_refused(self) -> None:
        """A nickname refused (433) is an error, and the run cannot go on."""
        self.client.dataReceived(b":vm 433 * n0000002 :Nickname is already in use\r\n")
        self.assertFalse(self.client.member)
        self.assertEqual(self.shared.errorCount, 1)
        self.assertTrue(self.shared.allHandshaked.called)
        self.shared.allHandshaked.addErrback(lambda failure: None)

    def test_chatChecked(self) -> None:
        """
        What the senders sent arrives as PRIVMSGs from their sources: a run of one sender's
        lines, and lines of the two in turn, are deliveries; a line again is a duplicate, one
        that skips another leaves it missing until it comes late (reordered).
        """
        self.register()
        shared = self.shared
        sent = [shared.message(sender, 1000 + number) for number in range(4) for sender in (0, 1)]
        self.assertEqual(sent[0][:16], b"PRIVMSG #lobby :")
        self.assertEqual(sent[0][-2:], b"\r\n")
        width = shared.width

        def line(sender: int, number: int) -> bytes:
            # Line number (from 1) of sender, as its receivers get it.
            return bytes(shared.streams[sender][(number - 1) * width : number * width])

        self.assertTrue(line(0, 1).startswith(b":n0000000!chat@chatsvc PRIVMSG #lobby :000000001 "))
        # A run of one sender's lines, compared as a whole.
        self.client.dataReceived(line(0, 1) + line(0, 2))
        self.assertEqual(shared.delivered, 2)
        # Senders in turn, line by line.
        self.client.dataReceived(line(1, 1) + line(0, 3) + line(1, 2))
        self.assertEqual(shared.delivered, 5)
        self.client.dataReceived(line(0, 3))
        self.assertEqual(shared.duplicated, 1)
        self.client.dataReceived(line(1, 4))
        self.client.dataReceived(line(1, 3))
        self.assertEqual(shared.reordered, 1)
        self.assertEqual(shared.delivered, 7)
        self.assertEqual(list(shared.got[1]), [0, 1 << 62, 4])  # only the third has read
        self.assertNoErrors()

    def test_crowdedRoom(self) -> None:
        """
        In a crowded room, a newcomer's NAMES lists only itself, and a notice gives the count,
        its place; each client's nickname in a summary of joins is a join notice seen, each
        name in a summary of leaves a leave.
        """
        self.client.dataReceived(
            b":vm 001 n0000002 :Welcome\r\n:n0000002!chat@chatsvc JOIN #lobby\r\n"
            b":vm 353 n0000002 = #lobby n0000002\r\n"
            b":vm 366 n0000002 #lobby :End of /NAMES list\r\n"
            b":vm NOTICE #lobby :*** #lobby has 101 members, too many to list on joining: "
            b"NAMES #lobby lists them all\r\n"
        )
        self.assertEqual(self.client.position, 101)
        self.client.dataReceived(
            b":vm NOTICE #lobby :*** Joined: n0000000, Alice, n0000001\r\n"
            b":vm NOTICE #lobby :*** Left: n0000000, n0000001\r\n"
        )
        self.assertEqual((self.client.joins, self.shared.joinsSeen), (2, 2))
        self.assertEqual(self.shared.foreignLines, 1)
        self.assertEqual(self.shared.leaves, 2)
        self.assertNoErrors()

    def test_joinsAndPings(self) -> None:
        """
        Others' JOINs are join notices, a read of nothing but them counted at once; a PING is
        answered with a PONG; a PART is a leave; the flood notice is counted; an error numeric
        is an error.
        """
        self.client.dataReceived(b":vm 001 n0000002 :Welcome\r\n")
        # Its own JOIN alone in a read is not a join notice.
        self.client.dataReceived(b":n0000002!chat@chatsvc JOIN #lobby\r\n")
        self.assertEqual(self.shared.joinsSeen, 0)
        self.client.dataReceived(
            b":n0000000!chat@chatsvc JOIN #lobby\r\n:n0000001!chat@chatsvc JOIN #lobby\r\n"
        )
        self.assertEqual((self.client.joins, self.shared.joinsSeen), (2, 2))
        self.transport.clear()
        self.client.dataReceived(b"PING :vm\r\n:vm PING vm\r\n")
        self.assertEqual(self.transport.value(), b"PONG :vm\r\nPONG vm\r\n")
        self.client.dataReceived(
            b":vm NOTICE n0000002 :You are sending too fast; your lines are being delayed.\r\n"
            b":n0000000!chat@chatsvc PART #lobby :connection lost\r\n"
        )
        self.assertEqual(self.shared.floodNotices, 1)
        self.assertEqual(self.shared.leaves, 1)
        self.assertNoErrors()
        self.client.dataReceived(b":vm 404 n0000002 #lobby :Cannot send to channel\r\n")
        self.assertEqual(self.shared.errorCount, 1)


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
