"""
Tests for L{chatsvc.cluster.node}: two or three nodes (each a hub and a L{ClusterNode}, in this
process) sharing a real Redis (L{tests.redis.RedisServer}), on the real reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from chatsvc.chat import ChatError, Hub, IMember, NameInUse
from chatsvc.chat.events import Event, Joined, JoinsAndLeaves, Left, Moderated, Renamed, Said, Whispered
from chatsvc.chat.names import nick_key
from chatsvc.cluster.node import OUT_OF_REACH, ClusterNode, RemoteMember
from chatsvc.cluster.url import parseRedisUrl
from tests.processes import TIMEOUT
from tests.redis import RedisServer

LEASE = 1.5
"""A short lease, so that a node gone silent is noticed within the test's time."""


@implementer(IMember)
class Member:
    """A member of a node that remembers what it is told (and, told to, leaves)."""

    def __init__(self, hub: Hub, host: str | None = None) -> None:
        self.hub = hub
        self.host = host
        self.events: list[Event] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, Moderated) and event.action == "kill":
            self.hub.depart(self, event.reason)

    def said(self) -> list[str]:
        return [event.text for event in self.events if isinstance(event, Said)]

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


async def until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """Wait, polling, until C{condition()} is true; fail after C{timeout} seconds."""
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await deferLater(reactor, 0.01, lambda: None)


class Cluster:
    """Nodes of one cluster, in this process, on one real Redis."""

    def __init__(self, test: TestCase, server: RedisServer) -> None:
        self.test = test
        self.server = server
        self.nodes: list[ClusterNode] = []

    def node(self, name: str, lease: float = LEASE, url: str | None = None, **options: Any) -> ClusterNode:
        hub = Hub(reactor, **options)
        node = ClusterNode(reactor, hub, parseRedisUrl(url or self.server.url), name, lease=lease)
        node.startService()
        self.nodes.append(node)
        self.test.addCleanup(self.stop, node)
        return node

    def stop(self, node: ClusterNode) -> defer.Deferred[None] | None:
        if node.running:
            for member in [m for m in node.hub.members() if not isinstance(m, RemoteMember)]:
                node.hub.depart(member, "test over")
            return node.stopService()
        return None

    async def ready(self) -> None:
        await until(lambda: all(node.inCluster for node in self.nodes), "every node is in the cluster")
        names = {node.nodeName for node in self.nodes}
        await until(
            lambda: all(set(node.peers) >= names - {node.nodeName} for node in self.nodes if node.inCluster),
            "every node knows the others",
        )


async def arrive(node: ClusterNode, nick: str, host: str | None = None) -> Member:
    member = Member(node.hub, host)
    await node.hub.arrive(member, nick)
    return member


def nicks(node: ClusterNode, room: str = "lobby") -> list[str]:
    return node.hub.nicks(node.hub.room(room))


