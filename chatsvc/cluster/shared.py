"""
The accounts and moderation stores of a cluster: the Redis ones (L{chatsvc.cluster.stores}),
telling the other nodes of what changed here, so that what they keep at hand stays the same.

Every node keeps every account at hand (L{chatsvc.chat.accounts.Accounts}: whether a nickname
is registered is asked on every arrival), so an account registered on one node must reach the
others' memory as well as the store: the store is written first, and once Redis has it the
node publishes the account's key (L{ClusterNode.accountChanged}); every other node reads that
account back from the store.

Roles, room settings and sanctions are asked on every join and line, so they are kept at hand
too; there, what changed travels in the message itself (L{SharedModerationStore}), published
right after the write is sent on the same connection: when another node is told of a ban, the
ban is in the store, and its own copy has it before it sees the moderator's event (which comes
after, from the same node), so that the member banned cannot slip back in meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from zope.interface import implementer

import json
from typing import Any

from chatsvc.chat.moderation import AuditEntry, IModerationStore, Moderation, RoomSettings, Sanction
from chatsvc.chat.ports import Account, IAccountStore
from chatsvc.cluster.stores import (
    RedisAccountStore,
    RedisModerationStore,
    decodeRoom,
    decodeSanction,
    encodeRoom,
    encodeSanction,
)

__all__ = ["SharedAccountStore", "SharedModerationStore", "applyModerationChange"]


@implementer(IAccountStore)
class SharedAccountStore:
    """L{RedisAccountStore}, telling the other nodes of every account added or changed."""

    def __init__(self, store: RedisAccountStore, changed: Callable[[str], None]) -> None:
        """
        @param changed: told the key of each account added or changed, once the store has it
            (L{ClusterNode.accountChanged}).
        """
        self.store = store
        self.changed = changed

    def _told(self, result: None, key: str) -> None:
        self.changed(key)

    def loadAccounts(self) -> Deferred[list[Account]]:
        return self.store.loadAccounts()

    def loadAccount(self, key: str) -> Deferred[Account | None]:
        """One account as the store has it now (another node changed it)."""
        return self.store.loadAccount(key)

    def addAccount(self, account: Account) -> Deferred[None]:
        return self.store.addAccount(account).addCallback(self._told, account.key)

    def updateAccount(self, account: Account) -> Deferred[None]:
        return self.store.updateAccount(account).addCallback(self._told, account.key)

    def addToken(self, digest: str, key: str, created: float) -> Deferred[None]:
        return self.store.addToken(digest, key, created)

    def tokenAccount(self, digest: str) -> Deferred[str | None]:
        return self.store.tokenAccount(digest)

    def removeToken(self, digest: str) -> Deferred[None]:
        return self.store.removeToken(digest)

    def removeTokens(self, key: str) -> Deferred[None]:
        return self.store.removeTokens(key)

    def addInvite(self, digest: str, created: float) -> Deferred[None]:
        return self.store.addInvite(digest, created)

    def useInvite(self, digest: str) -> Deferred[bool]:
        return self.store.useInvite(digest)


@implementer(IModerationStore)
class SharedModerationStore:
    """
    L{RedisModerationStore}, telling the other nodes of every change of room settings and of
    sanctions, with what changed (see the module's description).
    """

    def __init__(self, store: RedisModerationStore, changed: Callable[[str, Any], None]) -> None:
        """
        @param changed: told each change (C{"room"}, C{"sanction"} or C{"lift"}, and what
            L{applyModerationChange} reads), right after its write is sent
            (L{ClusterNode.moderationChanged}).
        """
        self.store = store
        self.changed = changed

    def loadModeration(self) -> Deferred[tuple[set[str], list[RoomSettings], list[Sanction]]]:
        return self.store.loadModeration()

    def admins(self) -> Deferred[set[str]]:
        return self.store.admins()

    def saveRoom(self, settings: RoomSettings) -> Deferred[None]:
        written = self.store.saveRoom(settings)
        self.changed("room", encodeRoom(settings))
        return written

    def addSanction(self, sanction: Sanction) -> Deferred[None]:
        written = self.store.addSanction(sanction)
        self.changed("sanction", encodeSanction(sanction))
        return written

    def removeSanction(self, kind: str, roomKey: str, account: str | None, nick: str | None) -> Deferred[None]:
        written = self.store.removeSanction(kind, roomKey, account, nick)
        self.changed("lift", [kind, roomKey, account, nick])
        return written

    def audit(self, entry: AuditEntry) -> Deferred[None]:
        return self.store.audit(entry)

    def readAudit(self, limit: int) -> Deferred[list[AuditEntry]]:
        """The last C{limit} entries of the audit, oldest first."""
        return self.store.readAudit(limit)


def applyModerationChange(moderation: Moderation, change: str, value: Any) -> None:
    """
    Do to C{moderation} (at hand only) what another node's L{SharedModerationStore} was told.

    @raise ValueError: for a change it cannot read.
    """
    if change == "room":
        moderation.rememberRoom(decodeRoom(value))
    elif change == "sanction":
        moderation.remember(decodeSanction(value))
    elif change == "lift":
        kind, roomKey, account, nick = value
        moderation.forget(str(kind), str(roomKey), account, nick)
    else:
        raise ValueError(f"no such moderation change: {json.dumps(change)}")
