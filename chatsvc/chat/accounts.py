"""
Accounts: registered nicknames, their passwords, and the tokens that keep a browser logged in.

The rules are here, once, for every door: who may register (L{Accounts.registration}), whether
guests may chat (L{Accounts.guests}), what a password must be, how often logins may fail (per
account and per address), how often an address may register. What is kept, and where, is the
store's (L{IAccountStore}); what a password hashes to, the hasher's (L{IPasswordHasher}). Both
answer with Deferreds: hashing takes time off the reactor's thread, and storing a round trip to
a database thread (or, in a cluster, to another machine).

Every account is kept at hand once loaded (L{Accounts.load}): whether a nickname is registered
is asked on every arrival and rename, and an account is a few hundred bytes.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterable

import structlog
from attrs import evolve
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime

from chatsvc.chat.errors import ChatError, LoginRefused
from chatsvc.chat.events import describeSpan
from chatsvc.chat.names import nick_key, validate_nick
from chatsvc.chat.ports import Account, IAccountStore, IPasswordHasher, MemoryAccountStore
from chatsvc.chat.rate import Buckets

__all__ = [
    "Accounts",
    "LOGIN_FAILURES",
    "MAX_PASSWORD_BYTES",
    "MIN_PASSWORD_LENGTH",
    "PasswordRequired",
    "REGISTRATION_MODES",
    "checkPassword",
    "newInviteCode",
    "secretDigest",
]

_log = structlog.get_logger("chatsvc.accounts")

REGISTRATION_MODES = ("open", "invite", "closed")
"""Who may register: anyone; whoever has an invite code; nobody (but the server's admin)."""

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_BYTES = 256

LOGIN_FAILURES = 3
"""Failed logins allowed at once, per account and per address; one more every 20 seconds."""

REGISTRATIONS_PER_ADDRESS = 3
"""Registrations from one address at once; one more every 20 minutes."""

TOKEN_BYTES = 32


class PasswordRequired(ChatError):
    """The nickname asked for is registered: its password (or a token) is needed to take it."""

    def __init__(self, nick: str) -> None:
        super().__init__(f"{nick} is registered: give its password to log in")
        self.nick = nick


def checkPassword(password: str) -> str:
    """
    C{password} if it may be a password: 8 characters or more, at most 256 bytes, no spaces
    (a password is one word of a command: C{/password OLD NEW}) and no control characters.

    @raise ChatError: saying what is wrong.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ChatError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise ChatError(f"a password may be at most {MAX_PASSWORD_BYTES} bytes long")
    if any(character.isspace() or ord(character) < 32 or ord(character) == 127 for character in password):
        raise ChatError("a password may not contain spaces or control characters")
    return password


def secretDigest(secret: str) -> str:
    """What is kept of a token or an invite code: the store never holds one that works."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def newInviteCode() -> str:
    """A new one-use invite code, short enough to read out: 12 letters and digits."""
    return secrets.token_urlsafe(9)


def _suspended(account: Account, now: float) -> LoginRefused:
    span = (
        "until an admin lifts it"
        if account.suspendedUntil is None
        else f"for {describeSpan(account.suspendedUntil - now)} more"
    )
    why = f" ({account.suspendReason})" if account.suspendReason else ""
    return LoginRefused(f"the account {account.nick} is suspended {span}{why}")


def _inSeconds(seconds: float) -> str:
    whole = max(1, math.ceil(seconds))
    if whole < 120:
        return f"{whole} second{'' if whole == 1 else 's'}"
    return f"{math.ceil(whole / 60)} minutes"


class Accounts:
    """
    The accounts of a server, and the rules for registering and logging in (see the module's
    description).
    """

    def __init__(
        self,
        clock: IReactorTime,
        hasher: IPasswordHasher,
        store: IAccountStore | None = None,
        registration: str = "open",
        guests: bool = True,
    ) -> None:
        """
        @param registration: one of L{REGISTRATION_MODES}.
        @param guests: whether members who have not logged in may chat.
        """
        if registration not in REGISTRATION_MODES:
            raise ValueError(f"registration must be one of {', '.join(REGISTRATION_MODES)}")
        self.clock = clock
        self.hasher = hasher
        self.store: IAccountStore = store if store is not None else MemoryAccountStore()
        self.registration = registration
        self.guests = guests
        self.lockdown = False
        """An admin's switch for a raid: no registrations, and no guests coming in."""
        self._byKey: dict[str, Account] = {}
        self._registering: set[str] = set()
        perSecond = 1 / 20
        self._accountFailures: Buckets[str] = Buckets(perSecond, LOGIN_FAILURES, 10_000)
        self.failedLogins = 0
        """Logins refused for a wrong password so far (a metric)."""
        self._addressFailures: Buckets[str] = Buckets(perSecond, LOGIN_FAILURES, 10_000)
        self._registrations: Buckets[str] = Buckets(1 / 1200, REGISTRATIONS_PER_ADDRESS, 10_000)

    def __len__(self) -> int:
        return len(self._byKey)

    def load(self) -> Deferred[None]:
        """Read every account from the store (at startup, before anyone connects)."""
        loaded = self.store.loadAccounts()

        def index(accounts: Iterable[Account]) -> None:
            self._byKey = {account.key: account for account in accounts}
            for account in self._byKey.values():
                # Registered before the rules tightened (for IRC): its member is shown by the
                # valid spelling it logs in with (same key; see Hub.arrive).
                try:
                    validate_nick(account.nick)
                except ChatError as error:
                    _log.warning("account_nick_invalid", nick=account.nick, reason=str(error))

        return loaded.addCallback(index)

    def registered(self, nick: str) -> Account | None:
        """The account of the nickname C{nick} (matched as nicknames are), if it is registered."""
        return self._byKey.get(nick_key(nick))

    def remember(self, account: Account) -> None:
        """
        Keep C{account} at hand as it is now, new or changed: another node of a cluster
        registered it, or changed its password or suspension, in the store every node reads.
        """
        self._byKey[account.key] = account

    # Logging in

    def login(self, nick: str, password: str, host: str | None) -> Deferred[Account]:
        """
        The account of C{nick}, if C{password} is its password.

        A failed login spends one of the account's and one of the address's tokens
        (L{LOGIN_FAILURES}); while either has none, every login is refused at once, right
        password or wrong, without hashing anything. The account's token is spent as the
        login starts (and given back if the password was right), so that guesses at one
        account racing each other are counted too; the address's only once a login has
        failed, so that a class behind one address logging in at once is not held up.
        """
        account = self.registered(nick)
        if account is None:
            return fail(LoginRefused(f"{nick} is not registered"))
        now = self.clock.seconds()
        if account.suspendedAt(now):
            return fail(_suspended(account, now))
        perAccount = self._accountFailures.get(account.key, now)
        perAddress = None if host is None else self._addressFailures.get(host, now)
        wait = max(perAccount.wait(now), 0.0 if perAddress is None else perAddress.wait(now))
        if wait:
            return fail(
                LoginRefused(
                    f"too many failed logins for {account.nick}; try again in {_inSeconds(wait)}"
                )
            )
        perAccount.spend()
        verified = self.hasher.verify(account.passwordHash, password)

        def checked(right: bool) -> Account:
            if not right:
                self.failedLogins += 1
                if perAddress is not None:
                    perAddress.wait(self.clock.seconds())
                    perAddress.spend()
                raise LoginRefused(f"wrong password for {account.nick}")
            perAccount.spend(-1)
            return self._byKey.get(account.key, account)

        return verified.addCallback(checked)

    def issueToken(self, account: Account) -> Deferred[str]:
        """A new token that logs in as C{account} until revoked (see L{tokenLogin})."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        kept = self.store.addToken(secretDigest(token), account.key, self.clock.seconds())
        return kept.addCallback(lambda ignored: token)

    def tokenLogin(self, token: str) -> Deferred[Account]:
        """The account a token logs in as; refused if the token was revoked (or never was)."""
        found = self.store.tokenAccount(secretDigest(token))

        def check(key: str | None) -> Account:
            account = None if key is None else self._byKey.get(key)
            if account is None:
                raise ChatError("that login has expired: log in with your password")
            if account.suspendedAt(self.clock.seconds()):
                raise _suspended(account, self.clock.seconds())
            return account

        return found.addCallback(check)

    def revokeToken(self, token: str) -> Deferred[None]:
        """The token logs in no more (logging out)."""
        return self.store.removeToken(secretDigest(token))

    # Registering

    def register(
        self, nick: str, password: str, host: str | None, code: str | None = None
    ) -> Deferred[Account]:
        """
        Register the nickname C{nick} with C{password}: on an open server, or with an invite
        code on one that registers by invitation.
        """
        try:
            checkPassword(password)
        except ChatError:
            return fail()
        key = nick_key(nick)
        if self.lockdown:
            return fail(ChatError("the server is in lockdown: no registrations just now"))
        if self.registration == "closed":
            return fail(ChatError("registration is closed on this server"))
        if self.registration == "invite" and not code:
            return fail(
                ChatError("this server registers by invitation: /register PASSWORD INVITE-CODE")
            )
        if key in self._byKey or key in self._registering:
            return fail(ChatError(f"{nick} is registered already"))
        if host is not None:
            now = self.clock.seconds()
            wait = self._registrations.get(host, now).take(now)
            if wait:
                return fail(
                    ChatError(
                        "too many registrations from your address; "
                        f"try again in {_inSeconds(wait)}"
                    )
                )
        self._registering.add(key)
        invited: Deferred[bool] = (
            self.store.useInvite(secretDigest(code))
            if self.registration == "invite" and code
            else succeed(True)
        )

        async def register() -> Account:
            try:
                if not await invited:
                    raise ChatError("that invite code is not valid (each works once)")
                passwordHash = await self.hasher.hash(password)
                account = Account(key, nick, passwordHash, self.clock.seconds())
                await self.store.addAccount(account)
                self._byKey[key] = account
                return account
            finally:
                self._registering.discard(key)

        return Deferred.fromCoroutine(register())

    def changePassword(self, account: Account, old: str, new: str) -> Deferred[Account]:
        """
        Change C{account}'s password from C{old} (checked, and throttled, as a login is) to
        C{new}; every token of the account is revoked.
        """
        try:
            checkPassword(new)
        except ChatError:
            return fail()

        async def change() -> Account:
            current = await self.login(account.nick, old, None)
            passwordHash = await self.hasher.hash(new)
            changed = evolve(current, passwordHash=passwordHash)
            await self.store.updateAccount(changed)
            await self.store.removeTokens(changed.key)
            self._byKey[changed.key] = changed
            return changed

        return Deferred.fromCoroutine(change())

    def suspend(
        self, account: Account, until: float | None, reason: str | None, on: bool = True
    ) -> Deferred[Account]:
        """
        Suspend C{account} until C{until} (None: until lifted), or lift its suspension (C{on}
        false); a suspension revokes every token, so no browser stays logged in.
        """
        changed = evolve(
            account,
            suspended=on,
            suspendedUntil=until if on else None,
            suspendReason=reason if on else None,
        )
        self._byKey[changed.key] = changed

        async def keep() -> Account:
            await self.store.updateAccount(changed)
            if on:
                await self.store.removeTokens(changed.key)
            return changed

        return Deferred.fromCoroutine(keep())

    def makeInvite(self) -> Deferred[str]:
        """A new one-use invite code."""
        code = newInviteCode()
        kept = self.store.addInvite(secretDigest(code), self.clock.seconds())
        return kept.addCallback(lambda ignored: code)
