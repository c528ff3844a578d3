"""Tests for L{chatsvc.core}: the room and its rules, with no network and no Twisted protocol."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chatsvc.core import (
    MAX_NICK_LENGTH,
    Acted,
    ChatError,
    Event,
    IMember,
    Joined,
    Left,
    Renamed,
    Room,
    Said,
    Whispered,
    nick_key,
    validate_nick,
)


@implementer(IMember)
class Recorder:
    """A member that remembers every event delivered to it."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)


@implementer(IMember)
class Broken:
    """A member whose delivery always fails."""

    def deliver(self, event: Event) -> None:
        raise RuntimeError("this member is broken")


def roomWith(*nicks: str) -> tuple[Room, list[Recorder]]:
    """A room with one L{Recorder} per nickname, their join events cleared."""
    room = Room()
    members = []
    for nick in nicks:
        member = Recorder()
        room.join(member, nick)
        members.append(member)
    for member in members:
        member.events.clear()
    return room, members


class NicknameTests(SynchronousTestCase):
    """Nickname validation and comparison."""

    def test_valid(self) -> None:
        """Ordinary names in any script pass, trimmed of surrounding spaces."""
        for nick in ["Alice", "dj_42", "Zoë", "李雷", "a" * MAX_NICK_LENGTH, "x-y.z"]:
            self.assertEqual(validate_nick(f"  {nick} "), nick)

    def test_invalid(self) -> None:
        """Each forbidden form is refused with a ChatError that says why."""
        cases = {
            "": "empty",
            "   ": "empty",
            "a" * (MAX_NICK_LENGTH + 1): "at most",
            "two words": "spaces",
            "tab\there": "spaces",
            "nb\u00a0sp": "spaces",
            "esc\x1b[31m": "control",
            "bidi\u202eevil": "control",
            "zero\u200bwidth": "control",
            "col:on": "':'",
            "com,ma": "','",
            "/slash": "'/'",
            "*star": "'*'",
            "#hash": "'#'",
            "@at": "'@'",
            "q": "quit word",
            "EXIT": "quit word",
        }
        for nick, reason in cases.items():
            with self.subTest(nick=nick):
                error = self.assertRaises(ChatError, validate_nick, nick)
                self.assertIn(reason, str(error))

    def test_keyFoldsCaseAndWidth(self) -> None:
        """Nicknames compare case-insensitively and after compatibility normalization."""
        self.assertEqual(nick_key("Alice"), nick_key("aLICE"))
        self.assertEqual(nick_key("Alice"), nick_key("Ａｌｉｃｅ"))
        # Folding U+0390 decomposes it; its capital form composes: still one name.
        self.assertEqual(nick_key("\u0390"), nick_key("\u03aa\u0301"))
        self.assertEqual(nick_key("\u03b0"), nick_key("\u03ab\u0301"))
        self.assertEqual(nick_key("Straße"), nick_key("STRASSE"))
        self.assertNotEqual(nick_key("Alice"), nick_key("Alicia"))

    def test_nfcNormalized(self) -> None:
        """A decomposed accent is stored composed, so it looks and compares the same."""
        self.assertEqual(validate_nick("Zoe\u0308"), "Zo\u00eb")


