"""
The server's admin tool: C{chatsvc-admin --db chatsvc.db COMMAND}, run by whoever runs the
server, on its database file, whether the server is running or not.

    chatsvc-admin --db chatsvc.db invite [N]    make N one-use invite codes (default 1)
    chatsvc-admin --db chatsvc.db accounts      list the registered nicknames

Invite codes are what C{/register PASSWORD CODE} takes on a server started with
C{--registration invite}; only their digests are kept, so each is printed once, here.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from chatsvc.chat import StoreError, newInviteCode, secretDigest
from chatsvc.storage.accounts import addInvites, readAccounts

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
    return parser


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
        else:
            for account in readAccounts(options.db):
                registered = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(account.created))
                print(f"{account.nick}\tregistered {registered}")
    except (StoreError, ValueError) as error:
        sys.stderr.write(f"chatsvc-admin: {error}\n")
        return 1
    return 0


def run() -> None:
    """The console script: exits with L{main}'s status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
