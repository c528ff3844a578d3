"""
Tests for accounts on the line door: C{GET_PASSWORD} after a registered nickname, C{/register},
C{/password}, and every refusal, on in-memory transports.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from chatsvc.chat import Accounts, Hub, MemoryAccountStore
from chatsvc.line.protocol import ChatFactory
from tests.chat.test_accounts import PlainHasher
from tests.line.test_protocol import Client, ProtocolTestCase


class LineAccountsTestCase(ProtocolTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hasher = PlainHasher()
        self.store = MemoryAccountStore()
        self.accounts = Accounts(self.clock, self.hasher, self.store)
        self.room = Hub(self.clock, accounts=self.accounts)
        self.factory = ChatFactory(self.room, self.limits)

    def registered(self, nick: str, password: str = "sesame-open") -> None:
        client = self.join(nick)
        client.send(f"/register {password}\n")
        client.send("/quit\n")


class RegisterTests(LineAccountsTestCase):
    def test_register(self) -> None:
        alice = self.join("Alice")
        alice.send("/register sesame-open\n")
        self.assertEqual(
            alice.lines(),
            [
                "*** Alice is registered: nobody else may use it, and you log in with your "
                "password from now on."
            ],
        )
        self.assertIn("alice", self.store.accounts)

    def test_usage(self) -> None:
        alice = self.join("Alice")
        for line in ("/register\n", "/register a b c\n"):
            alice.send(line)
            self.assertEqual(alice.lines(), ["*** Error: usage: /register PASSWORD [INVITE-CODE]"])
        alice.send("/register short\n")
        self.assertEqual(alice.lines(), ["*** Error: a password needs at least 8 characters"])
        alice.send("/register disconnect\n")
        self.assertEqual(
            alice.lines(),
            ["*** Error: 'disconnect' cannot be a password here: it ends the session"],
        )
        self.assertEqual(self.store.accounts, {})

    def test_closed(self) -> None:
        self.accounts.registration = "closed"
        alice = self.join("Alice")
        alice.send("/register sesame-open\n")
        self.assertEqual(alice.lines(), ["*** Error: registration is closed on this server"])


class LoginTests(LineAccountsTestCase):
    def test_login(self) -> None:
        """GET_NAME, a registered nickname, GET_PASSWORD, the password: welcome."""
        self.registered("Alice")
        bob = self.join("Bob")
        alice = self.connect()
        alice.send("alice\n")
        self.assertEqual(alice.lines(), ["GET_PASSWORD"])
        self.assertEqual(bob.lines(), [])
        alice.send("sesame-open\r\n")
        self.assertEqual(alice.lines()[0], "Alice connected to server!")
        self.assertEqual(bob.lines(), ["Alice joined!"])

    def test_wrongPassword(self) -> None:
        """A wrong password: a clear error, and GET_NAME again."""
        self.registered("Alice")
        alice = self.connect()
        alice.send("Alice\n")
        alice.send("open-sesame\n")
        self.assertEqual(
            alice.lines(),
            ["GET_PASSWORD", "*** Error: wrong password for Alice", "GET_NAME"],
        )
        alice.send("Carol\n")
        self.assertEqual(alice.lines()[0], "Carol connected to server!")

    def test_quitAtPassword(self) -> None:
        self.registered("Alice")
        alice = self.connect()
        alice.send("Alice\n")
        alice.send("q\n")
        self.assertEqual(alice.lines(), ["GET_PASSWORD", "*** Goodbye!"])
        self.assertTrue(alice.closing)

    def test_throttled(self) -> None:
        """After three wrong passwords, even the right one waits; other members chat on."""
        self.registered("Alice")
        bob, carol = self.join("Bob"), self.join("Carol")
        guesser = self.connect()
        for n in range(3):
            guesser.send("Alice\n")
            guesser.send(f"guess-{n:04d}\n")
        guesser.lines()
        guesser.send("Alice\n")
        guesser.send("sesame-open\n")
        self.assertEqual(
            guesser.lines(),
            [
                "GET_PASSWORD",
                "*** Error: too many failed logins for Alice; try again in 20 seconds",
                "GET_NAME",
            ],
        )
        bob.send("still here\n")
        self.assertEqual(carol.lines(), ["Bob: still here"])

    def test_passwordNotLogged(self) -> None:
        """No log event carries a password, right or wrong."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.registered("Alice", "secret-one")
        alice = self.connect()
        alice.send("Alice\nsecret-two\nAlice\nsecret-one\n/password secret-one secret-three\n")
        self.assertNotIn("secret-", repr(list(observer)))

    def test_guestCannotTakeIt(self) -> None:
        """A guest can take a registered nickname neither at arrival nor by renaming."""
        self.registered("Alice")
        bob = self.join("Bob")
        bob.send("/nick alice\n")
        self.assertEqual(
            bob.lines(), ["*** Error: Alice is registered: only its owner may use it"]
        )


