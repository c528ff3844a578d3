"""
End-to-end tests of a cluster: a real C{redis-server} (L{tests.redis.RedisServer}) and two or
three real C{twistd -n chatroom --redis ...} nodes, each on free loopback ports for all of its
doors; members on netcat, IRC and the terminal client's wire, on different nodes.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.chat.names import nick_key
from tests.processes import TIMEOUT, Server, environment
from tests.redis import RedisServer
from tests.test_accounts_e2e import Netcat, member

LEASE = 2.0
"""The nodes' lease in these tests: short, so that a node gone silent is noticed quickly."""


class IrcMember:
    """A plain IRC connection, registered with NICK and USER, read a line at a time."""

    def __init__(self, test: SynchronousTestCase, port: int, nick: str, caps: str = "") -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.file = self.socket.makefile("rb")
        test.addCleanup(self.close)
        if caps:
            self.send(f"CAP REQ :{caps}")
            self.expect(r" CAP \S+ ACK ")
            self.send("CAP END")
        self.send(f"NICK {nick}")
        self.send(f"USER {nick.lower()} 0 * :{nick}")
        self.expect(r" 001 ")

    def send(self, line: str) -> None:
        self.socket.sendall(line.encode("utf-8") + b"\r\n")

    def expect(self, pattern: str) -> str:
        while True:
            raw = self.file.readline()
            if not raw:
                raise AssertionError(f"connection closed before a line matching {pattern!r}")
            line = raw.decode("utf-8").rstrip("\r\n")
            if line.startswith("PING "):
                self.send("PONG " + line[5:])
            if re.search(pattern, line):
                return line

    def history(self, room: str) -> list[tuple[str, str]]:
        """C{CHATHISTORY LATEST} of C{room}: each message's msgid and text, oldest first."""
        self.send(f"CHATHISTORY LATEST {room} * 100")
        self.expect(r"^(@\S+ )?:\S+ BATCH \+")
        found: list[tuple[str, str]] = []
        while True:
            line = self.expect(r"")
            if re.search(r" BATCH -", line):
                return found
            match = re.match(r"^@(\S+) :\S+ PRIVMSG \S+ :(.*)$", line)
            if match:
                tags = dict(tag.partition("=")[::2] for tag in match.group(1).split(";"))
                found.append((tags["msgid"], match.group(2)))

    def close(self) -> None:
        self.file.close()
        self.socket.close()