class ClusterTests(TestCase):
    """Members of different nodes share rooms, nicknames and presence."""

    timeout = 60

    def setUp(self) -> None:
        self.server = RedisServer(self)
        self.cluster = Cluster(self, self.server)

    async def twoNodes(self) -> tuple[ClusterNode, ClusterNode]:
        a, b = self.cluster.node("a"), self.cluster.node("b")
        await self.cluster.ready()
        return a, b

    @defer.inlineCallbacks
    def test_chat(self) -> Any:
        """
        Members of two nodes see each other in the lobby, and each line reaches the other
        node once, in order, with the id it was said with.
        """
        yield defer.Deferred.fromCoroutine(self.chat())

    async def chat(self) -> None:
        a, b = await self.twoNodes()
        alice = await arrive(a, "Alice")
        bob = await arrive(b, "Bob")
        await until(lambda: nicks(a) == ["Alice", "Bob"] and nicks(b) == ["Alice", "Bob"], "both see both")
        self.assertIn(Joined("lobby", "Bob"), alice.events)
        room = a.hub.room("lobby")
        before = (a.hub.deliveries, b.hub.deliveries)
        sent = [a.hub.say(alice, room, f"line {n}") for n in range(50)]
        await until(lambda: len(bob.said()) == 50, "Bob has every line")
        self.assertEqual(bob.said(), [f"line {n}" for n in range(50)])
        self.assertEqual([e.id for e in bob.of(Said)], [e.id for e in sent])
        self.assertEqual(alice.said(), [])
        # Each node counts the deliveries to its own members only: Bob's 50, on B.
        self.assertEqual((a.hub.deliveries - before[0], b.hub.deliveries - before[1]), (0, 50))
        # Kept at hand on both nodes, under the same ids.
        self.assertEqual(
            [m.id for m in b.hub.room("lobby").history(50)], [e.id for e in sent]
        )
        # Ids given by the two nodes never meet.
        reply = b.hub.say(bob, b.hub.room("lobby"), "hello")
        await until(lambda: "hello" in alice.said(), "Alice has Bob's line")
        self.assertNotEqual(reply.id % 32, sent[0].id % 32)
        self.assertGreater(reply.id, sent[-1].id)

    @defer.inlineCallbacks
    def test_rooms(self) -> Any:
        """Joining, parting, topics, renames and away status are the same from each node."""
        yield defer.Deferred.fromCoroutine(self.rooms())

    async def rooms(self) -> None:
        a, b = await self.twoNodes()
        alice = await arrive(a, "Alice")
        bob = await arrive(b, "Bob")
        a.hub.join(alice, "games")
        await until(lambda: "games" in [r.name for r in b.hub.rooms()], "B has games")
        room = b.hub.join(bob, "games")
        await until(lambda: Joined("games", "Bob") in alice.events, "Alice sees Bob join games")
        a.hub.setTopic(alice, a.hub.room("games"), "chess at 8")
        await until(lambda: room.topic == "chess at 8", "B has the topic")
        await b.hub.rename(bob, "Robert")
        await until(lambda: Renamed("Bob", "Robert") in alice.events, "Alice sees the rename")
        self.assertEqual(nicks(a, "games"), ["Alice", "Robert"])
        self.assertIsNone(a.hub.memberNamed("Bob"))
        b.hub.setAway(bob, "lunch")
        await until(lambda: a.hub.awayOf("Robert") == "lunch", "A has Robert away")
        b.hub.part(bob, "games", "bye for now")
        await until(lambda: Left("games", "Robert", "bye for now") in alice.events, "Alice sees Robert part")
        self.assertEqual(nicks(a, "games"), ["Alice"])
        # Whispers reach the other node alone.
        a.hub.whisper(alice, "robert", "psst")
        await until(lambda: bob.of(Whispered), "Robert has the whisper")
        self.assertEqual(bob.of(Whispered), [Whispered("Alice", "Robert", "psst")])
        # Leaving.
        a.hub.depart(alice, "off home")
        await until(lambda: Left("lobby", "Alice", "off home") in bob.events, "Robert sees Alice go")
        self.assertEqual(nicks(b), ["Robert"])
        self.assertIsNone(self.server.command("GET", f"chatsvc:nick:{nick_key('Alice')}"))

    @defer.inlineCallbacks
    def test_lateNode(self) -> Any:
        """A node started later learns every member, room, topic and away message there is."""
        yield defer.Deferred.fromCoroutine(self.lateNode())

    async def lateNode(self) -> None:
        a, b = await self.twoNodes()
        alice = await arrive(a, "Alice")
        bob = await arrive(b, "Bob")
        a.hub.join(alice, "games")
        a.hub.setTopic(alice, a.hub.room("games"), "chess at 8")
        b.hub.setAway(bob, "lunch")
        await until(lambda: b.hub.awayOf("Bob") == "lunch" and "games" in [r.name for r in b.hub.rooms()], "b has it all")
        c = self.cluster.node("c")
        await self.cluster.ready()
        await until(lambda: nicks(c) == ["Alice", "Bob"], "c knows both")
        await until(lambda: c.hub.awayOf("Bob") == "lunch", "c knows Bob is away")
        self.assertEqual(nicks(c, "games"), ["Alice"])
        self.assertEqual(c.hub.room("games").topic, "chess at 8")
        carol = await arrive(c, "Carol")
        c.hub.join(carol, "games")
        await until(lambda: Joined("games", "Carol") in alice.events, "Alice sees Carol join")
        with self.assertRaises(NameInUse):
            await c.hub.arrive(Member(c.hub), "bob")

    @defer.inlineCallbacks
    def test_crowded(self) -> Any:
        """
        A crowded room is crowded on every node: joins on one node reach the other's members
        as the same summaries, and counts agree.
        """
        yield defer.Deferred.fromCoroutine(self.crowded())

    async def crowded(self) -> None:
        # Run last (cleanups go last in, first out): the leaves of the members put out when
        # the nodes stop are announced, in a crowded room, a moment later.
        self.addCleanup(deferLater, reactor, 0.4, lambda: None)
        a = self.cluster.node("a", crowdSize=3, crowdInterval=0.3)
        b = self.cluster.node("b", crowdSize=3, crowdInterval=0.3)
        await self.cluster.ready()
        watchers = [await arrive(node, name) for node, name in ((a, "Wa"), (b, "Wb"))]
        for n in range(6):
            await arrive(a, f"Guest{n}")
        await until(lambda: len(b.hub.room("lobby")) == 8, "B counts everyone")
        self.assertTrue(b.hub.crowded(b.hub.room("lobby")))
        guests = {f"Guest{n}" for n in range(6)}

        def announced(watcher: Member) -> set[str]:
            joined = {e.nick for e in watcher.of(Joined)}
            for summary in watcher.of(JoinsAndLeaves):
                for isJoin, names in summary.shown():
                    if isJoin:
                        joined.update(names)
            return joined

        await until(lambda: all(announced(w) >= guests for w in watchers), "every guest announced on both")
        self.assertTrue(all(w.of(JoinsAndLeaves) for w in watchers), "in summaries")
        for node in (a, b):
            view = node.hub.view(node.hub.room("lobby"), 0)
            self.assertEqual((view.members, view.nicks), (8, None))

    @defer.inlineCallbacks
    def test_nicknameRace(self) -> Any:
        """Two nodes claiming one nickname at the same moment: exactly one has it."""
        yield defer.Deferred.fromCoroutine(self.nicknameRace())

    async def nicknameRace(self) -> None:
        a, b, c = self.cluster.node("a"), self.cluster.node("b"), self.cluster.node("c")
        await self.cluster.ready()
        for round in range(20):
            nick = f"Carol{round}"
            members = [Member(node.hub) for node in (a, b, c)]
            claims = [
                node.hub.arrive(member, nick).addCallbacks(lambda _: True, lambda f: f.trap(NameInUse) and False)
                for node, member in zip((a, b, c), members)
            ]
            results = await defer.gatherResults(claims)
            self.assertEqual(sorted(results), [False, False, True], nick)
        await until(lambda: all(len(node.hub) == 20 for node in (a, b, c)), "every node has 20 members")

    @defer.inlineCallbacks
    def test_stopped(self) -> Any:
        """A node stopped: its members leave at once on the others, and their names are free."""
        yield defer.Deferred.fromCoroutine(self.stopped())

    async def stopped(self) -> None:
        a, b = await self.twoNodes()
        alice = await arrive(a, "Alice")
        await arrive(b, "Bob")
        await until(lambda: nicks(a) == ["Alice", "Bob"], "A sees Bob")
        stopped = self.cluster.stop(b)
        assert stopped is not None
        await stopped
        await until(lambda: a.peers == [], "A knows B is gone", timeout=LEASE / 2)
        self.assertEqual(nicks(a), ["Alice"])
        self.assertEqual(alice.of(Left), [Left("lobby", "Bob", "test over")])
        again = await arrive(a, "Bob")
        self.assertIn(again, a.hub)

    @defer.inlineCallbacks
    def test_killed(self) -> Any:
        """
        A node gone silent (killed): within its lease, the others announce its members as
        left and free their nicknames.
        """
        yield defer.Deferred.fromCoroutine(self.killed())

    async def killed(self) -> None:
        a, b = await self.twoNodes()
        alice = await arrive(a, "Alice")
        await arrive(b, "Bob")
        await until(lambda: nicks(a) == ["Alice", "Bob"], "A sees Bob")
        # As if killed: no goodbye, no renewal, the links simply gone.
        b._stopping = True
        b._renewing.stop()
        for factory in b._factories:
            await factory.disconnect()
        gone = reactor.seconds()
        await until(lambda: nicks(a) == ["Alice"], "Bob is gone from A", timeout=LEASE * 3)
        self.assertLess(reactor.seconds() - gone, LEASE + LEASE / 3 + 1)
        self.assertEqual([e.nick for e in alice.of(Left)], ["Bob"])
        await until(
            lambda: self.server.command("GET", f"chatsvc:nick:{nick_key('Bob')}") is None,
            "Bob's nickname is free",
        )
        await arrive(a, "Bob")
        b.running = False

    @defer.inlineCallbacks
    def test_redisRestarted(self) -> Any:
        """
        Redis restarted: every node tells its members, refuses arrivals meanwhile, and once
        back, brings every view in line without announcing anything twice.
        """
        yield defer.Deferred.fromCoroutine(self.redisRestarted())

    async def redisRestarted(self) -> None:
        a, b = await self.twoNodes()
        alice = await arrive(a, "Alice")
        bob = await arrive(b, "Bob")
        a.hub.join(alice, "games")
        await until(lambda: nicks(b) == ["Alice", "Bob"] and "games" in [r.name for r in b.hub.rooms()], "B sees Alice")
        before = (len(alice.of(Joined)), len(bob.of(Joined)))
        self.server.stop()
        await until(lambda: not a.inCluster and not b.inCluster, "both nodes know Redis is gone")
        told = [e.text for e in alice.of(Moderated)]
        self.assertTrue(any("out of reach" in (text or "") for text in told), told)
        # Refused what a node cannot decide alone.
        failure = await defer.Deferred.fromCoroutine(self.refusedArrival(a))
        self.assertEqual(str(failure), OUT_OF_REACH)
        with self.assertRaises(ChatError) as renaming:
            await a.hub.rename(alice, "Alicia")
        self.assertEqual(str(renaming.exception), OUT_OF_REACH)
        self.assertEqual(a.hub.nickOf(alice), "Alice")
        # Its own members still talk among themselves.
        carolsNode = a
        self.server.restart()
        await self.cluster.ready()
        await until(lambda: nicks(b) == ["Alice", "Bob"] and nicks(a) == ["Alice", "Bob"], "views in line")
        # Nothing announced again, and nobody left.
        self.assertEqual((len(alice.of(Joined)), len(bob.of(Joined))), before)
        self.assertEqual(alice.of(Left) + bob.of(Left), [])
        told = [e.text for e in alice.of(Moderated)]
        self.assertTrue(any("back in reach" in (text or "") for text in told), told)
        # The nicknames are claimed again in the new Redis.
        await until(
            lambda: self.server.command("GET", f"chatsvc:nick:{nick_key('Alice')}") is not None,
            "Alice's nickname claimed again",
        )
        carol = Member(carolsNode.hub)
        with self.assertRaises(NameInUse):
            await b.hub.arrive(carol, "alice")

    @defer.inlineCallbacks
    def test_leftDuringOutage(self) -> Any:
        """
        A member who leaves while Redis is out of reach is gone from every node once it is
        back, and its nickname free: kept in Redis's append-only file, its claim is let go.
        """
        yield defer.Deferred.fromCoroutine(self.leftDuringOutage())

    async def leftDuringOutage(self) -> None:
        self.server = RedisServer(self, appendonly=True)
        self.cluster = Cluster(self, self.server)
        a, b = self.cluster.node("a", lease=6.0), self.cluster.node("b", lease=6.0)
        await self.cluster.ready()
        alice = await arrive(a, "Alice")
        await arrive(b, "Bob")
        await until(lambda: nicks(b) == ["Alice", "Bob"], "B sees Alice")
        key = f"chatsvc:nick:{nick_key('Alice')}"
        self.assertIsNotNone(self.server.command("GET", key))
        self.server.stop()
        await until(lambda: not a.inCluster, "A knows Redis is gone")
        a.hub.depart(alice, "gone home")
        self.server.restart()
        await self.cluster.ready()
        await until(lambda: nicks(b) == ["Bob"], "Alice is gone from B")
        await until(lambda: self.server.command("GET", key) is None, "Alice's nickname is free")
        await arrive(b, "Alice")

    @defer.inlineCallbacks
    def test_password(self) -> Any:
        """A Redis with a password: nodes given it in the URL join; a node given a wrong one
        does not, and refuses arrivals saying why."""
        yield defer.Deferred.fromCoroutine(self.password())

    async def password(self) -> None:
        self.server = RedisServer(self, password="open sesame")
        self.cluster = Cluster(self, self.server)
        a, b = self.cluster.node("a"), self.cluster.node("b")
        await self.cluster.ready()
        await arrive(a, "Alice")
        await until(lambda: nicks(b) == ["Alice"], "B sees Alice")
        c = Cluster(self, self.server).node("c", url=self.server.url.replace("open%20sesame", "guess"))
        await until(lambda: c.authFailed, "C knows its password is wrong")
        self.assertFalse(c.inCluster)
        failure = await defer.Deferred.fromCoroutine(self.refusedArrival(c))
        self.assertEqual(str(failure), OUT_OF_REACH)

    async def refusedArrival(self, node: ClusterNode) -> ChatError:
        try:
            await node.hub.arrive(Member(node.hub), "Dave")
        except ChatError as error:
            return error
        raise AssertionError("Dave arrived")