class RoomTests(SynchronousTestCase):
    """The room's membership and broadcasts."""

    def test_recorderIsMember(self) -> None:
        """The test double provides IMember, like any front-end's connection must."""
        verifyObject(IMember, Recorder())

    def test_joinAnnouncedToOthers(self) -> None:
        """A join reaches everyone already there, not the newcomer."""
        room, (alice,) = roomWith("Alice")
        bob = Recorder()
        self.assertEqual(room.join(bob, " Bob "), "Bob")
        self.assertEqual(alice.events, [Joined("Bob")])
        self.assertEqual(bob.events, [])
        self.assertEqual(room.nicks(), ["Alice", "Bob"])
        self.assertEqual(len(room), 2)
        self.assertIn(bob, room)

    def test_nickInUseCaseInsensitively(self) -> None:
        """A nickname taken in another case is refused, and nothing is announced."""
        room, (alice,) = roomWith("Alice")
        error = self.assertRaises(ChatError, room.join, Recorder(), "ALICE")
        self.assertIn("already in use", str(error))
        self.assertEqual(alice.events, [])
        self.assertEqual(len(room), 1)

    def test_joinTwice(self) -> None:
        """A member cannot join the same room twice."""
        room, (alice,) = roomWith("Alice")
        self.assertRaises(ChatError, room.join, alice, "Other")

    def test_sayReachesOthersOnly(self) -> None:
        """A message reaches every other member once, and not its sender."""
        room, (alice, bob, carol) = roomWith("Alice", "Bob", "Carol")
        room.say(alice, "hello")
        self.assertEqual(alice.events, [])
        self.assertEqual(bob.events, [Said("Alice", "hello")])
        self.assertEqual(carol.events, [Said("Alice", "hello")])

    def test_sayNeutralizes(self) -> None:
        """Control characters in a message are made visible, not relayed."""
        room, (alice, bob) = roomWith("Alice", "Bob")
        room.say(alice, "\x1b[2Jgone\rX\u202e")
        self.assertEqual(bob.events, [Said("Alice", "^[[2Jgone^MX<U+202E>")])

    def test_sayEmpty(self) -> None:
        """An empty message is an error, not an empty line for everyone."""
        room, (alice, bob) = roomWith("Alice", "Bob")
        self.assertRaises(ChatError, room.say, alice, "  ")
        self.assertEqual(bob.events, [])

    def test_act(self) -> None:
        """An action reaches the others."""
        room, (alice, bob) = roomWith("Alice", "Bob")
        room.act(alice, "waves")
        self.assertEqual(bob.events, [Acted("Alice", "waves")])
        self.assertEqual(alice.events, [])

    def test_leave(self) -> None:
        """Leaving is announced to the others once; leaving again does nothing."""
        room, (alice, bob) = roomWith("Alice", "Bob")
        self.assertTrue(room.leave(alice, " lunch "))
        self.assertFalse(room.leave(alice))
        self.assertEqual(bob.events, [Left("Alice", "lunch")])
        self.assertEqual(room.nicks(), ["Bob"])
        self.assertIsNone(room.memberNamed("alice"))

    def test_leaveFreesNick(self) -> None:
        """A nickname is free again once its member has left."""
        room, (alice,) = roomWith("Alice")
        room.leave(alice)
        room.join(Recorder(), "alice")
        self.assertEqual(room.nicks(), ["alice"])

    def test_rename(self) -> None:
        """A rename reaches everyone, the renamed member included, and moves the name."""
        room, (alice, bob) = roomWith("Alice", "Bob")
        self.assertEqual(room.rename(alice, "Alicia"), "Alicia")
        self.assertEqual(alice.events, [Renamed("Alice", "Alicia")])
        self.assertEqual(bob.events, [Renamed("Alice", "Alicia")])
        self.assertIs(room.memberNamed("alicia"), alice)
        self.assertIsNone(room.memberNamed("alice"))
        self.assertEqual(room.nickOf(alice), "Alicia")

    def test_renameCaseOnly(self) -> None:
        """Changing only the case of one's own nickname is allowed."""
        room, (alice,) = roomWith("Alice")
        self.assertEqual(room.rename(alice, "ALICE"), "ALICE")
        self.assertIs(room.memberNamed("alice"), alice)

    def test_renameRefused(self) -> None:
        """Renaming to a taken, invalid or identical nickname is refused, quietly for others."""
        room, (alice, bob) = roomWith("Alice", "Bob")
        self.assertRaises(ChatError, room.rename, alice, "bob")
        self.assertRaises(ChatError, room.rename, alice, "no way")
        self.assertRaises(ChatError, room.rename, alice, "Alice")
        self.assertEqual(bob.events, [])
        self.assertEqual(room.nicks(), ["Alice", "Bob"])

    def test_whisper(self) -> None:
        """A private message reaches only its recipient, found case-insensitively."""
        room, (alice, bob, carol) = roomWith("Alice", "Bob", "Carol")
        sent = room.whisper(alice, "BOB", "psst")
        self.assertEqual(sent, Whispered("Alice", "Bob", "psst"))
        self.assertEqual(bob.events, [sent])
        self.assertEqual(carol.events, [])
        self.assertEqual(alice.events, [])

    def test_whisperUnknown(self) -> None:
        """A private message to nobody is a clear error."""
        room, (alice,) = roomWith("Alice")
        error = self.assertRaises(ChatError, room.whisper, alice, "Zed", "hi")
        self.assertEqual(str(error), "no such member: Zed")

    def test_brokenMemberIsolated(self) -> None:
        """One member failing to take an event does not keep it from the others."""
        room, (alice,) = roomWith("Alice")
        room.join(Broken(), "Broken")
        bob = Recorder()
        room.join(bob, "Bob")
        room.say(alice, "still here")
        self.assertEqual(bob.events, [Said("Alice", "still here")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_memberLeavingDuringBroadcast(self) -> None:
        """A member that leaves while an event is being delivered does not disturb the loop."""
        room, (alice, bob) = roomWith("Alice", "Bob")

        @implementer(IMember)
        class Leaver:
            def deliver(self, event: Event) -> None:
                if isinstance(event, Said):
                    room.leave(self)

        room.join(Leaver(), "Leaver")
        carol = Recorder()
        room.join(carol, "Carol")
        bob.events.clear()
        room.say(alice, "hi")
        self.assertEqual(bob.events, [Said("Alice", "hi"), Left("Leaver")])
        self.assertEqual(carol.events, [Left("Leaver"), Said("Alice", "hi")])
