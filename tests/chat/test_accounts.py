"""
Tests for accounts in the core: L{Accounts} and the hub's use of it (registered nicknames
reserved, logging in with a password or a token, registration modes, guests off, throttled
failures), with a hasher that answers at once or when told, and a L{Clock}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chatsvc.chat import (
    Account,
    Accounts,
    ChatError,
    Hub,
    IAccountStore,
    IPasswordHasher,
    MemoryAccountStore,
    PasswordRequired,
    checkPassword,
)
from tests.chat.test_hub import Recorder, arrive, settled


@implementer(IPasswordHasher)
class PlainHasher:
    """A "hash" anyone can read, answered at once; or, if C{held}, when the test says."""

    def __init__(self, held: bool = False) -> None:
        self.held = held
        self.waiting: list[tuple[Deferred[bool], bool]] = []
        self.hashed = 0

    def hash(self, password: str) -> Deferred[str]:
        self.hashed += 1
        return succeed("plain$" + password)

    def verify(self, passwordHash: str, password: str) -> Deferred[bool]:
        right = passwordHash == "plain$" + password
        if not self.held:
            return succeed(right)
        answer: Deferred[bool] = Deferred()
        self.waiting.append((answer, right))
        return answer

    def answerAll(self) -> None:
        waiting, self.waiting = self.waiting, []
        for answer, right in waiting:
            answer.callback(right)


class Member(Recorder):
    """A member connected from an address (what the address limits count it under)."""

    def __init__(self, host: str = "192.0.2.1") -> None:
        super().__init__()
        self.host = host


class AccountsTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.hasher = PlainHasher()
        self.store = MemoryAccountStore()
        self.accounts = Accounts(self.clock, self.hasher, self.store)
        self.hub = Hub(self.clock, accounts=self.accounts)

    def registered(self, nick: str, password: str = "sesame-open") -> Account:
        """C{nick}, registered by a member (from an address of its own) who then leaves."""
        self._registered = getattr(self, "_registered", 0) + 1
        member = Member(f"198.51.100.{self._registered}")
        arrive(self.hub, member, nick)
        account = settled(self.hub.register(member, password))
        self.hub.depart(member)
        return account


class PasswordRuleTests(SynchronousTestCase):
    def test_rules(self) -> None:
        """At least 8 characters, at most 256 bytes, no spaces or control characters."""
        self.assertEqual(checkPassword("longenough"), "longenough")
        for bad, why in [
            ("short", "at least 8"),
            ("x" * 257, "at most 256 bytes"),
            ("with space", "spaces"),
            ("tab\there!", "spaces"),
            ("bell\x07bell", "control"),
        ]:
            with self.assertRaises(ChatError) as raised:
                checkPassword(bad)
            self.assertIn(why, str(raised.exception))

    def test_memoryStore(self) -> None:
        verifyObject(IAccountStore, MemoryAccountStore())


class RegisterTests(AccountsTestCase):
    def test_register(self) -> None:
        """A guest registers its nickname and is logged in to it; the hash is kept, not the password."""
        alice = Member()
        arrive(self.hub, alice, "Alice")
        account = settled(self.hub.register(alice, "sesame-open"))
        self.assertEqual((account.key, account.nick), ("alice", "Alice"))
        self.assertEqual(self.hub.accountOf(alice), account)
        self.assertEqual(self.store.accounts["alice"].passwordHash, "plain$sesame-open")
        self.assertNotIn("sesame-open", repr(account))

    def test_registerTwice(self) -> None:
        alice = Member()
        arrive(self.hub, alice, "Alice")
        settled(self.hub.register(alice, "sesame-open"))
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.register(alice, "sesame-open"))
        self.assertIn("registered already", str(raised.exception))

    def test_badPassword(self) -> None:
        alice = Member()
        arrive(self.hub, alice, "Alice")
        with self.assertRaises(ChatError):
            settled(self.hub.register(alice, "short"))
        self.assertIsNone(self.hub.accountOf(alice))

    def test_closed(self) -> None:
        self.accounts.registration = "closed"
        alice = Member()
        arrive(self.hub, alice, "Alice")
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.register(alice, "sesame-open"))
        self.assertEqual(str(raised.exception), "registration is closed on this server")

    def test_invite(self) -> None:
        """By invitation: a code is needed, works once, and a wrong one is refused."""
        self.accounts.registration = "invite"
        code = settled(self.accounts.makeInvite())
        alice, bob, carol = Member("192.0.2.1"), Member("192.0.2.2"), Member("192.0.2.3")
        for member, nick in [(alice, "Alice"), (bob, "Bob"), (carol, "Carol")]:
            arrive(self.hub, member, nick)
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.register(alice, "sesame-open"))
        self.assertIn("by invitation", str(raised.exception))
        with self.assertRaises(ChatError):
            settled(self.hub.register(alice, "sesame-open", "not-a-code"))
        settled(self.hub.register(alice, "sesame-open", code))
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.register(bob, "sesame-open", code))
        self.assertIn("each works once", str(raised.exception))
        self.assertEqual(list(self.store.accounts), ["alice"])

    def test_perAddress(self) -> None:
        """Three registrations from one address at once; the fourth waits its turn."""
        members = [Member("192.0.2.7") for _ in range(4)]
        for number, member in enumerate(members):
            arrive(self.hub, member, f"user{number}")
        for member in members[:3]:
            settled(self.hub.register(member, "sesame-open"))
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.register(members[3], "sesame-open"))
        self.assertIn("too many registrations from your address", str(raised.exception))
        self.clock.advance(20 * 60)
        settled(self.hub.register(members[3], "sesame-open"))

    def test_noAccounts(self) -> None:
        """A hub that keeps no accounts says so."""
        hub = Hub(self.clock)
        alice = Member()
        arrive(hub, alice, "Alice")
        with self.assertRaises(ChatError) as raised:
            settled(hub.register(alice, "sesame-open"))
        self.assertEqual(str(raised.exception), "this server keeps no accounts")


class LoginTests(AccountsTestCase):
    def test_reserved(self) -> None:
        """A registered nickname needs its password, whatever its case."""
        self.registered("Alice")
        for nick in ("Alice", "ALICE"):
            with self.assertRaises(PasswordRequired) as raised:
                arrive(self.hub, Member(), nick)
            self.assertEqual(raised.exception.nick, "Alice")

    def test_login(self) -> None:
        """The right password: the member is the account's, under its registered nickname."""
        account = self.registered("Alice")
        alice = Member()
        self.assertEqual(settled(self.hub.arrive(alice, "alice", password="sesame-open")), "Alice")
        self.assertEqual(self.hub.accountOf(alice), account)
        self.assertEqual(self.hub.nicks(), ["Alice"])

    def test_wrongPassword(self) -> None:
        self.registered("Alice")
        alice = Member()
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.arrive(alice, "Alice", password="open-sesame"))
        self.assertEqual(str(raised.exception), "wrong password for Alice")
        self.assertNotIn(alice, self.hub)

    def test_throttled(self) -> None:
        """
        Three failures a minute per account: the fourth attempt, even with the right password,
        is refused without hashing; another address is held too; twenty seconds give one back.
        """
        self.registered("Alice")
        for _ in range(3):
            with self.assertRaises(ChatError):
                settled(self.hub.arrive(Member("192.0.2.50"), "Alice", password="guess-guess"))
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.arrive(Member("192.0.2.60"), "Alice", password="sesame-open"))
        self.assertEqual(
            str(raised.exception), "too many failed logins for Alice; try again in 20 seconds"
        )
        self.clock.advance(20)
        settled(self.hub.arrive(Member("192.0.2.60"), "Alice", password="sesame-open"))

    def test_throttledPerAddress(self) -> None:
        """One address guessing at many accounts is held after three failures."""
        for nick in ("Alice", "Bob", "Carol", "Dave"):
            self.registered(nick)
        for nick in ("Alice", "Bob", "Carol"):
            with self.assertRaises(ChatError):
                settled(self.hub.arrive(Member("192.0.2.66"), nick, password="guess-guess"))
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.arrive(Member("192.0.2.66"), "Dave", password="sesame-open"))
        self.assertIn("too many failed logins", str(raised.exception))
        # Dave himself, from elsewhere, is not held.
        settled(self.hub.arrive(Member("192.0.2.67"), "Dave", password="sesame-open"))

    def test_successGivesBack(self) -> None:
        """Right passwords do not use up the allowance: only failures count."""
        self.registered("Alice")
        for _ in range(10):
            alice = Member()
            settled(self.hub.arrive(alice, "Alice", password="sesame-open"))
            self.hub.depart(alice)

    def test_racingGuessesCounted(self) -> None:
        """Guesses sent before any is answered are counted as they start."""
        self.registered("Alice")
        self.hasher.held = True
        answers = [
            self.hub.arrive(Member("192.0.2.50"), "Alice", password=f"guess-{n:04d}")
            for n in range(5)
        ]
        self.assertEqual(len(self.hasher.waiting), 3)
        for refused in answers[3:]:
            self.assertIn("too many failed logins", str(self.failureResultOf(refused).value))
        self.hasher.answerAll()
        for answer in answers[:3]:
            self.failureResultOf(answer, ChatError)

    def test_classBehindOneAddress(self) -> None:
        """Twenty members of one address logging in at once, passwords still being checked: all in."""
        nicks = [f"pupil{n}" for n in range(20)]
        for nick in nicks:
            self.registered(nick)
        self.hasher.held = True
        answers = [self.hub.arrive(Member("192.0.2.200"), nick, password="sesame-open") for nick in nicks]
        self.hasher.answerAll()
        self.assertEqual([self.successResultOf(answer) for answer in answers], nicks)

    def test_loggedInTwiceAtOnce(self) -> None:
        """Two logins checked at the same time: one member, with two connections."""
        self.registered("Alice")
        self.hasher.held = True
        first, second = Member(), Member()
        answerFirst = self.hub.arrive(first, "Alice", password="sesame-open")
        answerSecond = self.hub.arrive(second, "Alice", password="sesame-open")
        self.hasher.answerAll()
        self.assertEqual(self.successResultOf(answerFirst), "Alice")
        self.assertEqual(self.successResultOf(answerSecond), "Alice")
        self.assertEqual(self.hub.nicks(), ["Alice"])
        self.assertEqual(self.hub.connectionsOf(first), (first, second))

    def test_goneWhileChecking(self) -> None:
        """A connection that goes while its password is checked does not arrive."""
        self.registered("Alice")
        self.hasher.held = True
        alice = Member()
        answer = self.hub.arrive(alice, "Alice", password="sesame-open")
        self.hub.depart(alice)
        self.hasher.answerAll()
        self.assertIn("gone before logging in", str(self.failureResultOf(answer).value))
        self.assertNotIn(alice, self.hub)
        self.assertEqual(len(self.hub), 0)

    def test_guestsOff(self) -> None:
        """With guests off, only registered nicknames arrive."""
        self.registered("Alice")
        self.accounts.guests = False
        with self.assertRaises(ChatError) as raised:
            arrive(self.hub, Member(), "Bob")
        self.assertIn("registered members only", str(raised.exception))
        settled(self.hub.arrive(Member(), "Alice", password="sesame-open"))


