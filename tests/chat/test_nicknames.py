"""
Tests for the nickname registry port: L{LocalNicknames}, and the hub claiming nicknames through a
registry that answers later, as a cluster's does.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chatsvc.chat import (
    ChatError,
    Hub,
    INicknameRegistry,
    Joined,
    Left,
    LocalNicknames,
    NicknameTaken,
    Renamed,
    nick_key,
)
from tests.chat.test_hub import Recorder, arrive, settled


class LocalNicknamesTests(SynchronousTestCase):
    """The registry of a server on its own."""

    def test_interface(self) -> None:
        """It is a nickname registry."""
        verifyObject(INicknameRegistry, LocalNicknames())

    def test_claimOnce(self) -> None:
        """A key is held by its first claim; a second claim is refused, naming the holder."""
        registry = LocalNicknames()
        self.assertIsNone(self.successResultOf(registry.claim("alice", "Alice")))
        self.assertIn("alice", registry)
        failure = self.failureResultOf(registry.claim("alice", "ALICE"), NicknameTaken)
        self.assertEqual(failure.value.holder, "Alice")

    def test_release(self) -> None:
        """A released key may be claimed again; releasing a key not held is harmless."""
        registry = LocalNicknames()
        registry.claim("alice", "Alice")
        registry.release("alice")
        registry.release("alice")
        self.assertEqual(len(registry), 0)
        self.successResultOf(registry.claim("alice", "alice"))

    def test_relabel(self) -> None:
        """A held key is refused under its new label after a relabel; an unheld one stays free."""
        registry = LocalNicknames()
        registry.claim("alice", "Alice")
        registry.relabel("alice", "ALICE")
        registry.relabel("bob", "Bob")
        self.assertEqual(self.failureResultOf(registry.claim("alice", "x")).value.holder, "ALICE")
        self.assertNotIn("bob", registry)


@implementer(INicknameRegistry)
class SlowNicknames:
    """
    A registry that answers when the test says (as a cluster's answers after a round trip),
    and records what it was told.
    """

    def __init__(self) -> None:
        self.pending: dict[str, Deferred[None]] = {}
        self.held: dict[str, str] = {}
        self.released: list[str] = []
        self.relabelled: list[tuple[str, str]] = []

    def claim(self, key: str, nick: str) -> Deferred[None]:
        assert key not in self.pending, f"{key} claimed twice at once"
        answer: Deferred[None] = Deferred()
        self.pending[key] = answer
        answer.addCallback(lambda _: self.held.__setitem__(key, nick))
        return answer

    def grant(self, key: str) -> None:
        self.pending.pop(key).callback(None)

    def refuse(self, key: str, error: Exception) -> None:
        self.pending.pop(key).errback(error)

    def relabel(self, key: str, nick: str) -> None:
        self.relabelled.append((key, nick))

    def release(self, key: str) -> None:
        self.released.append(key)
        del self.held[key]


class LaterAnswerTests(SynchronousTestCase):
    """The hub against a registry that answers later."""

    def setUp(self) -> None:
        self.registry = SlowNicknames()
        self.hub = Hub(Clock(), nicknames=self.registry)
        self.alice = Recorder()
        self.hub.arrive(self.alice, "Alice")
        self.registry.grant("alice")
        self.alice.events.clear()

    def test_verified(self) -> None:
        """The test double is a registry as the hub expects one."""
        verifyObject(INicknameRegistry, self.registry)

    def test_arrivesOnceGranted(self) -> None:
        """Until the claim is granted the newcomer is not here; then it lands and is announced."""
        bob = Recorder()
        arriving = self.hub.arrive(bob, " Bob ")
        self.assertNoResult(arriving)
        self.assertNotIn(bob, self.hub)
        self.assertIsNone(self.hub.memberNamed("bob"))
        self.assertEqual(self.alice.events, [])
        self.registry.grant("bob")
        self.assertEqual(self.successResultOf(arriving), "Bob")
        self.assertIs(self.hub.memberNamed("BOB"), bob)
        self.assertEqual(self.alice.events, [Joined("lobby", "Bob")])

    def test_pendingClaimRefusedToOthers(self) -> None:
        """
        While a nickname is being claimed, a look-alike claim on this server is refused at
        once, naming the nickname being claimed, and never reaches the registry.
        """
        self.hub.arrive(Recorder(), "bob")
        refused = self.hub.arrive(Recorder(), "B0B")
        self.assertEqual(
            str(self.failureResultOf(refused, ChatError).value),
            "nickname 'B0B' is already in use: it looks too like 'bob'",
        )
        self.assertEqual(list(self.registry.pending), ["bob"])

    def test_refusedByRegistry(self) -> None:
        """A key held elsewhere is refused with the holder's name, and is free here again."""
        bob = Recorder()
        arriving = self.hub.arrive(bob, "b0b")
        self.registry.refuse("bob", NicknameTaken("Bob"))
        self.assertEqual(
            str(self.failureResultOf(arriving, ChatError).value),
            "nickname 'b0b' is already in use: it looks too like 'Bob'",
        )
        self.assertNotIn(bob, self.hub)
        again = self.hub.arrive(bob, "bob")
        self.registry.grant("bob")
        self.assertEqual(self.successResultOf(again), "bob")

    def test_registryCannotAnswer(self) -> None:
        """A registry that fails is a clear refusal to the member, and is logged."""
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]
        )
        arriving = self.hub.arrive(Recorder(), "Bob")
        self.registry.refuse("bob", ConnectionError("the cluster is out of reach"))
        self.assertEqual(
            str(self.failureResultOf(arriving, ChatError).value),
            "nickname 'Bob' cannot be claimed just now; try again",
        )
        logged = [
            event["chatsvc_fields"]
            for event in observer
            if event.get("chatsvc_fields", {}).get("event") == "nickname_claim_failed"
        ]
        self.assertEqual(logged, [{"event": "nickname_claim_failed", "nick": "Bob",
                                   "reason": "the cluster is out of reach"}])

    def test_departWhileClaiming(self) -> None:
        """
        A newcomer gone before its claim is granted never arrives, nobody is told, and the key
        is given back as soon as it is granted; meanwhile it is still refused here.
        """
        bob = Recorder()
        arriving = self.hub.arrive(bob, "Bob")
        self.assertFalse(self.hub.depart(bob))
        self.failureResultOf(self.hub.arrive(Recorder(), "bob"), ChatError)
        self.registry.grant("bob")
        self.failureResultOf(arriving, ChatError)
        self.assertNotIn(bob, self.hub)
        self.assertEqual(self.registry.released, ["bob"])
        self.assertEqual(self.alice.events, [])
        carol = Recorder()
        self.hub.arrive(carol, "bob")
        self.registry.grant("bob")
        self.assertIs(self.hub.memberNamed("bob"), carol)

    def test_departWhileClaimingRefused(self) -> None:
        """A newcomer gone before its claim is refused leaves nothing behind."""
        bob = Recorder()
        arriving = self.hub.arrive(bob, "Bob")
        self.hub.depart(bob)
        self.registry.refuse("bob", NicknameTaken("Bob"))
        self.failureResultOf(arriving, ChatError)
        self.assertEqual(self.registry.released, [])
        self.hub.arrive(Recorder(), "Bob")
        self.assertEqual(list(self.registry.pending), ["bob"])

    def test_oneClaimAtATime(self) -> None:
        """A member already claiming a nickname is refused a second claim."""
        bob = Recorder()
        self.hub.arrive(bob, "Bob")
        self.failureResultOf(self.hub.arrive(bob, "Robert"), ChatError)
        self.registry.grant("bob")
        renaming = self.hub.rename(bob, "Robert")
        self.assertEqual(
            str(self.failureResultOf(self.hub.rename(bob, "Bobby"), ChatError).value),
            "your last change of nickname is not done yet",
        )
        self.registry.grant("robert")
        self.assertEqual(self.successResultOf(renaming), "Robert")

    def test_renameOnceGranted(self) -> None:
        """A member keeps its nickname until the new one is granted; then the old is released."""
        renaming = self.hub.rename(self.alice, "Alicia")
        self.assertEqual(self.hub.nickOf(self.alice), "Alice")
        self.assertIs(self.hub.memberNamed("alice"), self.alice)
        self.assertEqual(self.alice.events, [])
        self.registry.grant("alicia")
        self.assertEqual(self.successResultOf(renaming), "Alicia")
        self.assertEqual(self.alice.events, [Renamed("Alice", "Alicia")])
        self.assertEqual(self.registry.released, ["alice"])
        self.assertIsNone(self.hub.memberNamed("alice"))
        self.assertEqual(sorted(self.registry.held), ["alicia"])

    def test_renameRefused(self) -> None:
        """A rename the registry refuses leaves the member as it was."""
        renaming = self.hub.rename(self.alice, "Bob")
        self.registry.refuse("bob", NicknameTaken("Bob"))
        self.assertEqual(
            str(self.failureResultOf(renaming, ChatError).value),
            "nickname 'Bob' is already in use",
        )
        self.assertEqual(self.hub.nickOf(self.alice), "Alice")
        self.assertEqual(self.registry.released, [])
        self.assertEqual(self.alice.events, [])

    def test_departWhileRenaming(self) -> None:
        """
        A member gone during its rename gives back its old nickname at once, and the new one
        when it is granted; nobody is told of a rename.
        """
        bob = Recorder()
        self.hub.arrive(bob, "Bob")
        self.registry.grant("bob")
        self.alice.events.clear()
        renaming = self.hub.rename(self.alice, "Alicia")
        self.assertTrue(self.hub.depart(self.alice))
        self.assertEqual(self.registry.released, ["alice"])
        self.registry.grant("alicia")
        self.failureResultOf(renaming, ChatError)
        self.assertEqual(self.registry.released, ["alice", "alicia"])
        self.assertEqual(self.registry.held, {"bob": "Bob"})
        self.assertEqual(bob.events, [Left("lobby", "Alice")])

    def test_caseChangeRelabels(self) -> None:
        """A change of case keeps the key: the registry is told how it is shown, not asked."""
        self.assertEqual(settled(self.hub.rename(self.alice, "ALICE")), "ALICE")
        self.assertEqual(self.registry.relabelled, [(nick_key("ALICE"), "ALICE")])
        self.assertEqual(self.registry.pending, {})

    def test_departReleases(self) -> None:
        """Departing gives the nickname back to the registry."""
        self.hub.depart(self.alice)
        self.assertEqual(self.registry.released, ["alice"])
        self.assertEqual(self.registry.held, {})


class OwnRegistryTests(SynchronousTestCase):
    """A hub made without a registry has one of its own, which answers at once."""

    def test_default(self) -> None:
        """The default registry is a L{LocalNicknames}, kept in step with the members."""
        hub = Hub(Clock())
        registry = hub.nicknames
        self.assertIsInstance(registry, LocalNicknames)
        alice = Recorder()
        arrive(hub, alice, "Alice")
        self.assertIn("alice", registry)
        settled(hub.rename(alice, "Alicia"))
        self.assertNotIn("alice", registry)
        hub.depart(alice)
        self.assertEqual(len(registry), 0)  # type: ignore[arg-type]

    def test_succeedAndFail(self) -> None:
        """Answers given at once, either way, are handled as ones given later."""

        @implementer(INicknameRegistry)
        class Refusing(LocalNicknames):
            def claim(self, key: str, nick: str) -> Deferred[None]:
                if key == nick_key("Mallory"):
                    return fail(NicknameTaken("Mallory"))
                return succeed(None)

        hub = Hub(Clock(), nicknames=Refusing())
        self.assertRaises(ChatError, arrive, hub, Recorder(), "mallory")
        self.assertEqual(arrive(hub, Recorder(), "Alice"), "Alice")
