"""
Tests for accounts in the browser door's JSON protocol: logging in with a password (the
C{password} question, then a token for the page), with a token, registering, changing the
password and logging out; on in-memory transports.
"""

from __future__ import annotations

from chatsvc.chat import Accounts, Hub, MemoryAccountStore
from chatsvc.line.protocol import ChatFactory
from chatsvc.web.protocol import WebFactory
from tests.chat.test_accounts import PlainHasher
from tests.line.test_protocol import Client as LineClient
from tests.web.test_protocol import WebClient, WebTestCase


class WebAccountsTestCase(WebTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = MemoryAccountStore()
        self.accounts = Accounts(self.clock, PlainHasher(), self.store)
        self.hub = Hub(self.clock, accounts=self.accounts)
        self.factory = WebFactory(self.hub, self.limits, self.admission, self.outbox, pingInterval=0)
        self.line = ChatFactory(self.hub, self.limits, admission=self.admission, outbox=self.outbox)

    def registered(self, nick: str, password: str = "sesame-open") -> str:
        """C{nick} registered from the page, which then leaves; the token it was given."""
        client = self.join(nick)
        client.send({"type": "register", "password": password, "label": "r"})
        [registered] = client.messages()
        self.assertEqual((registered["type"], registered["nick"]), ("registered", nick))
        client.send({"type": "quit"})
        token: str = registered["token"]
        return token

    def named(self, request: dict[str, object]) -> tuple[WebClient, list[dict[str, object]]]:
        client = self.connect()
        client.send({"type": "name", **request})
        return client, client.messages()


class LoginTests(WebAccountsTestCase):
    def test_passwordAsked(self) -> None:
        """A registered nickname without a password: the page is asked for it."""
        self.registered("Alice")
        _, messages = self.named({"nick": "alice", "label": "n"})
        self.assertEqual(messages, [{"type": "password", "nick": "Alice", "label": "n"}])

    def test_password(self) -> None:
        """The right password: welcome, as an account, with a token for the page to keep."""
        self.registered("Alice")
        _, messages = self.named({"nick": "Alice", "password": "sesame-open"})
        welcome, room = messages
        self.assertEqual((welcome["nick"], welcome["account"]), ("Alice", True))
        self.assertIsInstance(welcome["token"], str)
        self.assertEqual(room["type"], "room")
        self.assertEqual(len(self.store.tokens), 2)

    def test_wrongPassword(self) -> None:
        self.registered("Alice")
        client, messages = self.named({"nick": "Alice", "password": "open-sesame"})
        self.assertEqual(
            messages, [{"type": "error", "for": "name", "message": "wrong password for Alice"}]
        )
        client.send({"type": "name", "nick": "Bob"})
        self.assertEqual(client.types(), ["welcome", "room"])

    def test_token(self) -> None:
        """A token the page kept logs it in again (a reload), and gives no new token."""
        token = self.registered("Alice")
        _, messages = self.named({"nick": "Alice", "token": token})
        self.assertEqual(messages[0], {"type": "welcome", "nick": "Alice", "account": True})

    def test_guest(self) -> None:
        _, messages = self.named({"nick": "Bob"})
        self.assertEqual(messages[0], {"type": "welcome", "nick": "Bob", "account": False})

    def test_logout(self) -> None:
        """Logging out ends the session, and the token works no more."""
        token = self.registered("Alice")
        client, _ = self.named({"nick": "Alice", "token": token})
        client.send({"type": "logout", "token": token})
        [bye] = client.messages()
        self.assertEqual(bye, {"type": "bye", "reason": "Goodbye, Alice! You are logged out."})
        self.assertTrue(client.closing)
        _, messages = self.named({"nick": "Alice", "token": token})
        self.assertEqual(
            messages,
            [
                {
                    "type": "error",
                    "for": "name",
                    "message": "that login has expired: log in with your password",
                }
            ],
        )


class AccountTests(WebAccountsTestCase):
    def test_registerRefusals(self) -> None:
        alice = self.join("Alice")
        alice.send({"type": "register", "password": "short"})
        self.assertEqual(
            alice.messages(),
            [{"type": "error", "for": "register", "message": "a password needs at least 8 characters"}],
        )
        alice.send({"type": "register"})
        self.assertEqual(alice.messages()[0]["message"], "'password' must be a string")

    def test_registerBeforeNaming(self) -> None:
        client = self.connect()
        client.send({"type": "register", "password": "sesame-open"})
        self.assertEqual(client.messages()[0]["message"], "choose a nickname first")

    def test_changePassword(self) -> None:
        """A new password: a new token for this page, and the old ones stop working."""
        old = self.registered("Alice")
        client, _ = self.named({"nick": "Alice", "password": "sesame-open"})
        client.send({"type": "password", "old": "sesame-open", "new": "sesame-shut", "label": "p"})
        [changed] = client.messages()
        self.assertEqual((changed["type"], changed["label"]), ("passwordChanged", "p"))
        client.send({"type": "quit"})
        _, messages = self.named({"nick": "Alice", "token": old})
        self.assertEqual(messages[0]["type"], "error")
        _, messages = self.named({"nick": "Alice", "token": changed["token"]})
        self.assertEqual(messages[0]["type"], "welcome")

    def test_guestTakesNoRegisteredName(self) -> None:
        self.registered("Alice")
        bob = self.join("Bob")
        bob.send({"type": "nick", "nick": "Alice"})
        self.assertEqual(
            bob.messages()[0]["message"], "Alice is registered: only its owner may use it"
        )


class SeveralConnectionsTests(WebAccountsTestCase):
    """One account on two pages (a laptop and a phone) and a terminal at once."""

    def test_twoPagesAndATerminal(self) -> None:
        token = self.registered("Alice")
        laptop, _ = self.named({"nick": "Alice", "token": token})
        laptop.send({"type": "join", "room": "games"})
        laptop.messages()
        phone, messages = self.named({"nick": "Alice", "token": token})
        welcome, *rooms = messages
        self.assertEqual(welcome["connections"], 2)
        self.assertEqual([room["room"] for room in rooms], ["lobby", "games"])
        self.assertEqual(laptop.messages(), [])  # nobody is told of a second connection

        terminal = LineClient(self.line)
        terminal.send("Alice\nsesame-open\n")
        self.assertIn("*** You are logged in from 3 connections; your rooms: lobby, games", terminal.lines())

        phone.send({"type": "say", "room": "games", "text": "from the phone"})
        [said] = [m for m in laptop.messages() if m["type"] == "said"]
        self.assertEqual((said["nick"], said["text"]), ("Alice", "from the phone"))
        self.assertEqual(terminal.lines(), ["[games] Alice: from the phone"])

        terminal.send("/join dev\n")
        [joined] = laptop.messages()
        self.assertEqual((joined["type"], joined["room"], joined["nick"]), ("joined", "dev", "Alice"))
        phone.messages()
        laptop.send({"type": "part", "room": "dev"})
        laptop.messages()
        [left] = phone.messages()
        self.assertEqual((left["type"], left["room"], left["nick"]), ("left", "dev", "Alice"))
        self.assertIn("*** You left dev from another connection; now talking in games", terminal.lines())
        self.assertEqual(len(self.hub), 1)