class ClusterTestCase(SynchronousTestCase):
    """A Redis of the test's own, and nodes of one cluster on it."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        self.redis = RedisServer(self, appendonly=True)

    def node(self, name: str, *options: str, lease: float = LEASE) -> Server:
        """A node, once it has joined the cluster."""
        server = Server(
            self.directory,
            "--redis",
            self.redis.url,
            "--node-name",
            name,
            "--lease",
            str(lease),
            *options,
        )
        self.addCleanup(server.stop)
        server.waitListening()
        server.waitWebListening()
        server.waitIrcListening()
        server.stdout.expect("cluster_joined")
        return server

    def login(self, node: Server, account: str, password: str, typed: str | None = None) -> Netcat:
        """
        A netcat member on C{node} logging in to C{account} (typing its nickname as C{typed},
        if given): asked for the password, and in under the account's nickname.
        """
        connection = Netcat(node.port)
        self.addCleanup(connection.close)
        self.assertEqual(connection.line(), "GET_NAME")
        connection.send(typed or account)
        self.assertEqual(connection.line(), "GET_PASSWORD")
        connection.send(password)
        self.assertEqual(connection.line(), f"{account} connected to server!")
        return connection

    def nodes(self, count: int = 2, lease: float = LEASE) -> list[Server]:
        servers = [self.node(f"node{n}", lease=lease) for n in range(1, count + 1)]
        # Each knows every other before the test goes on.
        for server in servers:
            for _ in range(count - 1):
                server.stdout.expect("cluster_peer_seen")
        return servers


class ChatTests(ClusterTestCase):
    def test_acrossNodesAndDoors(self) -> None:
        """
        A netcat member on one node, a netcat and an IRC member on another: each line reaches
        the others once and in order, whoever said it and wherever; member lists and history
        are the same from both nodes.
        """
        a, b = self.nodes()
        alice = member(self, a.port, "Alice")
        carol = member(self, b.port, "Carol")
        alice.expect("^Carol joined!$")
        dave = IrcMember(self, b.ircPort, "Dave")
        dave.send("JOIN #lobby")
        dave.expect(r"JOIN #lobby")
        alice.expect("^Dave joined!$")
        for n in range(30):
            alice.send(f"line {n}")
        # (Carol may have come before her node heard of Alice: then she sees her join first.)
        carol.expect("^Alice: line 0$")
        for n in range(1, 30):
            self.assertEqual(carol.line(), f"Alice: line {n}")
        for n in range(30):
            dave.expect(rf":Alice!\S+ PRIVMSG #lobby :line {n}$")
        dave.send("PRIVMSG #lobby :hello from IRC")
        alice.expect("^Dave: hello from IRC$")
        carol.expect("^Dave: hello from IRC$")
        alice.send("/who")
        alice.expect(r"^\*\*\* Members \(3\): Alice, Carol, Dave$")
        carol.send("/who")
        carol.expect(r"^\*\*\* Members \(3\): Alice, Carol, Dave$")
        # A whisper across nodes.
        carol.send("/msg Alice just you")
        alice.expect(r"^\*Carol\* just you$")
        # The same history from either node, read from the one store.
        histories: list[list[str]] = []
        for node in (a, b):
            reader = member(self, node.port, f"Reader{len(histories)}")
            reader.expect(r"^\*\*\* Type /help")  # after the history shown on joining
            reader.send("/history 40")
            reader.expect(r"^\*\*\* History of lobby")
            lines = []
            while True:
                line = reader.line()
                if line.startswith("*** End of history"):
                    break
                lines.append(re.sub(r"^\*\*\* \[[^]]+\] ", "", line))
            histories.append(lines)
        self.assertEqual(histories[0], histories[1])
        self.assertEqual(histories[0], [f"Alice: line {n}" for n in range(30)] + ["Dave: hello from IRC"])
        # And IRC's CHATHISTORY on either node: the same messages, under the same msgids.
        caps = "batch server-time message-tags draft/chathistory"
        answers = [IrcMember(self, node.ircPort, f"Historian{n}", caps).history("#lobby") for n, node in enumerate((a, b))]
        self.assertEqual(answers[0], answers[1])
        self.assertEqual([text for _, text in answers[0]], [f"line {n}" for n in range(30)] + ["hello from IRC"])

    def test_keptAcrossRestarts(self) -> None:
        """
        Every node stopped, then a new one started: a room's topic, history and owner are all
        still there, in Redis.
        """
        a, b = self.nodes()
        alice = member(self, a.port, "Alice", register="sesame-open")
        alice.send("/join games")
        alice.expect("You joined games")
        alice.send("/topic chess at 8")
        alice.expect("set the topic of games: chess at 8")
        alice.send("first move")
        for node in (a, b):
            self.assertEqual(node.terminate(), 0)
        c = self.node("node3")
        owner = self.login(c, "Alice", "sesame-open")
        owner.send("/join games")
        owner.expect(r"^\*\*\* Topic of games: chess at 8$")
        owner.expect(r"Alice: first move$")
        owner.send("/who")
        owner.expect(r"^\*\*\* Members \(1\): @Alice$")

    def test_oneAccountOnTwoNodes(self) -> None:
        """
        An account logged in on two nodes at once is one member everywhere: its lines from
        either reach the other and everyone else, whispers reach both, and it leaves only
        when its last connection does; its nickname passes to the node it stays on.
        """
        a, b, c = self.nodes(3)
        laptop = member(self, a.port, "Alice", register="sesame-open")
        bob = member(self, c.port, "Bob")
        laptop.expect("^Bob joined!$")
        phone = self.login(b, "Alice", "sesame-open")
        phone.expect(r"^\*\*\* Type /help")
        bob.send("/who")
        bob.expect(r"^\*\*\* Members \(2\): Alice, Bob$")
        phone.send("from the phone")
        bob.expect("^Alice: from the phone$")
        laptop.expect("^Alice: from the phone$")
        bob.send("/msg Alice to both")
        laptop.expect(r"^\*Bob\* to both$")
        phone.expect(r"^\*Bob\* to both$")
        laptop.send("/quit")
        laptop.expect(r"^\*\*\* Goodbye")
        key = f"chatsvc:nick:{nick_key('Alice')}"
        deadline = time.monotonic() + TIMEOUT
        while not (isinstance(held := self.redis.command("GET", key), bytes) and held.startswith(b"node2/")):
            self.assertLess(time.monotonic(), deadline, "node2 holds Alice's nickname")
            time.sleep(0.05)
        bob.send("/who")
        bob.expect(r"^\*\*\* Members \(2\): Alice, Bob$")
        bob.send("still there?")
        phone.expect("^Bob: still there\\?$")
        phone.send("/quit")
        phone.expect(r"^\*\*\* Goodbye")
        bob.expect("^Alice left!$")

    def test_accountOnANodeKilled(self) -> None:
        """One of an account's two nodes killed: the member stays, on the other."""
        a, b, c = self.nodes(3)
        laptop = member(self, a.port, "Alice", register="sesame-open")
        bob = member(self, c.port, "Bob")
        laptop.expect("^Bob joined!$")
        phone = self.login(b, "Alice", "sesame-open")
        phone.expect(r"^\*\*\* Type /help")
        a.process.kill()
        a.wait()
        c.stdout.expect("cluster_peer_gone")
        b.stdout.expect("cluster_nickname_adopted")
        phone.send("after the crash")
        bob.expect("^Alice: after the crash$")
        bob.send("/who")
        bob.expect(r"^\*\*\* Members \(2\): Alice, Bob$")

    def test_nicknameRace(self) -> None:
        """Two nodes asked for one nickname at the same moment: exactly one gives it."""
        a, b = self.nodes()
        for round in range(15):
            nick = f"Racer{round}"
            connections = [Netcat(node.port) for node in (a, b)]
            for connection in connections:
                self.addCleanup(connection.close)
                self.assertEqual(connection.line(), "GET_NAME")
            for connection in connections:
                connection.socket.sendall(nick.encode() + b"\n")
            answers = sorted(connection.line() for connection in connections)
            self.assertEqual(
                answers,
                [f"*** Error: nickname '{nick}' is already in use", f"{nick} connected to server!"],
                nick,
            )

    def test_accountsAndModeration(self) -> None:
        """
        An account registered on one node is reserved on the other and logs in there; an
        operator's ban on one node puts out a member on the other.
        """
        a, b = self.nodes()
        watcher = member(self, b.port, "Watcher")
        alice = member(self, a.port, "Alice", register="sesame-open")
        alice.send("/join games")
        alice.expect("You joined games")
        alice.send("/quit")
        alice.expect(r"^\*\*\* Goodbye")
        watcher.expect("^Alice left!")
        owner = self.login(b, "Alice", "sesame-open", typed="alice")
        owner.send("/join games")
        owner.expect("You joined games")
        bob = member(self, a.port, "Bob")
        bob.send("/join games")
        bob.expect("You joined games")
        owner.expect("^Bob joined!$")
        owner.send("/ban Bob 10m spam")
        owner.expect("Bob was banned by Alice")
        bob.expect("Bob was banned by Alice")
        bob.send("/join games")
        bob.expect(r"^\*\*\* Error: you are banned from games")


