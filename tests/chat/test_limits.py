"""
Tests for the core's own limits on what one member can make the server show or keep: the size of
a message once made safe to show, runs of blanks, and the budget for creating rooms, with rooms
nobody is in making way for new ones.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from chatsvc.chat import (
    MAX_BLANK_RUN,
    MAX_TEXT_BYTES,
    ROOM_CREATION_INTERVAL,
    ChatError,
    Event,
    Hub,
    IMember,
    Said,
    showText,
)
from chatsvc.chat import StoredMessage
from tests.chat.test_hub import arrive, rename


@implementer(IMember)
class Member:
    """A member that keeps what it is told; C{host} is the address it connects from."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host
        self.events: list[Event] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)


class ShownSizeTests(SynchronousTestCase):
    """A message is bounded by its size as shown, not only as sent."""

    def setUp(self) -> None:
        self.hub = Hub(Clock())
        self.alice, self.bob = Member(), Member()
        arrive(self.hub, self.alice, "Alice")
        arrive(self.hub, self.bob, "Bob")
        self.room = self.hub.defaultRoom

    def test_controlCharactersExpand(self) -> None:
        """
        C1 control characters take 2 bytes each and are shown as 8 (C{<U+0080>}): 600 of them
        (1,200 bytes sent) would be 4,800 bytes shown, and are refused; 512 (4,096 shown) pass.
        """
        with self.assertRaises(ChatError) as caught:
            self.hub.say(self.alice, self.room, "\x80" * 600)
        self.assertIn(f"at most {MAX_TEXT_BYTES} bytes", str(caught.exception))
        self.assertIn("4800", str(caught.exception))
        self.assertEqual(self.bob.events, [])
        self.hub.say(self.alice, self.room, "\x80" * 512)
        said = self.bob.events[-1]
        assert isinstance(said, Said)
        self.assertEqual(len(said.text.encode("utf-8")), MAX_TEXT_BYTES)

    def test_everyKindOfText(self) -> None:
        """Actions, private messages and topics are held to the same bound."""
        tooLong = "\x1b" * (MAX_TEXT_BYTES // 2 + 1)  # each shown as ^[: two bytes
        for attempt in [
            lambda: self.hub.act(self.alice, self.room, tooLong),
            lambda: self.hub.whisper(self.alice, "Bob", tooLong),
        ]:
            self.assertRaises(ChatError, attempt)
        self.assertEqual([e for e in self.bob.events if not e.__class__.__name__ == "Joined"], [])

    def test_plainTextUpToTheBound(self) -> None:
        """Plain text of the longest line a client may send is not affected."""
        self.hub.say(self.alice, self.room, "é" * (MAX_TEXT_BYTES // 2))
        said = self.bob.events[-1]
        assert isinstance(said, Said)
        self.assertEqual(said.text, "é" * (MAX_TEXT_BYTES // 2))


class BlankRunTests(SynchronousTestCase):
    """Runs of blanks cannot push text to where a terminal would start a new row."""

    def test_longRunsCut(self) -> None:
        """75 spaces before C{Bob: hi} are shown as four: the line cannot pass for Bob's."""
        self.assertEqual(showText(" " * 75 + "Bob: hi"), " " * MAX_BLANK_RUN + "Bob: hi")
        self.assertEqual(showText("a" + " " * 9 + "b" + " " * 5), "a    b    ")

    def test_tabsAreSpaces(self) -> None:
        """A tab (as wide as a terminal likes) is shown as one space; runs of them are cut."""
        self.assertEqual(showText("a\tb"), "a b")
        self.assertEqual(showText("a" + "\t" * 10 + "b"), "a    b")
        self.assertEqual(showText(" \t \t "), "    ")

    def test_shortRunsKept(self) -> None:
        """Up to four spaces in a row are left as they are: a little indentation survives."""
        self.assertEqual(showText("if x:\n"), "if x:^J")
        self.assertEqual(showText("    return 1"), "    return 1")
        self.assertEqual(showText("a  b   c"), "a  b   c")

    def test_relayed(self) -> None:
        """What a member says is shown that way to the others."""
        hub = Hub(Clock())
        alice, bob = Member(), Member()
        arrive(hub, alice, "Alice")
        arrive(hub, bob, "Bob")
        hub.say(alice, hub.defaultRoom, " " * 75 + "Bob: hi")
        self.assertEqual(bob.events[-1], Said("lobby", "Alice", "    Bob: hi"))


class RoomCreationTests(SynchronousTestCase):
    """Creating rooms costs a budget, per member and per address."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = Hub(self.clock, roomsPerMember=3, roomsPerAddress=5, maxRooms=100)

    def member(self, nick: str, host: str | None = "10.0.0.1") -> Member:
        member = Member(host)
        arrive(self.hub, member, nick)
        return member

    def test_perMember(self) -> None:
        """
        A member creates three rooms at once, then is refused, with how long to wait; one
        more a minute later. Joining rooms that exist costs nothing.
        """
        alice = self.member("Alice", None)
        for number in range(3):
            self.hub.join(alice, f"r{number}")
        with self.assertRaises(ChatError) as caught:
            self.hub.join(alice, "r3")
        self.assertIn("created too many rooms lately", str(caught.exception))
        self.assertIn(f"in {ROOM_CREATION_INTERVAL:.0f} s", str(caught.exception))
        bob = self.member("Bob", None)
        for number in range(3):
            self.hub.join(bob, f"r{number}")  # they exist: free
        self.hub.join(bob, "b0")
        self.clock.advance(ROOM_CREATION_INTERVAL)
        self.hub.join(alice, "r3")
        self.assertRaises(ChatError, self.hub.join, alice, "r4")

    def test_perAddress(self) -> None:
        """
        Members connected from one address share a budget: fresh members, or the same member
        coming back, cannot get round it; another address has its own.
        """
        created = 0
        for number in range(3):
            member = self.member(f"m{number}")
            for _ in range(2):
                try:
                    self.hub.join(member, f"room{created}")
                except ChatError:
                    break
                created += 1
            self.hub.depart(member)
        self.assertEqual(created, 5)
        elsewhere = self.member("Elsewhere", "10.0.0.2")
        self.hub.join(elsewhere, "mine")

    def test_refusedCostsNothing(self) -> None:
        """A refused name or a full server spends nothing of the budget."""
        alice = self.member("Alice")
        for _ in range(5):
            self.assertRaises(ChatError, self.hub.join, alice, "bad name!")
        for number in range(3):
            self.hub.join(alice, f"r{number}")


class IdleRoomTests(SynchronousTestCase):
    """Rooms nobody is in never keep anyone from creating one."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = Hub(self.clock, maxRooms=3, roomsPerMember=100, roomsPerAddress=100)
        self.alice = Member()
        arrive(self.hub, self.alice, "Alice")

    def test_emptyRoomsMakeWay(self) -> None:
        """
        At the bound, a new room takes the place of the room left empty longest (history and
        topic do not keep it); the lobby and rooms with members are never forgotten.
        """
        old = self.hub.join(self.alice, "old")
        self.hub.say(self.alice, old, "kept on disk")
        self.hub.setTopic(self.alice, old, "a topic")
        self.clock.advance(10)
        newer = self.hub.join(self.alice, "newer")
        self.hub.say(self.alice, newer, "newer history")
        self.hub.part(self.alice, "old")
        self.clock.advance(10)
        self.hub.part(self.alice, "newer")
        self.hub.join(self.alice, "fresh")
        self.assertEqual([room.name for room in self.hub.rooms()], ["fresh", "lobby", "newer"])
        self.hub.join(self.alice, "another")  # "newer" goes now
        self.assertEqual([room.name for room in self.hub.rooms()], ["another", "fresh", "lobby"])

    def test_allOccupied(self) -> None:
        """When every room has members, a new one is refused, as before."""
        self.hub.join(self.alice, "a")
        self.hub.join(self.alice, "b")
        with self.assertRaises(ChatError) as caught:
            self.hub.join(self.alice, "c")
        self.assertIn("too many rooms already", str(caught.exception))

    def test_restoredRoomsMakeWay(self) -> None:
        """Rooms brought back from the store at start-up make way too, oldest first."""
        hub = Hub(self.clock, maxRooms=3)
        hub.restore(
            {
                key: [StoredMessage(key, key, when, "Bob", "hi", False)]
                for key, when in [("older", 100.0), ("recent", 200.0)]
            }
        )
        member = Member()
        arrive(hub, member, "Alice")
        hub.join(member, "new")
        self.assertEqual([room.name for room in hub.rooms()], ["lobby", "new", "recent"])


class LookAlikeRefusalTests(SynchronousTestCase):
    """A nickname refused for looking like another says which one."""

    def test_namesTheHolder(self) -> None:
        """
        C{a1ice} (a digit one for the l), beside C{alice}, is refused naming C{alice}, and so
        is a fullwidth C{ａｌｉｃｅ}; a change of case only gets the plain refusal.
        """
        hub = Hub(Clock())
        arrive(hub, Member(), "alice")
        with self.assertRaises(ChatError) as caught:
            arrive(hub, Member(), "a1ice")
        self.assertEqual(
            str(caught.exception), "nickname 'a1ice' is already in use: it looks too like 'alice'"
        )
        with self.assertRaises(ChatError) as caught:
            arrive(hub, Member(), "ALICE")
        self.assertEqual(str(caught.exception), "nickname 'ALICE' is already in use")
        bob = Member()
        arrive(hub, bob, "bob")
        with self.assertRaises(ChatError) as caught:
            rename(hub, bob, "ａｌｉｃｅ")
        self.assertIn("looks too like 'alice'", str(caught.exception))
