"""
Tests for away on the line door: C{/away [MESSAGE]}, away members marked in member lists (on
joining a room and for C{/who}), C{/whois}, C{/msg} to a member who is away, and an account
away on all of its connections, on in-memory transports.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from chatsvc.chat import MAX_AWAY_LENGTH, Accounts, Hub, MemoryAccountStore
from chatsvc.chat.moderation import MemoryModerationStore, Moderation
from chatsvc.line.protocol import ChatFactory
from chatsvc.sessions.limits import Limits
from tests.chat.test_accounts import PlainHasher
from tests.line.test_accounts import LineAccountsTestCase
from tests.line.test_protocol import Client, ProtocolTestCase


class AwayTests(ProtocolTestCase):
    """One connection per member."""

    def test_awayAndBack(self) -> None:
        """/away MESSAGE marks the member away; /away alone, back; the hub keeps it."""
        alice = self.join("Alice")
        alice.send("/away lunch, back at 2\n")
        self.assertEqual(alice.lines(), ["*** You are marked as away: lunch, back at 2"])
        self.assertEqual(self.room.awayOf("alice"), "lunch, back at 2")
        alice.send("/AWAY   gone fishing  \n")
        self.assertEqual(alice.lines(), ["*** You are marked as away: gone fishing"])
        self.assertEqual(self.room.awayOf("Alice"), "gone fishing")
        alice.send("/away\n")
        self.assertEqual(alice.lines(), ["*** You are no longer marked as away"])
        self.assertIsNone(self.room.awayOf("Alice"))
        alice.send("/away   \n")
        self.assertEqual(alice.lines(), ["*** You are not marked as away"])

    def test_othersAreNotTold(self) -> None:
        """Going away is no event of the room: the others see it where they look."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/away lunch\n")
        alice.send("/away\n")
        self.assertEqual(bob.lines(), [])
        self.assertEqual(len(alice.lines()), 2)

    def test_tooLong(self) -> None:
        """A message over the limit is refused, as an error; the member stays as it was."""
        alice = self.join("Alice")
        alice.send("/away lunch\n")
        alice.lines()
        alice.send("/away " + "x" * (MAX_AWAY_LENGTH + 1) + "\n")
        self.assertEqual(
            alice.lines(),
            [f"*** Error: an away message may be at most {MAX_AWAY_LENGTH} characters long"],
        )
        self.assertEqual(self.room.awayOf("Alice"), "lunch")
        alice.send("/away " + "x" * MAX_AWAY_LENGTH + "\n")
        self.assertEqual(alice.lines(), ["*** You are marked as away: " + "x" * MAX_AWAY_LENGTH])

    def test_madeSafe(self) -> None:
        """Control characters in the message are shown made safe, as in any text."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/away out\x1b[2J\n")
        self.assertEqual(alice.lines(), ["*** You are marked as away: out^[[2J"])
        bob.send("/whois Alice\n")
        self.assertIn("***   away: out^[[2J", bob.lines())

    def test_whois(self) -> None:
        """/whois shows the away message, after the idle time, while the member is away."""
        alice, bob = self.join("Alice"), self.join("Bob")
        bob.send("/whois Alice\n")
        self.assertEqual(
            bob.lines(),
            ["*** Alice: a guest", "***   active now", "***   rooms you share: lobby"],
        )
        alice.send("/away lunch\n")
        bob.send("/whois alice\n")
        self.assertEqual(
            bob.lines(),
            [
                "*** Alice: a guest",
                "***   active now",
                "***   away: lunch",
                "***   rooms you share: lobby",
            ],
        )

    def test_who(self) -> None:
        """/who marks the members who are away, and only them, sorted as ever."""
        carol = self.join("carol")
        alice, bob = self.join("Alice"), self.join("bob")
        alice.send("/away lunch\n")
        carol.send("/away meeting\n")
        bob.send("/who\n")
        self.assertEqual(bob.lines(), ["*** Members (3): Alice (away), bob, carol (away)"])
        alice.send("/away\n")
        bob.send("/who lobby\n")
        self.assertEqual(bob.lines(), ["*** Members (3): Alice, bob, carol (away)"])

    def test_whoOnContinuationLines(self) -> None:
        """Past 100 names a line, the names on the continuation lines are marked too."""
        self.factory = ChatFactory(
            self.room, Limits(maxConnectionsPerAddress=200, addressFloodBurst=1000)
        )
        clients = [self.join(f"m{number:03d}") for number in range(102)]
        clients[101].send("/away brb\n")
        clients[0].send("/away brb\n")
        clients[1].send("/who\n")
        first, second = clients[1].lines()
        self.assertTrue(first.startswith("*** Members (102): m000 (away), m001, m002, "), first)
        self.assertEqual(second, "***   m100, m101 (away)")

    def test_joinMemberList(self) -> None:
        """The member list on joining a room marks those away."""
        alice = self.join("Alice")
        alice.send("/join games\n/away lunch\n")
        alice.lines()
        bob = self.join("Bob")
        bob.send("/join games\n")
        self.assertEqual(
            bob.lines(),
            ["*** You joined games; now talking there", "*** Members (2): Alice (away), Bob"],
        )

    def test_arrivalMemberList(self) -> None:
        """The newcomer's member list of the default room marks those away too."""
        alice = self.join("Alice")
        alice.send("/away lunch\n")
        bob = self.connect()
        bob.send("Bob\n")
        self.assertEqual(bob.lines()[1], "*** Members (2): Alice (away), Bob")

    def test_msgToAwayMember(self) -> None:
        """A private message to a member who is away: the receipt, then its away message."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/away lunch\n")
        alice.lines()
        bob.send("/msg alice are you there?\n")
        self.assertEqual(bob.lines(), ["-> *Alice* are you there?", "*** Alice is away: lunch"])
        self.assertEqual(alice.lines(), ["*Bob* are you there?"])  # still delivered
        alice.send("/msg Bob back now\n")
        self.assertEqual(alice.lines(), ["-> *Bob* back now"])  # Bob is not away
        bob.lines()
        alice.send("/away\n")
        alice.lines()
        bob.send("/msg Alice ok\n")
        self.assertEqual(bob.lines(), ["-> *Alice* ok"])

    def test_leavingEndsAway(self) -> None:
        """A member who leaves is away no more: coming back under its name, it is not."""
        alice = self.join("Alice")
        alice.send("/away lunch\n/quit\n")
        alice.drop()
        self.assertIsNone(self.room.awayOf("Alice"))
        self.join("Alice").send("/who\n")
        bob = self.join("Bob")
        bob.send("/who\n")
        self.assertEqual(bob.lines(), ["*** Members (2): Alice, Bob"])

    def test_renamedStaysAway(self) -> None:
        """Away is the member's: it stays through a rename, under the new name."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/away lunch\n/nick Alicia\n")
        bob.lines()
        bob.send("/who\n")
        self.assertEqual(bob.lines(), ["*** Members (2): Alicia (away), Bob"])

    def test_helpListsAway(self) -> None:
        alice = self.join("Alice")
        alice.send("/help\n")
        self.assertTrue(any(line.startswith("***   /away [MESSAGE]") for line in alice.lines()))


