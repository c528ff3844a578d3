"""
Tests for L{chatsvc.chat.ids} and the ids and times the hub gives events.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.chat import Hub, Said, StoredMessage
from chatsvc.chat.ids import ID_SEQUENCE_BITS, EventIds
from tests.chat.test_hub import MemoryStore, Recorder, arrive


class EventIdsTests(SynchronousTestCase):
    """Ids made from the time, always increasing."""

    def test_fromTheTime(self) -> None:
        """An id is the time in milliseconds, shifted; several in one millisecond count up."""
        ids = EventIds()
        first = ids.next(1_700_000_000.123)
        self.assertEqual(first, 1_700_000_000_123 << ID_SEQUENCE_BITS)
        self.assertEqual(ids.next(1_700_000_000.1234), first + 1)
        self.assertEqual(ids.next(1_700_000_000.124), 1_700_000_000_124 << ID_SEQUENCE_BITS)

    def test_clockSetBack(self) -> None:
        """A clock set back does not make ids go back."""
        ids = EventIds()
        later = ids.next(2000.0)
        self.assertEqual(ids.next(1000.0), later + 1)

    def test_seen(self) -> None:
        """An id seen (read back from the store) is never given again, nor any smaller."""
        ids = EventIds()
        ids.seen(10**16)
        ids.seen(5)
        self.assertEqual(ids.next(1.0), 10**16 + 1)

    def test_slotsNeverMeet(self) -> None:
        """
        Givers of different slots (the nodes of a cluster) never give the same id, even in
        the same millisecond and after seeing each other's, and each keeps increasing.
        """
        nodes = [EventIds(slot=slot, slots=4) for slot in range(4)]
        given: list[int] = []
        for step in range(200):
            node = nodes[step % 3]
            id = node.next(1000.0 + step // 50 / 1000)
            self.assertEqual(id % 4, node.slot)
            given.append(id)
            for other in nodes:
                other.seen(id)
        self.assertEqual(len(set(given)), len(given))
        self.assertEqual(given, sorted(given))

    def test_badSlot(self) -> None:
        """A slot outside the slots is refused."""
        self.assertRaises(ValueError, EventIds, slot=4, slots=4)
        self.assertRaises(ValueError, EventIds, slot=0, slots=64)

    def test_fitsAJavaScriptNumber(self) -> None:
        """Ids stay below 2**53 for two centuries (a page may keep them as numbers)."""
        self.assertLess(EventIds().next(8_000_000_000.0), 2**53)  # the year 2223


class HubStampTests(SynchronousTestCase):
    """Every event the hub delivers carries an id and the time it happened."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore()
        self.hub = Hub(self.clock, self.store)  # type: ignore[arg-type]
        self.alice, self.bob = Recorder(), Recorder()
        arrive(self.hub, self.alice, "Alice")
        self.clock.advance(0.5)
        arrive(self.hub, self.bob, "Bob")

    def test_idsIncreaseTimesFromTheClock(self) -> None:
        """Each event has its own id, larger than the one before, and the clock's time."""
        room = self.hub.defaultRoom
        self.clock.advance(1.25)
        self.hub.say(self.bob, room, "hi")
        self.hub.act(self.bob, room, "waves")
        self.hub.setTopic(self.bob, room, "Games")
        events = self.alice.events
        ids = [event.id for event in events]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual([event.time for event in events], [1_700_000_000.5] + [1_700_000_001.75] * 3)

    def test_messageStoredUnderItsEventsId(self) -> None:
        """A message is stored, and kept at hand, under the id and time it was delivered with."""
        room = self.hub.defaultRoom
        said = self.hub.say(self.bob, room, "hi")
        self.assertEqual(said, Said("lobby", "Bob", "hi"))
        [delivered] = [event for event in self.alice.events if isinstance(event, Said)]
        self.assertIs(delivered, said)
        [stored] = self.store.added
        self.assertEqual((stored.id, stored.time), (said.id, said.time))
        self.assertEqual(room.history(1)[0].id, said.id)

    def test_restoredIdsComeFirst(self) -> None:
        """After restoring history, every new id is larger than any restored one."""
        hub = Hub(Clock())
        future = 10**17
        hub.restore({"lobby": [StoredMessage("lobby", "lobby", 1.0, "Old", "x", False, id=future)]})
        member = Recorder()
        arrive(hub, member, "New")
        self.assertGreater(hub.say(member, hub.defaultRoom, "y").id, future)
