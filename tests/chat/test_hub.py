"""
Tests for L{chatsvc.chat}: members, nicknames, rooms and history, with no network and no Twisted
protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, cast

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer, provider
from zope.interface.verify import verifyObject

from chatsvc.chat import (
    IBatchDelivery,
    MAX_NICK_LENGTH,
    MAX_ROOM_NAME_LENGTH,
    MAX_TOPIC_LENGTH,
    Acted,
    ChatError,
    DeliveryFailed,
    Event,
    Hub,
    IMember,
    Joined,
    JoinsAndLeaves,
    Left,
    Renamed,
    Said,
    TopicChanged,
    Whispered,
    deliverToEach,
    nick_key,
    room_key,
    validate_nick,
    validate_room_name,
)
from chatsvc.chat import StoredMessage


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


class MemoryStore:
    """A history store that keeps what it is given in a list."""

    def __init__(self) -> None:
        self.added: list[StoredMessage] = []

    def add(self, message: StoredMessage) -> None:
        self.added.append(message)


T = TypeVar("T")


def settled(answer: Deferred[T]) -> T:
    """What C{answer} has already fired with; its failure's exception raised, if it failed."""
    results: list[T | Failure] = []
    answer.addBoth(results.append)
    if not results:
        raise AssertionError(f"{answer!r} has not been answered")
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def arrive(hub: Hub, member: IMember, nick: str) -> str:
    """L{Hub.arrive}, answered at once (as this server's own registry answers)."""
    return settled(hub.arrive(member, nick))


def rename(hub: Hub, member: IMember, nick: str) -> str:
    """L{Hub.rename}, answered at once."""
    return settled(hub.rename(member, nick))


def hubWith(*nicks: str, **options: object) -> tuple[Hub, list[Recorder]]:
    """A hub with one L{Recorder} per nickname in the default room, their events cleared."""
    hub = Hub(Clock(), **options)  # type: ignore[arg-type]
    members = []
    for nick in nicks:
        member = Recorder()
        arrive(hub, member, nick)
        members.append(member)
    for member in members:
        member.events.clear()
    return hub, members


class NicknameTests(SynchronousTestCase):
    """Nickname validation and comparison."""

    def test_valid(self) -> None:
        """Ordinary names in any script pass, trimmed of surrounding spaces."""
        for nick in ["Alice", "dj_42", "Zoë", "李雷", "a" * MAX_NICK_LENGTH, "x-y_z"]:
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