class FaultTests(ClusterTestCase):
    def test_killed(self) -> None:
        """
        A node killed (SIGKILL): within its lease, the other announces its members as left and
        frees their nicknames; every line its members said that anyone saw is in the history.
        """
        a, b = self.nodes()
        alice = member(self, a.port, "Alice")
        bob = member(self, b.port, "Bob")
        alice.expect("^Bob joined!$")
        for n in range(20):
            bob.send(f"before the crash {n}")
        for n in range(20):
            alice.expect(f"^Bob: before the crash {n}$")
        killed = time.monotonic()
        b.process.kill()
        b.wait()
        alice.expect(r"^Bob left! \(its node node2 stopped answering\)$")
        elapsed = time.monotonic() - killed
        self.assertLess(elapsed, LEASE + LEASE / 3 + 2, "noticed within the lease")
        again = member(self, a.port, "Bob")
        again.send("/history 40")
        again.expect(r"^\*\*\* History of lobby")
        for n in range(20):
            again.expect(f"Bob: before the crash {n}$")

    def test_stopped(self) -> None:
        """A node stopped (SIGTERM): its members leave at once on the other node."""
        a, b = self.nodes(lease=30.0)
        alice = member(self, a.port, "Alice")
        member(self, b.port, "Bob")
        alice.expect("^Bob joined!$")
        stopped = time.monotonic()
        self.assertEqual(b.terminate(), 0)
        alice.expect(r"^Bob left! \(server shutting down\)$")
        self.assertLess(time.monotonic() - stopped, 10, "well before the lease of 30 s")
        member(self, a.port, "Bob")

    def test_redisRestarted(self) -> None:
        """
        Redis restarted: each node tells its members, refuses arrivals meanwhile with a clear
        error, and once back the cluster is whole again, nothing announced twice.
        """
        a, b = self.nodes(lease=6.0)
        alice = member(self, a.port, "Alice")
        zed = member(self, a.port, "Zed")
        bob = member(self, b.port, "Bob")
        alice.expect("^Bob joined!$")
        zed.expect("^Bob joined!$")
        self.redis.stop()
        alice.expect("the other nodes of this chat are out of reach")
        bob.expect("the other nodes of this chat are out of reach")
        a.stdout.expect("redis_unreachable")
        newcomer = Netcat(a.port)
        self.addCleanup(newcomer.close)
        newcomer.line()
        newcomer.send("Carol")
        self.assertEqual(
            newcomer.line(),
            "*** Error: the other nodes of this chat are out of reach just now: try again in a moment",
        )
        # Members of one node still talk among themselves.
        alice.send("still here")
        zed.expect("^Alice: still here$")
        self.redis.restart()
        alice.expect("the other nodes of this chat are back in reach")
        bob.expect("the other nodes of this chat are back in reach")
        alice.send("after the restart")
        bob.expect("^Alice: after the restart$")
        bob.send("/who")
        line = bob.expect(r"^\*\*\* Members")
        self.assertEqual(line, "*** Members (3): Alice, Bob, Zed")
        # Nothing announced again while the views were brought in line.
        alice.send("/who")
        self.assertEqual(
            alice.expect(r"^(\*\*\* Members|Bob (joined|left))"), "*** Members (3): Alice, Bob, Zed"
        )

    def test_cutOffPastTheLease(self) -> None:
        """
        Redis out of reach for longer than the lease: the node stops serving the members
        that the other nodes have announced as gone (they may connect again).
        """
        a, b = self.nodes()
        alice = member(self, a.port, "Alice")
        member(self, b.port, "Bob")
        alice.expect("^Bob joined!$")
        self.redis.stop()
        alice.expect("out of reach")
        alice.expect("cut off from the rest of the chat for too long")
        alice.file.read()  # to the end: the connection is closed, not left open
        self.redis.restart()
        a.stdout.expect("cluster_joined")
        b.stdout.expect("cluster_joined")
        # Bob's node was cut off as long, and let Bob go too: once each node has heard the
        # other's state, neither has him.
        again = member(self, a.port, "Alice")
        deadline = time.monotonic() + TIMEOUT
        while True:
            again.send("/who")
            members = again.expect(r"^\*\*\* Members")
            if members == "*** Members (1): Alice" or time.monotonic() > deadline:
                break
        self.assertEqual(members, "*** Members (1): Alice")