class AwayWithRolesTests(ProtocolTestCase):
    """Role prefixes and the away mark together."""

    def setUp(self) -> None:
        self.clock = Clock()
        accounts = Accounts(self.clock, PlainHasher(), MemoryAccountStore())
        self.room = Hub(self.clock, accounts=accounts, moderation=Moderation(self.clock, MemoryModerationStore()))
        self.factory = ChatFactory(self.room, self.limits)

    def registered(self, nick: str) -> Client:
        client = self.join(nick)
        client.send("/register sesame-open\n")
        client.lines()
        return client

    def test_prefixAndMark(self) -> None:
        alice, bob, carol = self.registered("Alice"), self.registered("Bob"), self.registered("Carol")
        for member in (alice, bob, carol):
            member.send("/join games\n")
        alice.send("/op Carol\n/voice Bob\n")
        carol.send("/away lunch\n")
        bob.send("/away brb\n")
        bob.lines()
        bob.send("/who\n")
        self.assertEqual(bob.lines(), ["*** Members (3): @Alice, +Bob (away), @Carol (away)"])


class AwaySeveralConnectionsTests(LineAccountsTestCase):
    """An account on two terminals is one member: away on both, or on neither."""

    def loggedIn(self) -> Client:
        client = self.connect()
        client.send("Alice\nsesame-open\n")
        self.assertEqual(client.lines()[:2], ["GET_PASSWORD", "Alice connected to server!"])
        return client

    def test_twoTerminals(self) -> None:
        self.registered("Alice")
        bob = self.join("Bob")
        laptop, phone = self.loggedIn(), self.loggedIn()
        bob.lines()
        laptop.send("/away lunch\n")
        self.assertEqual(laptop.lines(), ["*** You are marked as away: lunch"])
        self.assertEqual(
            phone.lines(), ["*** You are marked as away from another connection: lunch"]
        )
        self.assertEqual(bob.lines(), [])
        bob.send("/who\n")
        self.assertEqual(bob.lines(), ["*** Members (2): Alice (away), Bob"])
        bob.send("/whois Alice\n")
        self.assertIn("***   away: lunch", bob.lines())
        bob.send("/msg Alice hello\n")
        self.assertEqual(bob.lines(), ["-> *Alice* hello", "*** Alice is away: lunch"])
        self.assertEqual((laptop.lines(), phone.lines()), (["*Bob* hello"], ["*Bob* hello"]))

        # The phone sees the state the laptop set, and may end it.
        phone.send("/who\n")
        self.assertEqual(phone.lines(), ["*** Members (2): Alice (away), Bob"])
        phone.send("/away\n")
        self.assertEqual(phone.lines(), ["*** You are no longer marked as away"])
        self.assertEqual(
            laptop.lines(), ["*** You are no longer marked as away (from another connection)"]
        )
        laptop.send("/away\n")
        self.assertEqual(laptop.lines(), ["*** You are not marked as away"])
        bob.send("/who\n")
        self.assertEqual(bob.lines(), ["*** Members (2): Alice, Bob"])

        # One connection leaving leaves the member, and its away message, in place.
        phone.send("/away lunch\n")
        laptop.lines()
        phone.send("/quit\n")
        phone.drop()
        self.assertEqual(self.room.awayOf("Alice"), "lunch")
        laptop.send("/away\n")
        self.assertEqual(laptop.lines(), ["*** You are no longer marked as away"])