class TokenTests(AccountsTestCase):
    def test_token(self) -> None:
        """A token logs in as its account, and only as its account."""
        account = self.registered("Alice")
        self.registered("Bob")
        token = settled(self.accounts.issueToken(account))
        self.assertNotIn(token, str(self.store.tokens))
        with self.assertRaises(ChatError):
            settled(self.hub.arrive(Member(), "Bob", token=token))
        alice = Member()
        settled(self.hub.arrive(alice, "Alice", token=token))
        self.assertEqual(self.hub.accountOf(alice), account)

    def test_revoked(self) -> None:
        account = self.registered("Alice")
        token = settled(self.accounts.issueToken(account))
        settled(self.accounts.revokeToken(token))
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.arrive(Member(), "Alice", token=token))
        self.assertIn("log in with your password", str(raised.exception))

    def test_passwordChangeRevokes(self) -> None:
        """A new password: the old one and every token stop working."""
        account = self.registered("Alice")
        token = settled(self.accounts.issueToken(account))
        alice = Member()
        settled(self.hub.arrive(alice, "Alice", password="sesame-open"))
        with self.assertRaises(ChatError):
            settled(self.hub.changePassword(alice, "wrong-wrong", "sesame-close"))
        settled(self.hub.changePassword(alice, "sesame-open", "sesame-close"))
        self.hub.depart(alice)
        with self.assertRaises(ChatError):
            settled(self.hub.arrive(Member(), "Alice", token=token))
        with self.assertRaises(ChatError):
            settled(self.hub.arrive(Member(), "Alice", password="sesame-open"))
        settled(self.hub.arrive(Member(), "Alice", password="sesame-close"))

    def test_guestCannotChangePassword(self) -> None:
        bob = Member()
        arrive(self.hub, bob, "Bob")
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.changePassword(bob, "a-password", "b-password"))
        self.assertIn("not logged in", str(raised.exception))


