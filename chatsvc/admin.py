"""
The server's admin tool: C{chatsvc-admin --db chatsvc.db COMMAND}, run by whoever runs the
server, on its database file, whether the server is running or not.

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

from chatsvc.chat import StoreError, newInviteCode, nick_key, secretDigest
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status (1, with one line on stderr, if it cannot)."""
    options = _parser().parse_args(argv)
    try:
        if options.command == "invite":
            if not 1 <= options.count <= 1000:
                raise ValueError("make 1 to 1000 codes at a time")
            codes = [newInviteCode() for _ in range(options.count)]
            addInvites(options.db, [secretDigest(code) for code in codes], time.time())
            for code in codes:
                print(code)
        elif options.command == "admin":
            key = nick_key(options.nick)
            account = next((a for a in readAccounts(options.db) if a.key == key), None)
            if account is None:
                raise ValueError(f"{options.nick} is not registered (register it with /register first)")
            setAdmin(options.db, key, not options.remove)
            print(f"{account.nick} is {'no longer' if options.remove else 'now'} a server admin")
        elif options.command == "audit":
            for entry in readAudit(options.db, max(1, options.limit)):
                where = f" in {entry.room}" if entry.room else ""
                target = f" {entry.target}" if entry.target else ""
                detail = f" ({entry.detail})" if entry.detail else ""
                print(f"{_when(entry.time)}\t{entry.actor}: {entry.action}{target}{where}{detail}")
        else:
            for account in readAccounts(options.db):
                print(f"{account.nick}\tregistered {_when(account.created)}")
    except (StoreError, ValueError) as error:
        sys.stderr.write(f"chatsvc-admin: {error}\n")
        return 1
    return 0


def run() -> None:
    """The console script: exits with L{main}'s status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
