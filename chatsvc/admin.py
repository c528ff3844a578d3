"""
The server's admin tool: C{chatsvc-admin --db chatsvc.db COMMAND}, run by whoever runs the
server, on its database file, whether the server is running or not; for a cluster of nodes,
C{chatsvc-admin --redis redis://HOST:6379/0 COMMAND}, on its Redis, whether nodes run or not.

    chatsvc-admin --db chatsvc.db invite [N]         make N one-use invite codes (default 1)
    chatsvc-admin --db chatsvc.db accounts           list the registered nicknames
    chatsvc-admin --db chatsvc.db admin NICK         make a registered nickname a server admin
    chatsvc-admin --db chatsvc.db admin --remove NICK
    chatsvc-admin --db chatsvc.db audit [--limit N]  the last moderation actions (default 50)

Invite codes are what C{/register PASSWORD CODE} takes on a server started with
C{--registration invite}; only their digests are kept, so each is printed once, here.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from chatsvc.chat import Account, StoreError, newInviteCode, nick_key, secretDigest
from chatsvc.chat.moderation import AuditEntry
from chatsvc.cluster.stores import RedisAccountStore, RedisModerationStore
from chatsvc.cluster.url import RedisAddress, connectRedis, parseRedisUrl
from chatsvc.storage.accounts import addInvites, readAccounts
from chatsvc.storage.moderation import readAudit, setAdmin

__all__ = ["main", "run"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatsvc-admin", description="Manage a chatsvc server's accounts."
    )
    parser.add_argument(
        "--db", default="chatsvc.db", help="the server's database file (default: chatsvc.db)"
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="the Redis of a cluster of nodes (redis://HOST:6379/0), instead of --db",
    )
    parser.add_argument(
        "--redis-prefix", default="chatsvc:", help="the cluster's --redis-prefix (default: chatsvc:)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    invite = commands.add_parser("invite", help="make one-use invite codes")
    invite.add_argument("count", nargs="?", type=int, default=1, help="how many (default 1)")
    commands.add_parser("accounts", help="list the registered nicknames")
    admin = commands.add_parser("admin", help="make a registered nickname a server admin")
    admin.add_argument("nick")
    admin.add_argument("--remove", action="store_true", help="no longer an admin")
    audit = commands.add_parser("audit", help="list the last moderation actions")
    audit.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    return parser


def _when(posix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(posix))


class _SQLite:
    """The admin tool's reads and writes on a server's database file."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def accounts(self) -> list[Account]:
        return readAccounts(self.path)

    async def addInvites(self, digests: list[str], created: float) -> None:
        addInvites(self.path, digests, created)

    async def setAdmin(self, key: str, admin: bool) -> None:
        setAdmin(self.path, key, admin)

    async def audit(self, limit: int) -> list[AuditEntry]:
        return readAudit(self.path, limit)


class _Redis:
    """The same, on the Redis of a cluster (L{chatsvc.cluster.stores})."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.accountStore = RedisAccountStore(redis, prefix)
        self.moderation = RedisModerationStore(redis, prefix)

    async def accounts(self) -> list[Account]:
        return sorted(await self.accountStore.loadAccounts(), key=lambda account: account.created)

    async def addInvites(self, digests: list[str], created: float) -> None:
        for digest in digests:
            await self.accountStore.addInvite(digest, created)

    async def setAdmin(self, key: str, admin: bool) -> None:
        await self.moderation.setAdmin(key, admin)

    async def audit(self, limit: int) -> list[AuditEntry]:
        return await self.moderation.readAudit(limit)


async def _run(options: argparse.Namespace, store: _SQLite | _Redis) -> None:
    if options.command == "invite":
        if not 1 <= options.count <= 1000:
            raise ValueError("make 1 to 1000 codes at a time")
        codes = [newInviteCode() for _ in range(options.count)]
        await store.addInvites([secretDigest(code) for code in codes], time.time())
        for code in codes:
            print(code)
    elif options.command == "admin":
        key = nick_key(options.nick)
        account = next((a for a in await store.accounts() if a.key == key), None)
        if account is None:
            raise ValueError(f"{options.nick} is not registered (register it with /register first)")
        await store.setAdmin(key, not options.remove)
        print(f"{account.nick} is {'no longer' if options.remove else 'now'} a server admin")
    elif options.command == "audit":
        for entry in await store.audit(max(1, options.limit)):
            where = f" in {entry.room}" if entry.room else ""
            target = f" {entry.target}" if entry.target else ""
            detail = f" ({entry.detail})" if entry.detail else ""
            print(f"{_when(entry.time)}\t{entry.actor}: {entry.action}{target}{where}{detail}")
    else:
        for account in await store.accounts():
            print(f"{account.nick}\tregistered {_when(account.created)}")


def _fail(error: Exception) -> int:
    sys.stderr.write(f"chatsvc-admin: {error}\n")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status (1, with one line on stderr, if it cannot)."""
    options = _parser().parse_args(argv)
    if options.redis is None:
        try:
            _finish(_run(options, _SQLite(options.db)))
        except (StoreError, ValueError) as error:
            return _fail(error)
        return 0
    try:
        address = parseRedisUrl(options.redis)
    except ValueError as error:
        return _fail(error)
    status = 0

    async def onRedis(reactor: Any, address: RedisAddress) -> None:
        nonlocal status
        try:
            redis = await connectRedis(reactor, address, reconnect=False)
        except ConnectionError as error:
            status = _fail(error)
            return
        try:
            await _run(options, _Redis(redis, options.redis_prefix))
        except (StoreError, ValueError, ConnectionError) as error:
            status = _fail(error)
        finally:
            await redis.disconnect()

    try:
        react(lambda reactor: Deferred.fromCoroutine(onRedis(reactor, address)))
    except SystemExit as exit:
        if exit.code:
            return int(exit.code) if isinstance(exit.code, int) else 1
    return status


def _finish(coroutine: Any) -> None:
    # A coroutine that never waits (the SQLite file's), run to its end.
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise RuntimeError("the SQLite admin commands do not wait")


def run() -> None:
    """The console script: exits with L{main}'s status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