class AdministrationTests(ClusterTestCase):
    def admin(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chatsvc.admin", "--redis", self.redis.url, *arguments],
            cwd=self.directory,
            env=environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    def test_adminAcrossNodes(self) -> None:
        """
        The admin tool makes an admin in the cluster's Redis; the admin's announcement on one
        node reaches every node, and a /kill on one node disconnects a member on the other.
        """
        a, b = self.nodes()
        root = member(self, a.port, "Root", register="sesame-open")
        made = self.admin("admin", "root")
        self.assertEqual(made.stdout, "Root is now a server admin\n", made.stderr)
        self.assertIn("Root\tregistered", self.admin("accounts").stdout)
        bob = member(self, b.port, "Bob")
        root.expect("^Bob joined!$")
        root.send("/announce pizza in ten minutes")
        bob.expect(r"Announcement from Root: pizza in ten minutes")
        root.send("/kill Bob enough")
        bob.expect(r"^\*\*\* Disconnected: .*enough")
        root.expect(r"^Bob left!")
        audit = self.admin("audit").stdout
        self.assertIn("Root: announce", audit)
        self.assertIn("Root: kill Bob (enough)", audit)

    def test_migratedFromOneNode(self) -> None:
        """
        A single node's SQLite file, moved into Redis with the migration tool: its accounts
        log in on the cluster's nodes, and its history is there, under its ids.
        """
        database = self.directory / "single.db"
        single = Server(self.directory, "--db", str(database))
        self.addCleanup(single.stop)
        single.waitListening()
        alice = member(self, single.port, "Alice", register="sesame-open")
        for n in range(5):
            alice.send(f"said on one node {n}")
        alice.send("/quit")
        alice.expect(r"^\*\*\* Goodbye")
        self.assertEqual(single.terminate(), 0)
        moved = subprocess.run(
            [sys.executable, "-m", "chatsvc.cluster.migrate", "--db", str(database), "--redis", self.redis.url],
            cwd=self.directory,
            env=environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        self.assertEqual(moved.returncode, 0, moved.stdout + moved.stderr)
        a, b = self.nodes()
        owner = self.login(b, "Alice", "sesame-open", typed="alice")
        for n in range(5):
            owner.expect(f"Alice: said on one node {n}$")


class PageTests(ClusterTestCase):
    def test_pagesOnBothNodes(self) -> None:
        """
        Chromium pages on either node talk with a netcat member of the first; scrolled back to
        the beginning, both pages show the same history, read from the one store.
        """
        from tests.web.browser import launchBrowser, newPage, screenshot
        from tests.web.test_page_e2e import WAIT_MS, login, say, timeline

        from playwright.sync_api import TimeoutError as PlaywrightTimeout, expect

        browser = launchBrowser(self)
        a = self.node("node1", "--history-max", "20", "--history-lines", "20")
        b = self.node("node2", "--history-max", "20", "--history-lines", "20")
        a.stdout.expect("cluster_peer_seen")
        b.stdout.expect("cluster_peer_seen")
        alice = member(self, a.port, "Alice")
        for n in range(1, 61):
            alice.send(f"m{n}")
        pages = []
        for name, node in (("Bob", b), ("Carol", a)):
            page = newPage(self, browser)
            page.set_viewport_size({"width": 1280, "height": 800})
            login(page, f"http://127.0.0.1:{node.webPort}/", name)
            expect(page.locator("#timeline")).to_contain_text("m60", timeout=WAIT_MS)
            pages.append(page)
        bob, carol = pages
        say(bob, "hello from the second node")
        alice.expect("^Bob: hello from the second node$")
        expect(carol.locator("#timeline")).to_contain_text("hello from the second node", timeout=WAIT_MS)
        texts = []
        for page in pages:
            for _ in range(20):
                if "Beginning of #lobby" in timeline(page):
                    break
                page.evaluate("document.querySelector('#timeline').scrollTop = 0")
                older = page.locator("#timeline [data-older]")
                if older.count():
                    try:  # scrolled to the top, the page may be loading them already
                        older.first.click(timeout=1000)
                    except PlaywrightTimeout:
                        pass
                page.wait_for_timeout(200)
            expect(page.locator("#timeline")).to_contain_text("Beginning of #lobby", timeout=WAIT_MS)
            text = timeline(page)
            texts.append([line for line in text.split("\n") if re.fullmatch(r"m\d+", line)])
        screenshot(bob, "cluster-page-node2")
        self.assertEqual(texts[0], [f"m{n}" for n in range(1, 61)])
        self.assertEqual(texts[0], texts[1])


class TLSTests(SynchronousTestCase):
    def test_rediss(self) -> None:
        """
        Nodes reach Redis over TLS (rediss://), trusting the CA given with --redis-ca; a node
        without it refuses Redis' certificate, says so in its log, and lets nobody in.
        """
        import trustme

        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        authority = trustme.CA()
        issued = authority.issue_cert("localhost")
        files = (directory / "cert.pem", directory / "key.pem", directory / "ca.pem")
        issued.cert_chain_pems[0].write_to_path(str(files[0]))
        issued.private_key_pem.write_to_path(str(files[1]))
        authority.cert_pem.write_to_path(str(files[2]))
        redis = RedisServer(self, password="s3cret", tls=files)
        nodes = []
        for name in ("node1", "node2"):
            server = Server(directory, "--redis", redis.tlsUrl, "--redis-ca", str(files[2]), "--node-name", name)
            self.addCleanup(server.stop)
            server.waitListening()
            server.stdout.expect("cluster_joined")
            nodes.append(server)
        nodes[1].stdout.expect("cluster_peer_seen")
        alice = member(self, nodes[0].port, "Alice")
        bob = member(self, nodes[1].port, "Bob")
        alice.expect("^Bob joined!$")
        bob.send("over TLS")
        alice.expect("^Bob: over TLS$")
        untrusting = Server(directory, "--redis", redis.tlsUrl, "--node-name", "node3")
        self.addCleanup(untrusting.stop)
        untrusting.waitListening()
        line = untrusting.stdout.expect("redis_connect_failed")
        self.assertIn("certificate verify failed", line.string)
        self.assertNotIn("s3cret", line.string)
        refused = Netcat(untrusting.port)
        self.addCleanup(refused.close)
        refused.line()
        refused.send("Carol")
        self.assertEqual(refused.line(), "*** Error: " + "the other nodes of this chat are out of reach just now: try again in a moment")
