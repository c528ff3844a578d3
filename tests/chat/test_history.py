"""
Tests for L{Hub.history}: pages of a room's messages, from what the room keeps at hand and, past
it, from the store.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.chat import ChatError, Hub, NullStore, StoredMessage
from tests.chat.test_hub import Recorder, arrive


def stored(number: int) -> StoredMessage:
    return StoredMessage("lobby", "lobby", 1000.0 + number, "Old", f"m{number}", False, id=number)


class PagingStore(NullStore):
    """A store holding messages 1 to C{count} of the lobby, paged as a real one pages them."""

    def __init__(self, count: int) -> None:
        self.messages = [stored(n) for n in range(1, count + 1)]
        self.asked: list[tuple[int | None, int | None, int, bool]] = []

    def page(
        self, roomKey: str, after: int | None, before: int | None, limit: int, newest: bool
    ) -> Deferred[list[StoredMessage]]:
        self.asked.append((after, before, limit, newest))
        found = [
            m
            for m in self.messages
            if m.roomKey == roomKey
            and (after is None or m.id > after)
            and (before is None or m.id < before)
        ]
        return succeed(found[-limit:] if newest else found[:limit])

    def remove(self, roomKey: str, id: int) -> Deferred[None]:
        self.messages = [m for m in self.messages if not (m.roomKey == roomKey and m.id == id)]
        return succeed(None)


class HistoryTests(SynchronousTestCase):
    """A room keeping its last 20 messages at hand, of 100 stored."""

    def setUp(self) -> None:
        self.store = PagingStore(100)
        self.hub = Hub(Clock(), self.store, historyKept=20)
        self.hub.restore({"lobby": self.store.messages[-20:]})
        self.room = self.hub.defaultRoom

    def page(
        self, before: int | None = None, after: int | None = None, limit: int = 10
    ) -> tuple[list[int], bool]:
        messages, more = self.successResultOf(self.hub.history(self.room, before, after, limit))
        return [m.id for m in messages], more

    def test_latestAtHand(self) -> None:
        """The latest page comes from memory, without asking the store."""
        self.assertEqual(self.page(), (list(range(91, 101)), True))
        self.assertEqual(self.store.asked, [])

    def test_beforeReachesTheStore(self) -> None:
        """A page reaching past what is at hand is filled from the store, seamlessly."""
        self.assertEqual(self.page(before=86), (list(range(76, 86)), True))
        self.assertEqual(self.store.asked, [(None, 81, 6, True)])

    def test_toTheBeginning(self) -> None:
        """Paging back ends at the first message, where there is no more."""
        self.assertEqual(self.page(before=6), ([1, 2, 3, 4, 5], False))

    def test_afterFromTheStoreThenMemory(self) -> None:
        """After an id older than what is at hand: the store, then memory, in order."""
        self.assertEqual(self.page(after=75), (list(range(76, 86)), True))
        self.assertEqual(self.page(after=95), ([96, 97, 98, 99, 100], False))

    def test_newMessagesIncluded(self) -> None:
        """What was just said is in the pages, though it may not be written yet."""
        alice = Recorder()
        arrive(self.hub, alice, "Alice")
        said = self.hub.say(alice, self.room, "new")
        ids, more = self.page(after=99)
        self.assertEqual(ids, [100, said.id])
        self.assertFalse(more)

    def test_roomHoldingAll(self) -> None:
        """A room that never let a message go answers from memory alone, and knows its end."""
        hub = Hub(Clock(), self.store, historyKept=50)
        hub.restore({"lobby": [stored(n) for n in range(1, 11)]})
        messages, more = self.successResultOf(hub.history(hub.defaultRoom, 5, None, 10))
        self.assertEqual(([m.id for m in messages], more), ([1, 2, 3, 4], False))
        self.assertEqual(self.store.asked, [])

    def test_storeFails(self) -> None:
        """A store that cannot answer is a clear refusal."""

        class Broken(PagingStore):
            def page(self, *args: object, **kwargs: object) -> Deferred[list[StoredMessage]]:
                return fail(OSError("disk gone"))

        hub = Hub(Clock(), Broken(100), historyKept=20)
        hub.restore({"lobby": self.store.messages[-20:]})
        failure = self.failureResultOf(hub.history(hub.defaultRoom, 50, None, 10), ChatError)
        self.assertEqual(str(failure.value), "the history cannot be read just now; try again")
        self.flushLoggedErrors()
