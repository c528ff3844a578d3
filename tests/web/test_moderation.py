"""
Tests for moderation in the browser door's JSON protocol: roles and settings in the room view,
each request, the events the room sees, and the refusals; on in-memory transports.
"""

from __future__ import annotations

from chatsvc.chat import Accounts, Hub, MemoryAccountStore, nick_key
from chatsvc.chat.moderation import MemoryModerationStore, Moderation
from chatsvc.line.protocol import ChatFactory
from chatsvc.web.protocol import WebFactory, formatTime
from tests.chat.test_accounts import PlainHasher
from tests.web.test_protocol import WebClient, WebTestCase


class WebModerationTests(WebTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = MemoryModerationStore()
        accounts = Accounts(self.clock, PlainHasher(), MemoryAccountStore())
        self.hub = Hub(self.clock, accounts=accounts, moderation=Moderation(self.clock, self.store))
        self.factory = WebFactory(self.hub, self.limits, self.admission, self.outbox, pingInterval=0)
        self.line = ChatFactory(self.hub, self.limits, admission=self.admission, outbox=self.outbox)
        self.alice = self.registered("Alice")
        self.alice.send({"type": "join", "room": "games"})
        self.bob = self.join("Bob")
        self.bob.send({"type": "join", "room": "games"})
        self.alice.messages()
        self.bob.messages()

    def registered(self, nick: str) -> WebClient:
        client = self.join(nick)
        client.send({"type": "register", "password": "sesame-open"})
        client.messages()
        return client

    def test_roomShowsRolesAndSettings(self) -> None:
        carol = self.registered("Carol")
        carol.send({"type": "join", "room": "games"})
        [room] = [m for m in carol.messages() if m["type"] == "room"]
        self.assertEqual(room["roles"], {"Alice": "owner"})
        self.assertEqual(room["settings"], {"private": False, "moderated": False, "topiclock": False, "registered": False})

    def test_kick(self) -> None:
        self.alice.send({"type": "kick", "room": "games", "nick": "Bob", "reason": "spam"})
        [told] = self.alice.messages()
        self.assertEqual(
            {k: told[k] for k in ("type", "room", "action", "by", "target", "reason", "text")},
            {"type": "moderation", "room": "games", "action": "kick", "by": "Alice", "target": "Bob",
             "reason": "spam", "text": "Bob was kicked by Alice (spam)"},
        )
        [kicked] = self.bob.messages()
        self.assertEqual(kicked["action"], "kick")
        self.bob.send({"type": "say", "room": "games", "text": "hey"})
        self.assertEqual(self.bob.messages()[0]["message"], "you are not in room games")

    def test_banWithDuration(self) -> None:
        self.alice.send({"type": "ban", "room": "games", "nick": "Bob", "duration": "2h"})
        [told] = self.alice.messages()
        self.assertEqual(told["until"], formatTime(self.clock.seconds() + 7200))
        self.alice.send({"type": "sanctions", "room": "games", "kind": "ban"})
        [listed] = self.alice.messages()
        self.assertEqual([s["nick"] for s in listed["sanctions"]], ["Bob"])
        self.bob.messages()
        self.bob.send({"type": "join", "room": "games"})
        self.assertIn("you are banned from games", self.bob.messages()[0]["message"])

    def test_refusals(self) -> None:
        self.bob.send({"type": "kick", "room": "games", "nick": "Alice", "label": "k"})
        self.assertEqual(
            self.bob.messages(),
            [{"type": "error", "for": "kick", "label": "k", "message": "only operators of games can kick"}],
        )
        self.alice.send({"type": "set", "room": "games", "setting": "moderated", "on": "yes"})
        self.assertEqual(self.alice.messages()[0]["message"], "'on' must be true or false")
        self.alice.send({"type": "role", "room": "games", "nick": "Bob", "role": "op", "on": True})
        self.assertIn("not registered", self.alice.messages()[0]["message"])

    def test_kill(self) -> None:
        self.store.adminKeys.add(nick_key("Alice"))
        self.alice.send({"type": "kill", "nick": "Bob", "reason": "flooding", "label": "x"})
        self.assertIn({"type": "killed", "nick": "Bob", "label": "x"}, self.alice.messages())
        told, bye = self.bob.messages()
        self.assertEqual((told["action"], bye["type"]), ("kill", "bye"))
        self.assertEqual(bye["reason"], "Disconnected: by Alice (flooding)")
        self.assertTrue(self.bob.closing)