class PasswordTests(LineAccountsTestCase):
    def test_change(self) -> None:
        self.registered("Alice")
        alice = self.connect()
        alice.send("Alice\nsesame-open\n")
        alice.lines()
        alice.send("/password wrong-wrong sesame-shut\n")
        self.assertEqual(alice.lines(), ["*** Error: wrong password for Alice"])
        alice.send("/password sesame-open sesame-shut\n")
        self.assertEqual(alice.lines(), ["*** Your password is changed."])
        alice.send("/quit\n")
        again = Client(self.factory)
        again.send("Alice\nsesame-shut\n")
        self.assertEqual(again.lines()[:3], ["GET_NAME", "GET_PASSWORD", "Alice connected to server!"])

    def test_guest(self) -> None:
        bob = self.join("Bob")
        bob.send("/password a-password b-password\n")
        self.assertEqual(
            bob.lines(),
            ["*** Error: you are not logged in to an account (/register makes one)"],
        )
        bob.send("/password one\n")
        self.assertEqual(bob.lines(), ["*** Error: usage: /password OLD NEW"])


class SeveralConnectionsTests(LineAccountsTestCase):
    """One account on two terminals at once."""

    def loggedIn(self) -> Client:
        client = self.connect()
        client.send("Alice\nsesame-open\n")
        lines = client.lines()
        self.assertEqual(lines[:2], ["GET_PASSWORD", "Alice connected to server!"])
        return client

    def test_twoTerminals(self) -> None:
        self.registered("Alice")
        bob = self.join("Bob")
        laptop = self.loggedIn()
        bob.lines()
        phone = self.connect()
        phone.send("Alice\nsesame-open\n")
        self.assertIn(
            "*** You are logged in from 2 connections; your rooms: lobby", phone.lines()
        )
        self.assertEqual(bob.lines(), [])  # nobody is told of a second connection
        bob.send("/who\n")
        self.assertEqual(bob.lines(), ["*** Members (2): Alice, Bob"])

        bob.send("hi Alice\n")
        self.assertEqual((laptop.lines(), phone.lines()), (["Bob: hi Alice"], ["Bob: hi Alice"]))
        laptop.send("typed on the laptop\n")
        self.assertEqual(phone.lines(), ["Alice: typed on the laptop"])
        self.assertEqual(bob.lines(), ["Alice: typed on the laptop"])

        phone.send("/join games\n")
        phone.lines()
        self.assertEqual(laptop.lines(), ["*** You joined games from another connection"])
        laptop.send("/part games\n")
        laptop.lines()
        self.assertEqual(
            phone.lines(), ["*** You left games from another connection; now talking in lobby"]
        )

        bob.send("/msg alice psst\n")
        self.assertEqual(bob.lines(), ["-> *Alice* psst"])
        self.assertEqual((laptop.lines(), phone.lines()), (["*Bob* psst"], ["*Bob* psst"]))
        laptop.send("/msg Bob hello\n")
        self.assertEqual(laptop.lines(), ["-> *Bob* hello"])
        self.assertEqual(phone.lines(), ["-> *Bob* hello"])
        self.assertEqual(bob.lines(), ["*Alice* hello"])

        laptop.send("/quit\n")
        self.assertEqual(bob.lines(), [])
        phone.send("still here\n")
        self.assertEqual(bob.lines(), ["Alice: still here"])
        phone.send("/quit\n")
        self.assertEqual(bob.lines(), ["Alice left!"])
