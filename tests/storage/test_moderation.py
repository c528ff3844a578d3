"""
Tests for L{chatsvc.storage.moderation}: roles, settings, sanctions and the audit in a real SQLite
file, written on the history store's database thread, and read back by the next server; and the
admin tool's helpers on the same file.
"""

from __future__ import annotations

import time

from attrs import evolve

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from chatsvc.chat.moderation import AuditEntry, IModerationStore, RoomSettings, Sanction
from chatsvc.storage.moderation import SQLiteModerationStore, readAudit, setAdmin
from chatsvc.storage.sqlite import SQLiteStore
from tests.storage.test_sqlite import FAST, DatabaseFiles, message, waitUntil


class SQLiteModerationStoreTests(DatabaseFiles, TestCase):
    def started(self, path: str) -> SQLiteModerationStore:
        store = SQLiteStore(path, **FAST)
        store.recent(10)
        store.start(reactor)
        self.addCleanup(store.stop)
        return SQLiteModerationStore(store)

    def test_interface(self) -> None:
        verifyObject(IModerationStore, SQLiteModerationStore(SQLiteStore(self.newPath())))

    async def test_roundTripAcrossRestart(self) -> None:
        path = self.newPath()
        first = self.started(path)
        now = time.time()
        await first.saveRoom(RoomSettings("games", "Games", "alice", private=True, roles={"carol": "op", "dave": "voice"}))
        await first.saveRoom(RoomSettings("games", "Games", "alice", private=True, moderated=True, roles={"carol": "op"}, topic="chess at 8"))
        ban = Sanction("ban", "games", "Bob", None, "bob", "203.0.113.5", now + 3600, "spam", "Alice", now)
        await first.addSanction(ban)
        await first.addSanction(Sanction("mute", "games", "Eve", "eve", None, None, None, None, "Alice", now))
        await first.addSanction(Sanction("mute", "games", "Old", "old", None, None, now - 1, None, "Alice", now - 10))
        await first.removeSanction("mute", "games", "eve", None)
        await first.audit(AuditEntry(now, "Alice", "ban", "games", "Bob", "for 1 hour; spam"))
        await first.store.stop()
        setAdmin(path, "root", True)
        setAdmin(path, "gone", True)
        setAdmin(path, "gone", False)

        second = self.started(path)
        admins, rooms, sanctions = await second.loadModeration()
        self.assertEqual(admins, {"root"})
        self.assertEqual(rooms, [RoomSettings("games", "Games", "alice", True, True, False, False, {"carol": "op"}, "chess at 8")])
        self.assertEqual(sanctions, [ban])  # the lifted and the expired are not read back
        self.assertEqual(await second.admins(), {"root"})
        [entry] = readAudit(path, 10)
        self.assertEqual((entry.actor, entry.action, entry.target, entry.detail), ("Alice", "ban", "Bob", "for 1 hour; spam"))


class RemoveMessageTests(DatabaseFiles, TestCase):
    async def test_removedWrittenOrQueued(self) -> None:
        """A message removed is gone whether it was written already or still queued."""
        path = self.newPath()
        store = SQLiteStore(path, **FAST)
        store.recent(10)
        store.start(reactor)
        self.addCleanup(store.stop)
        written = [evolve(message(n), id=n << 10) for n in range(1, 4)]
        for each in written:
            store.add(each)
        await waitUntil(lambda: store.written == 3, "three messages written")
        await store.remove("lobby", written[1].id)
        queued = evolve(message(4), id=4 << 10)
        store.add(queued)
        await store.remove("lobby", queued.id)
        await store.stop()
        self.assertEqual([m.id for m in SQLiteStore(path).recent(10)["lobby"]], [written[0].id, written[2].id])