class HubTests(SynchronousTestCase):
    """Arriving, talking, renaming and going, in the default room."""

    def test_recorderIsMember(self) -> None:
        """The test double provides IMember, like any front-end's connection must."""
        verifyObject(IMember, Recorder())

    def test_arrivalAnnouncedToOthers(self) -> None:
        """A newcomer lands in the lobby; the join reaches everyone already there, not it."""
        hub, (alice,) = hubWith("Alice")
        bob = Recorder()
        self.assertEqual(arrive(hub, bob, " Bob "), "Bob")
        self.assertEqual(alice.events, [Joined("lobby", "Bob")])
        self.assertEqual(bob.events, [])
        self.assertEqual(hub.nicks(), ["Alice", "Bob"])
        self.assertEqual(hub.nicks(hub.defaultRoom), ["Alice", "Bob"])
        self.assertEqual(len(hub), 2)
        self.assertIn(bob, hub)
        self.assertEqual(hub.roomsOf(bob), [hub.defaultRoom])

    def test_defaultRoomNamed(self) -> None:
        """The default room's name is a choice of the server's."""
        hub, (alice,) = hubWith("Alice", defaultRoom="Main")
        self.assertEqual([room.name for room in hub.roomsOf(alice)], ["Main"])

    def test_nickInUseCaseInsensitively(self) -> None:
        """A nickname taken in another case is refused, and nothing is announced."""
        hub, (alice,) = hubWith("Alice")
        error = self.assertRaises(ChatError, arrive, hub, Recorder(), "ALICE")
        self.assertIn("already in use", str(error))
        self.assertEqual(alice.events, [])
        self.assertEqual(len(hub), 1)

    def test_arriveTwice(self) -> None:
        """A member cannot take a second nickname by arriving again."""
        hub, (alice,) = hubWith("Alice")
        self.assertRaises(ChatError, arrive, hub, alice, "Other")

    def test_sayReachesOthersOnly(self) -> None:
        """A message reaches every other member of the room once, and not its sender."""
        hub, (alice, bob, carol) = hubWith("Alice", "Bob", "Carol")
        hub.say(alice, hub.room("lobby"), "hello")
        self.assertEqual(alice.events, [])
        self.assertEqual(bob.events, [Said("lobby", "Alice", "hello")])
        self.assertEqual(carol.events, [Said("lobby", "Alice", "hello")])

    def test_sayNeutralizes(self) -> None:
        """Control characters in a message are made visible, not relayed."""
        hub, (alice, bob) = hubWith("Alice", "Bob")
        hub.say(alice, hub.room("lobby"), "\x1b[2Jgone\rX\u202e")
        self.assertEqual(bob.events, [Said("lobby", "Alice", "^[[2Jgone^MX<U+202E>")])

    def test_sayEmpty(self) -> None:
        """An empty message is an error, not an empty line for everyone."""
        hub, (alice, bob) = hubWith("Alice", "Bob")
        self.assertRaises(ChatError, hub.say, alice, hub.room("lobby"), "  ")
        self.assertEqual(bob.events, [])

    def test_act(self) -> None:
        """An action reaches the others."""
        hub, (alice, bob) = hubWith("Alice", "Bob")
        hub.act(alice, hub.room("lobby"), "waves")
        self.assertEqual(bob.events, [Acted("lobby", "Alice", "waves")])
        self.assertEqual(alice.events, [])

    def test_depart(self) -> None:
        """Going is announced to the others once; going again does nothing."""
        hub, (alice, bob) = hubWith("Alice", "Bob")
        self.assertTrue(hub.depart(alice, " lunch "))
        self.assertFalse(hub.depart(alice))
        self.assertEqual(bob.events, [Left("lobby", "Alice", "lunch")])
        self.assertEqual(hub.nicks(), ["Bob"])
        self.assertIsNone(hub.memberNamed("alice"))
        self.assertNotIn(alice, hub)

    def test_departFreesNick(self) -> None:
        """A nickname is free again once its member has gone."""
        hub, (alice,) = hubWith("Alice")
        hub.depart(alice)
        arrive(hub, Recorder(), "alice")
        self.assertEqual(hub.nicks(), ["alice"])

    def test_rename(self) -> None:
        """A rename reaches everyone, the renamed member included, and moves the name."""
        hub, (alice, bob) = hubWith("Alice", "Bob")
        self.assertEqual(rename(hub, alice, "Alicia"), "Alicia")
        self.assertEqual(alice.events, [Renamed("Alice", "Alicia")])
        self.assertEqual(bob.events, [Renamed("Alice", "Alicia")])
        self.assertIs(hub.memberNamed("alicia"), alice)
        self.assertIsNone(hub.memberNamed("alice"))
        self.assertEqual(hub.nickOf(alice), "Alicia")

    def test_renameCaseOnly(self) -> None:
        """Changing only the case of one's own nickname is allowed."""
        hub, (alice,) = hubWith("Alice")
        self.assertEqual(rename(hub, alice, "ALICE"), "ALICE")
        self.assertIs(hub.memberNamed("alice"), alice)

    def test_renameRefused(self) -> None:
        """Renaming to a taken, invalid or identical nickname is refused, quietly for others."""
        hub, (alice, bob) = hubWith("Alice", "Bob")
        self.assertRaises(ChatError, rename, hub, alice, "bob")
        self.assertRaises(ChatError, rename, hub, alice, "no way")
        self.assertRaises(ChatError, rename, hub, alice, "Alice")
        self.assertEqual(bob.events, [])
        self.assertEqual(hub.nicks(), ["Alice", "Bob"])

    def test_whisper(self) -> None:
        """A private message reaches only its recipient, found case-insensitively."""
        hub, (alice, bob, carol) = hubWith("Alice", "Bob", "Carol")
        sent = hub.whisper(alice, "BOB", "psst")
        self.assertEqual(sent, Whispered("Alice", "Bob", "psst"))
        self.assertEqual(bob.events, [sent])
        self.assertEqual(carol.events, [])
        self.assertEqual(alice.events, [])

    def test_whisperUnknown(self) -> None:
        """A private message to nobody is a clear error."""
        hub, (alice,) = hubWith("Alice")
        error = self.assertRaises(ChatError, hub.whisper, alice, "Zed", "hi")
        self.assertEqual(str(error), "no such member: Zed")

    def test_brokenMemberIsolated(self) -> None:
        """One member failing to take an event does not keep it from the others."""
        hub, (alice,) = hubWith("Alice")
        arrive(hub, Broken(), "Broken")
        bob = Recorder()
        arrive(hub, bob, "Bob")
        hub.say(alice, hub.room("lobby"), "still here")
        self.assertEqual(bob.events, [Said("lobby", "Alice", "still here")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_memberLeavingDuringBroadcast(self) -> None:
        """A member that goes while an event is being delivered does not disturb the loop."""
        hub, (alice, bob) = hubWith("Alice", "Bob")

        @implementer(IMember)
        class Leaver:
            def deliver(self, event: Event) -> None:
                if isinstance(event, Said):
                    hub.depart(self)

        arrive(hub, Leaver(), "Leaver")
        carol = Recorder()
        arrive(hub, carol, "Carol")
        bob.events.clear()
        hub.say(alice, hub.room("lobby"), "hi")
        self.assertEqual(bob.events, [Said("lobby", "Alice", "hi"), Left("lobby", "Leaver")])
        self.assertEqual(carol.events, [Left("lobby", "Leaver"), Said("lobby", "Alice", "hi")])


@implementer(IMember)
@provider(IBatchDelivery)
class Batched(Recorder):
    """
    A member whose class delivers to many at once (L{IBatchDelivery}), remembering each batch
    it was given.
    """

    batches: list[tuple[tuple[IMember, ...], Event, IMember | None]] = []

    @staticmethod
    def deliverToMany(
        members: Sequence[IMember],
        event: Event,
        exclude: IMember | None,
        failed: DeliveryFailed,
    ) -> None:
        Batched.batches.append((tuple(members), event, exclude))
        for member in members:
            if member is not exclude:
                try:
                    cast(Batched, member).receive(event)
                except Exception as error:
                    failed(member, event, error)

    def __init__(self, broken: bool = False) -> None:
        super().__init__()
        self.broken = broken

    def receive(self, event: Event) -> None:
        if self.broken:
            raise RuntimeError("this batched member is broken")
        self.events.append(event)


class FanOutTests(SynchronousTestCase):
    """How a broadcast reaches members whose class delivers to many at once, and the others."""

    def setUp(self) -> None:
        Batched.batches = []

    def test_onlyWhatProvidesTheInterface(self) -> None:
        """
        A class with a method named C{deliverToMany} but not providing L{IBatchDelivery} is
        delivered to one member at a time: batch delivery is declared, not guessed.
        """

        @implementer(IMember)
        class LooksBatched(Recorder):
            deliverToMany = staticmethod(Batched.deliverToMany)

        hub = Hub(Clock())
        alice, bob = LooksBatched(), Batched()
        arrive(hub, alice, "Alice")
        arrive(hub, bob, "Bob")
        room = hub.room("lobby")
        self.assertEqual(
            room.fanOut, ((deliverToEach, (alice,)), (Batched.deliverToMany, (bob,)))
        )
        self.assertTrue(IBatchDelivery.providedBy(Batched))
        self.assertFalse(IBatchDelivery.providedBy(LooksBatched))

    def test_groups(self) -> None:
        """
        A room's members are grouped by how they are delivered to, each group in joining
        order; the groups are taken again when someone joins or leaves.
        """
        hub = Hub(Clock())
        alice, bob, carol, dave = Batched(), Recorder(), Batched(), Recorder()
        for member, nick in [(alice, "Alice"), (bob, "Bob"), (carol, "Carol"), (dave, "Dave")]:
            arrive(hub, member, nick)
        room = hub.room("lobby")
        self.assertEqual(
            room.fanOut,
            ((Batched.deliverToMany, (alice, carol)), (deliverToEach, (bob, dave))),
        )
        hub.depart(carol)
        self.assertEqual(
            room.fanOut, ((Batched.deliverToMany, (alice,)), (deliverToEach, (bob, dave)))
        )

    def test_broadcastReachesEveryoneOnce(self) -> None:
        """
        A line reaches every other member exactly once, whichever way: the members of a class
        that delivers to many in one call for the event, with the sender to leave out.
        """
        hub = Hub(Clock())
        alice, bob, carol = Batched(), Recorder(), Batched()
        for member, nick in [(alice, "Alice"), (bob, "Bob"), (carol, "Carol")]:
            arrive(hub, member, nick)
        for member in (alice, bob, carol):
            member.events.clear()
        Batched.batches.clear()
        hub.say(alice, hub.room("lobby"), "hi")
        said = Said("lobby", "Alice", "hi")
        self.assertEqual((alice.events, bob.events, carol.events), ([], [said], [said]))
        self.assertEqual(Batched.batches, [((alice, carol), said, alice)])

    def test_failureIsolated(self) -> None:
        """
        A member that fails inside a batch is reported to the hub's onDeliveryError; the
        members after it in the batch, and in the other groups, still get the event.
        """
        hub = Hub(Clock())
        alice, broken, carol, dave = Batched(), Batched(), Batched(), Recorder()
        for member, nick in [(alice, "Alice"), (broken, "Broken"), (carol, "Carol"), (dave, "Dave")]:
            arrive(hub, member, nick)
        for member in (carol, dave):
            member.events.clear()
        broken.broken = True
        hub.say(alice, hub.room("lobby"), "hi")
        said = Said("lobby", "Alice", "hi")
        self.assertEqual((carol.events, dave.events), ([said], [said]))
        (error,) = self.flushLoggedErrors(RuntimeError)
        self.assertIn("batched member is broken", str(error.value))

    def test_deliverToEach(self) -> None:
        """L{deliverToEach} calls C{deliver} on each but the one left out; failures go on."""
        recorder, broken, left = Recorder(), Broken(), Recorder()
        failures: list[tuple[IMember, Event, Exception]] = []
        event = Said("lobby", "Alice", "hi")
        deliverToEach(
            [broken, recorder, left], event, left, lambda *failure: failures.append(failure)
        )
        self.assertEqual((recorder.events, left.events), ([event], []))
        self.assertEqual([(member, sent) for member, sent, _ in failures], [(broken, event)])


class RoomNameTests(SynchronousTestCase):
    """Room name validation and comparison."""

    def test_valid(self) -> None:
        """Letters and digits of any script, '-', '_' and '.'; a leading '#' is dropped."""
        for raw, name in [
            ("games", "games"),
            (" #Games ", "Games"),
            ("año-2026", "año-2026"),
            ("中文", "中文"),
            ("v1.2_beta", "v1.2_beta"),
            ("a" * MAX_ROOM_NAME_LENGTH, "a" * MAX_ROOM_NAME_LENGTH),
        ]:
            self.assertEqual(validate_room_name(raw), name)

    def test_invalid(self) -> None:
        """Each forbidden form is refused with a ChatError that says why."""
        cases = {
            "": "empty",
            "#": "empty",
            "a" * (MAX_ROOM_NAME_LENGTH + 1): "at most",
            "two words": "only letters",
            "esc\x1b": "only letters",
            "bidi\u202e": "only letters",
            "semi;colon": "only letters",
            "-dash": "start with",
            ".dot": "start with",
        }
        for raw, reason in cases.items():
            error = self.assertRaises(ChatError, validate_room_name, raw)
            self.assertIn(reason, str(error), raw)

    def test_key(self) -> None:
        """Room names compare without case, width or a leading '#'."""
        self.assertEqual(room_key("#Games"), room_key("GAMES"))
        self.assertEqual(room_key("ｇａｍｅｓ"), room_key("games"))


class RoomsTests(SynchronousTestCase):
    """Several rooms: joining, parting, topics, and who hears what."""

    def test_joinCreates(self) -> None:
        """Joining a new room creates it; joining is announced in that room only."""
        hub, (alice, bob, carol) = hubWith("Alice", "Bob", "Carol")
        room = hub.join(alice, "#Games")
        self.assertEqual(room.name, "Games")
        hub.join(bob, "games")
        self.assertEqual(alice.events, [Joined("Games", "Bob")])
        self.assertEqual(carol.events, [])
        self.assertEqual(hub.nicks(room), ["Alice", "Bob"])
        self.assertEqual([r.name for r in hub.rooms()], ["Games", "lobby"])
        self.assertEqual(hub.roomsOf(alice), [hub.defaultRoom, room])

    def test_joinAgain(self) -> None:
        """Joining a room one is in changes nothing and tells nobody."""
        hub, (alice, bob) = hubWith("Alice", "Bob")
        self.assertIs(hub.join(alice, "LOBBY"), hub.defaultRoom)
        self.assertEqual(bob.events, [])

    def test_roomsKeptApart(self) -> None:
        """What is said in a room reaches only that room's members."""
        hub, (alice, bob, carol) = hubWith("Alice", "Bob", "Carol")
        hub.join(alice, "games")
        hub.join(bob, "games")
        alice.events.clear()
        hub.say(alice, hub.room("games"), "gg")
        hub.act(alice, hub.room("lobby"), "waves")
        self.assertEqual(bob.events, [Said("games", "Alice", "gg"), Acted("lobby", "Alice", "waves")])
        self.assertEqual(carol.events, [Acted("lobby", "Alice", "waves")])

    def test_notInRoom(self) -> None:
        """Talking in, or parting, a room one is not in is an error."""
        hub, (alice, bob) = hubWith("Alice", "Bob")
        hub.join(bob, "games")
        for call in (
            lambda: hub.say(alice, hub.room("games"), "hi"),
            lambda: hub.act(alice, hub.room("games"), "hi"),
            lambda: hub.part(alice, "games"),
            lambda: hub.setTopic(alice, hub.room("games"), "x"),
        ):
            error = self.assertRaises(ChatError, call)
            self.assertIn("you are not in room", str(error))
        error = self.assertRaises(ChatError, hub.room, "nowhere")
        self.assertEqual(str(error), "no such room: nowhere")

    def test_part(self) -> None:
        """Parting is announced in that room only; an empty room without history goes away."""
        hub, (alice, bob) = hubWith("Alice", "Bob")
        hub.join(alice, "games")
        hub.join(bob, "games")
        alice.events.clear()
        hub.part(bob, "games", "bored")
        self.assertEqual(alice.events, [Left("games", "Bob", "bored")])
        hub.part(alice, "games")
        self.assertEqual([room.name for room in hub.rooms()], ["lobby"])
        self.assertRaises(ChatError, hub.room, "games")

    def test_emptyRoomWithHistoryStays(self) -> None:
        """An empty room whose history is kept stays, so a later joiner sees that history."""
        hub, (alice,) = hubWith("Alice")
        hub.join(alice, "games")
        hub.say(alice, hub.room("games"), "anyone?")
        hub.part(alice, "games")
        self.assertEqual([m.text for m in hub.room("games").history(10)], ["anyone?"])

    def test_defaultRoomStays(self) -> None:
        """The default room stays even when everyone has left it."""
        hub, (alice,) = hubWith("Alice")
        hub.part(alice, "lobby")
        self.assertEqual(hub.roomsOf(alice), [])
        self.assertEqual([room.name for room in hub.rooms()], ["lobby"])

    def test_departFromEveryRoom(self) -> None:
        """Going away is announced once in each of the member's rooms."""
        hub, (alice, bob, carol) = hubWith("Alice", "Bob", "Carol")
        hub.join(alice, "games")
        hub.join(bob, "games")
        bob.events.clear()
        carol.events.clear()
        hub.depart(alice, "bye")
        self.assertEqual(bob.events, [Left("lobby", "Alice", "bye"), Left("games", "Alice", "bye")])
        self.assertEqual(carol.events, [Left("lobby", "Alice", "bye")])

    def test_renameOncePerMember(self) -> None:
        """A rename reaches each member sharing any room once, and nobody else."""
        hub, (alice, bob) = hubWith("Alice", "Bob")
        hub.join(alice, "games")
        hub.join(bob, "games")
        hub.part(alice, "lobby")
        loner = Recorder()
        arrive(hub, loner, "Loner")
        hub.part(loner, "lobby")
        for member in (alice, bob, loner):
            member.events.clear()
        rename(hub, alice, "Alicia")
        self.assertEqual(bob.events, [Renamed("Alice", "Alicia")])
        self.assertEqual(alice.events, [Renamed("Alice", "Alicia")])
        self.assertEqual(loner.events, [])

    def test_whisperAcrossRooms(self) -> None:
        """A private message finds its recipient whatever rooms either is in."""
        hub, (alice, bob) = hubWith("Alice", "Bob")
        hub.part(bob, "lobby")
        hub.whisper(alice, "bob", "where are you?")
        self.assertEqual(bob.events[-1], Whispered("Alice", "Bob", "where are you?"))

    def test_topic(self) -> None:
        """A topic is set for everyone in the room, setter included, and can be cleared."""
        hub, (alice, bob, carol) = hubWith("Alice", "Bob", "Carol")
        hub.join(alice, "games")
        hub.join(bob, "games")
        alice.events.clear()
        hub.setTopic(alice, hub.room("games"), " chess at 5 ")
        self.assertEqual(hub.room("games").topic, "chess at 5")
        self.assertEqual(alice.events, [TopicChanged("games", "Alice", "chess at 5")])
        self.assertEqual(bob.events[-1], TopicChanged("games", "Alice", "chess at 5"))
        self.assertEqual(carol.events, [])
        hub.setTopic(bob, hub.room("games"), None)
        self.assertIsNone(hub.room("games").topic)

    def test_topicKept(self) -> None:
        """
        A topic is kept with the room's settings, and a hub reading them takes it back: the
        room lasts, empty, with its topic. A topic cleared is kept cleared.
        """
        hub, (alice,) = hubWith("Alice")
        hub.join(alice, "games")
        hub.join(alice, "dev")
        hub.setTopic(alice, hub.room("games"), "chess at 5")
        hub.setTopic(alice, hub.room("dev"), "builds")
        hub.setTopic(alice, hub.room("dev"), None)
        again = Hub(Clock(), moderation=hub.moderation)
        again.restoreTopics()
        self.assertEqual([(room.name, room.topic) for room in again.rooms()], [("games", "chess at 5"), ("lobby", None)])

    def test_topicChecked(self) -> None:
        """A topic is neutralized and limited in length."""
        hub, (alice,) = hubWith("Alice")
        self.assertRaises(ChatError, hub.setTopic, alice, hub.room("lobby"), "x" * (MAX_TOPIC_LENGTH + 1))
        self.assertRaises(ChatError, hub.setTopic, alice, hub.room("lobby"), "   ")
        hub.setTopic(alice, hub.room("lobby"), "\x1b[5mblink")
        self.assertEqual(hub.defaultRoom.topic, "^[[5mblink")

    def test_tooManyRooms(self) -> None:
        """Past the cap on rooms, creating one is refused; joining an existing one is not."""
        hub, (alice, bob) = hubWith("Alice", "Bob", maxRooms=2)
        hub.join(alice, "games")
        error = self.assertRaises(ChatError, hub.join, alice, "more")
        self.assertIn("too many rooms", str(error))
        hub.join(bob, "games")

    def test_roomLookup(self) -> None:
        """An unknown room is a clear error."""
        hub, _ = hubWith()
        error = self.assertRaises(ChatError, hub.room, "#nowhere")
        self.assertEqual(str(error), "no such room: #nowhere")


class HistoryTests(SynchronousTestCase):
    """What rooms remember."""

    def test_recorded(self) -> None:
        """Messages and actions are kept, time-stamped, and handed to the store; whispers not."""
        store = MemoryStore()
        hub, (alice, bob) = hubWith("Alice", "Bob", store=store)
        clock = hub.clock
        assert isinstance(clock, Clock)
        clock.advance(1000)
        hub.say(alice, hub.room("lobby"), "hello")
        hub.act(bob, hub.room("lobby"), "waves")
        hub.whisper(alice, "bob", "secret")
        expected = [
            StoredMessage("lobby", "lobby", 1000.0, "Alice", "hello", False),
            StoredMessage("lobby", "lobby", 1000.0, "Bob", "waves", True),
        ]
        self.assertEqual(store.added, expected)
        self.assertEqual(hub.defaultRoom.history(10), expected)
        self.assertEqual(hub.defaultRoom.history(1), expected[1:])
        self.assertEqual(hub.defaultRoom.history(0), [])

    def test_keptBounded(self) -> None:
        """Only the newest messages are kept at hand."""
        hub, (alice,) = hubWith("Alice", historyKept=3)
        for number in range(5):
            hub.say(alice, hub.room("lobby"), str(number))
        self.assertEqual([m.text for m in hub.defaultRoom.history(10)], ["2", "3", "4"])

    def test_restore(self) -> None:
        """Stored history comes back into its rooms, creating them, newest rooms first."""
        hub = Hub(Clock(), historyKept=2, maxRooms=2)
        old = StoredMessage("old", "Old", 1.0, "A", "ancient", False)
        games = [
            StoredMessage("games", "Games", 5.0, "B", str(n), False) for n in range(3)
        ]
        lobby = [StoredMessage("lobby", "lobby", 3.0, "C", "hi", True)]
        hub.restore({"old": [old], "games": games, "lobby": lobby})
        self.assertEqual([room.name for room in hub.rooms()], ["Games", "lobby"])
        self.assertEqual(hub.room("games").history(5), games[-2:])
        self.assertEqual(hub.defaultRoom.history(5), lobby)


def shown(event: Event) -> tuple[tuple[bool, tuple[str, ...]], ...]:
    """What a member is told by C{event}, a summary."""
    assert isinstance(event, JoinsAndLeaves), event
    return event.shown()


class CrowdTests(SynchronousTestCase):
    """Rooms of more than C{crowdSize} members announce joins and leaves together."""

    def crowd(self, *nicks: str) -> tuple[Hub, Clock, list[Recorder]]:
        """A hub whose rooms are crowded past two members, with C{nicks} in the lobby."""
        hub, members = hubWith(*nicks, crowdSize=2, crowdInterval=1.0)
        clock = hub.clock
        assert isinstance(clock, Clock)
        clock.advance(1)  # their own joins announced,
        clock.advance(10)  # and a quiet interval since
        for member in members:
            member.events.clear()
        return hub, clock, members

    def newcomer(self, hub: Hub, nick: str) -> Recorder:
        member = Recorder()
        arrive(hub, member, nick)
        return member

    def test_smallRoomUnchanged(self) -> None:
        """Up to crowdSize members, every join and leave is told at once, however fast."""
        hub, clock, (alice,) = self.crowd("Alice")
        bob = self.newcomer(hub, "Bob")
        hub.depart(bob)
        self.newcomer(hub, "Carol")
        self.assertEqual(
            alice.events, [Joined("lobby", "Bob"), Left("lobby", "Bob"), Joined("lobby", "Carol")]
        )
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_heldForTheInterval(self) -> None:
        """
        In a crowded room, the first join after a quiet interval is told at once; the joins and
        leaves that follow within the interval are told together when it is over, in runs, in
        the order they happened.
        """
        hub, clock, (alice, bob) = self.crowd("Alice", "Bob")
        carol = self.newcomer(hub, "Carol")
        self.assertEqual(alice.events, [Joined("lobby", "Carol")])
        dave = self.newcomer(hub, "Dave")
        erin = self.newcomer(hub, "Erin")
        hub.depart(bob, "bye")
        hub.depart(dave)
        self.newcomer(hub, "Frank")
        self.assertEqual(alice.events, [Joined("lobby", "Carol")])
        clock.advance(0.999)
        self.assertEqual(len(alice.events), 1)
        clock.advance(0.001)
        everything = JoinsAndLeaves(
            "lobby",
            ((True, ("Dave", "Erin")), (False, ("Bob", "Dave")), (True, ("Frank",))),
        )
        self.assertEqual(alice.events, [Joined("lobby", "Carol"), everything])
        self.assertEqual(carol.events, [everything])
        # Erin is handed the same runs, but told only of what happened after she joined.
        self.assertEqual(erin.events, [JoinsAndLeaves("lobby", everything.runs, since=2)])
        self.assertEqual(shown(erin.events[0]), ((False, ("Bob", "Dave")), (True, ("Frank",))))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_newcomerToldNothingBefore(self) -> None:
        """The last to join in an interval is told nothing of it; the others only what followed."""
        hub, clock, (alice, bob) = self.crowd("Alice", "Bob")
        self.newcomer(hub, "Carol")
        dave = self.newcomer(hub, "Dave")
        erin = self.newcomer(hub, "Erin")
        clock.advance(1)
        self.assertEqual(dave.events, [JoinsAndLeaves("lobby", ((True, ("Dave", "Erin")),), 1)])
        self.assertEqual(shown(dave.events[0]), ((True, ("Erin",)),))
        self.assertEqual(erin.events, [])
        self.assertEqual(alice.events[-1], JoinsAndLeaves("lobby", ((True, ("Dave", "Erin")),)))

    def test_loneHeldEventAsItself(self) -> None:
        """One join or leave held alone is told as itself, reason and all, when its turn comes."""
        hub, clock, (alice, bob, carol, dave) = self.crowd("Alice", "Bob", "Carol", "Dave")
        hub.part(carol, "lobby", "dinner")
        hub.part(bob, "lobby", "sleep")
        self.assertEqual(alice.events, [Left("lobby", "Carol", "dinner")])
        clock.advance(1)
        self.assertEqual(alice.events, [Left("lobby", "Carol", "dinner"), Left("lobby", "Bob", "sleep")])

    def test_oncePerInterval(self) -> None:
        """However many arrive, a crowded room announces at most once per interval."""
        hub, clock, (alice, bob, carol) = self.crowd("Alice", "Bob", "Carol")
        for second in range(5):
            for number in range(3):
                self.newcomer(hub, f"n{second}{number}")
            clock.advance(0.5)
        clock.advance(5)
        announced = [len(event.runs[0][1]) if isinstance(event, JoinsAndLeaves) else 1 for event in alice.events]
        self.assertEqual(sum(announced), 15)
        self.assertLessEqual(len(alice.events), 6)

    def test_renamedWhileHeld(self) -> None:
        """A join held while the newcomer renames itself is announced under its new name."""
        hub, clock, (alice, bob, carol) = self.crowd("Alice", "Bob", "Carol")
        self.newcomer(hub, "Dave")
        erin = self.newcomer(hub, "Erin")
        frank = self.newcomer(hub, "Frank")
        rename(hub, erin, "Erin2")
        clock.advance(1)
        self.assertEqual(
            alice.events[-1], JoinsAndLeaves("lobby", ((True, ("Erin2", "Frank")),))
        )
        self.assertEqual(frank.events, [Renamed("Erin", "Erin2")])

    def test_renamedAndGoneWhileHeld(self) -> None:
        """
        A newcomer who renames itself and leaves within the interval is told of under the
        name it left with, both times: the others were told of the renaming at once.
        """
        hub, clock, (alice, bob, carol) = self.crowd("Alice", "Bob", "Carol")
        self.newcomer(hub, "Dave")
        erin = self.newcomer(hub, "Erin")
        rename(hub, erin, "Erin2")
        hub.depart(erin)
        frank = self.newcomer(hub, "Frank")
        hub.part(frank, "lobby")
        rename(hub, frank, "Frank2")
        clock.advance(1)
        self.assertEqual(
            alice.events[-1],
            JoinsAndLeaves(
                "lobby",
                ((True, ("Erin2",)), (False, ("Erin2",)), (True, ("Frank",)), (False, ("Frank",))),
            ),
        )

    def test_emptiedRoomForgetsHeld(self) -> None:
        """When the last member leaves, what was held for the room is dropped with its timer."""
        hub, clock, members = self.crowd("Alice", "Bob", "Carol")
        hub.join(members[0], "games")
        hub.join(members[1], "games")
        hub.join(members[2], "games")
        hub.part(members[0], "games")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        hub.part(members[1], "games")
        hub.part(members[2], "games")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_crowded(self) -> None:
        """A room is crowded when it has more than crowdSize members."""
        hub, clock, members = self.crowd("Alice", "Bob")
        self.assertFalse(hub.crowded(hub.defaultRoom))
        self.newcomer(hub, "Carol")
        self.assertTrue(hub.crowded(hub.defaultRoom))

    def test_sortedNicksFollowChanges(self) -> None:
        """The sorted member list of a room follows joins, leaves and renames."""
        hub, clock, (alice, bob) = self.crowd("Alice", "bob")
        room = hub.defaultRoom
        self.assertEqual(hub.nicks(room), ["Alice", "bob"])
        rename(hub, alice, "carol")
        self.assertEqual(hub.nicks(room), ["bob", "carol"])
        self.newcomer(hub, "Able")
        self.assertEqual(hub.nicks(room), ["Able", "bob", "carol"])
        hub.depart(bob)
        self.assertEqual(hub.nicks(room), ["Able", "carol"])
        hub.nicks(room).append("mutated")
        self.assertEqual(hub.nicks(room), ["Able", "carol"])


class JoinsAndLeavesTests(SynchronousTestCase):
    """What a member is shown of a summary it was handed."""

    def test_shown(self) -> None:
        """C{shown} leaves out the first C{since} names, across runs."""
        runs = ((True, ("a", "b")), (False, ("c",)), (True, ("d", "e")))
        shown = [JoinsAndLeaves("r", runs, since).shown() for since in range(6)]
        self.assertEqual(
            shown,
            [
                runs,
                ((True, ("b",)), (False, ("c",)), (True, ("d", "e"))),
                ((False, ("c",)), (True, ("d", "e"))),
                ((True, ("d", "e")),),
                ((True, ("e",)),),
                (),
            ],
        )


class RoomViewTests(SynchronousTestCase):
    """What a member is shown of a room on joining it is one value from the core."""

    def test_smallRoom(self) -> None:
        """The topic, the count and sorted nicknames, and the latest messages, oldest first."""
        hub = Hub(Clock(), crowdSize=3)
        alice, bob = Recorder(), Recorder()
        arrive(hub, bob, "bob")
        arrive(hub, alice, "Alice")
        room = hub.room("lobby")
        hub.setTopic(alice, room, "welcome")
        for text in ("one", "two", "three"):
            hub.say(alice, room, text)
        view = hub.view(room, 2)
        self.assertEqual(
            (view.room, view.topic, view.members, view.nicks), ("lobby", "welcome", 2, ("Alice", "bob"))
        )
        self.assertEqual([message.text for message in view.recent], ["two", "three"])

    def test_crowdedRoom(self) -> None:
        """A crowded room's view gives the number of members, not their names."""
        hub = Hub(Clock(), crowdSize=2)
        for nick in ("a", "b", "c"):
            arrive(hub, Recorder(), nick)
        view = hub.view(hub.room("lobby"), 20)
        self.assertEqual((view.members, view.nicks, view.topic, view.recent), (3, None, None, ()))