class RenameTests(AccountsTestCase):
    def test_guestCannotTakeRegistered(self) -> None:
        self.registered("Alice")
        bob = Member()
        arrive(self.hub, bob, "Bob")
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.rename(bob, "alice"))
        self.assertEqual(str(raised.exception), "Alice is registered: only its owner may use it")

    def test_accountKeepsItsName(self) -> None:
        """A logged-in member keeps its account's nickname, but may change its case."""
        self.registered("Alice")
        alice = Member()
        settled(self.hub.arrive(alice, "Alice", password="sesame-open"))
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.rename(alice, "Alicia"))
        self.assertIn("an account keeps its nickname", str(raised.exception))
        self.assertEqual(settled(self.hub.rename(alice, "ALICE")), "ALICE")

    def test_loadedAtStart(self) -> None:
        """Accounts a store kept are reserved once loaded."""
        self.registered("Alice")
        accounts = Accounts(self.clock, self.hasher, self.store)
        settled(accounts.load())
        hub = Hub(self.clock, accounts=accounts)
        with self.assertRaises(PasswordRequired):
            arrive(hub, Member(), "Alice")


class MultiConnectionTests(AccountsTestCase):
    """One account logged in from several connections at once: one member."""

    def setUp(self) -> None:
        super().setUp()
        self.registered("Alice")
        self.laptop, self.phone = Member(), Member()
        settled(self.hub.arrive(self.laptop, "Alice", password="sesame-open"))
        settled(self.hub.arrive(self.phone, "alice", password="sesame-open"))
        self.bob = Member()
        arrive(self.hub, self.bob, "Bob")
        for member in (self.laptop, self.phone, self.bob):
            member.events.clear()

    def kinds(self, member: Member) -> list[tuple[str, ...]]:
        seen = [
            (type(event).__name__, *(str(getattr(event, field, None) or "") for field in ("room", "nick", "text")))
            for event in member.events
        ]
        member.events.clear()
        return seen

    def test_oneMember(self) -> None:
        """Counted once, listed once; the second connection arrived telling nobody."""
        lobby = self.hub.defaultRoom
        self.assertEqual((len(self.hub), len(lobby)), (2, 2))
        self.assertEqual(self.hub.nicks(), ["Alice", "Bob"])
        self.assertEqual(self.hub.nicks(lobby), ["Alice", "Bob"])
        self.assertEqual(self.hub.view(lobby, 0).members, 2)
        self.assertEqual(self.hub.accountOf(self.phone), self.hub.accountOf(self.laptop))

    def test_everythingReachesEveryConnection(self) -> None:
        lobby = self.hub.defaultRoom
        self.hub.say(self.bob, lobby, "hi Alice")
        self.assertEqual(self.kinds(self.laptop), [("Said", "lobby", "Bob", "hi Alice")])
        self.assertEqual(self.kinds(self.phone), [("Said", "lobby", "Bob", "hi Alice")])

    def test_whatOneSaysTheOthersSee(self) -> None:
        """A line from the laptop: the phone sees it as sent, and so does Bob."""
        self.hub.say(self.laptop, self.hub.defaultRoom, "from the laptop")
        self.assertEqual(self.kinds(self.laptop), [])
        self.assertEqual(self.kinds(self.phone), [("Said", "lobby", "Alice", "from the laptop")])
        self.assertEqual(self.kinds(self.bob), [("Said", "lobby", "Alice", "from the laptop")])

    def test_roomsShared(self) -> None:
        """Joining on one joins on all, told once to the room; parting likewise."""
        games = self.hub.join(self.phone, "games")
        self.assertIn(self.laptop, games)
        self.assertEqual(len(games), 1)
        self.assertEqual(self.kinds(self.laptop), [("Joined", "games", "Alice", "")])
        self.assertEqual([room.name for room in self.hub.roomsOf(self.laptop)], ["lobby", "games"])
        self.hub.join(self.bob, "games")
        self.kinds(self.laptop), self.kinds(self.phone)
        self.hub.part(self.laptop, "games")
        self.assertNotIn(self.phone, games)
        self.assertEqual(self.kinds(self.phone), [("Left", "games", "Alice", "")])
        self.assertEqual(self.kinds(self.bob), [("Left", "games", "Alice", "")])

    def test_privateMessages(self) -> None:
        """To the account: every connection; from it: the sender's others see it as sent."""
        self.hub.whisper(self.bob, "alice", "psst")
        self.assertEqual(self.kinds(self.laptop), [("Whispered", "", "", "psst")])
        self.assertEqual(self.kinds(self.phone), [("Whispered", "", "", "psst")])
        receipt = self.hub.whisper(self.phone, "Bob", "hello")
        self.assertEqual((receipt.sender, receipt.recipient), ("Alice", "Bob"))
        self.assertEqual(self.kinds(self.laptop), [("Whispered", "", "", "hello")])
        self.assertEqual(self.kinds(self.bob), [("Whispered", "", "", "hello")])
        self.assertEqual(self.kinds(self.phone), [])

    def test_leavesWithItsLastConnection(self) -> None:
        """The laptop going tells nobody; the phone going too is the member leaving."""
        self.assertTrue(self.hub.depart(self.laptop, "closed the lid"))
        self.assertEqual(self.kinds(self.bob), [])
        self.assertEqual(self.hub.nicks(), ["Alice", "Bob"])
        self.assertNotIn(self.laptop, self.hub.defaultRoom)
        self.hub.say(self.bob, self.hub.defaultRoom, "still there?")
        self.assertEqual(self.kinds(self.laptop), [])
        self.hub.depart(self.phone, "battery")
        self.assertEqual(self.kinds(self.bob), [("Left", "lobby", "Alice", "")])
        self.assertEqual(self.hub.nicks(), ["Bob"])
        # The nickname is free for its owner again, and still reserved from everyone else.
        with self.assertRaises(PasswordRequired):
            arrive(self.hub, Member(), "Alice")

    def test_comesInWhereTheAccountIs(self) -> None:
        """A connection logging in later is in the account's rooms, not the default one."""
        self.hub.join(self.laptop, "games")
        self.hub.part(self.laptop, "lobby")
        tablet = Member()
        settled(self.hub.arrive(tablet, "Alice", password="sesame-open"))
        self.assertEqual([room.name for room in self.hub.roomsOf(tablet)], ["games"])
        self.assertNotIn(tablet, self.hub.defaultRoom)
        self.assertEqual(tablet.events, [])

    def test_renameCase(self) -> None:
        """A change of case reaches every connection."""
        settled(self.hub.rename(self.phone, "ALICE"))
        self.assertEqual(self.kinds(self.laptop), [("Renamed", "", "", "")])
        self.assertEqual(self.hub.nickOf(self.laptop), "ALICE")

    def test_guestsNotShared(self) -> None:
        """A guest's nickname is one connection's: a second is refused as ever."""
        with self.assertRaises(ChatError) as raised:
            arrive(self.hub, Member(), "bob")
        self.assertIn("in use", str(raised.exception))
