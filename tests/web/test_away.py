"""
Tests for away in the browser door's JSON protocol: the C{away} request and its answer, the
C{away} messages pushed to the pages sharing a room with the member (and to its own other
pages), and who is away in C{room}, C{who}, C{whois} and C{joined}; on in-memory transports.
"""

from __future__ import annotations

import json
from typing import Any

from chatsvc.chat import MAX_AWAY_LENGTH
from chatsvc.web import protocol
from tests.line.test_protocol import Client as LineClient
from tests.web.test_accounts import WebAccountsTestCase
from tests.web.test_protocol import WebTestCase


class AwayRequestTests(WebTestCase):
    """The request, and its answer to the page that asked."""

    def test_awayAndBack(self) -> None:
        """Away with a message, then back with null: each answered, with the label."""
        alice = self.join("Alice")
        alice.send({"type": "away", "message": "lunch", "label": "a1"})
        self.assertEqual(
            alice.messages(), [{"type": "away", "nick": "Alice", "message": "lunch", "label": "a1"}]
        )
        self.assertEqual(self.hub.awayOf("Alice"), "lunch")
        alice.send({"type": "away", "message": None, "label": "a2"})
        self.assertEqual(
            alice.messages(), [{"type": "away", "nick": "Alice", "message": None, "label": "a2"}]
        )
        self.assertIsNone(self.hub.awayOf("Alice"))

    def test_absentOrBlankIsBack(self) -> None:
        """No message, or a blank one, is back; answered all the same when nothing changed."""
        alice = self.join("Alice")
        alice.send({"type": "away", "message": "lunch"})
        alice.messages()
        alice.send({"type": "away", "message": "   "})
        self.assertEqual(alice.messages(), [{"type": "away", "nick": "Alice", "message": None}])
        alice.send({"type": "away"})
        self.assertEqual(alice.messages(), [{"type": "away", "nick": "Alice", "message": None}])

    def test_madeSafe(self) -> None:
        """The message is kept (and answered) made safe, trimmed, as every door shows it."""
        alice = self.join("Alice")
        alice.send({"type": "away", "message": "  out\x1b[2J  "})
        [answer] = alice.messages()
        self.assertEqual(answer["message"], "out^[[2J")

    def test_refused(self) -> None:
        """Too long, or not a string: an error for the request, with its label."""
        alice = self.join("Alice")
        alice.send({"type": "away", "message": "x" * (MAX_AWAY_LENGTH + 1), "label": "a3"})
        alice.send({"type": "away", "message": 42, "label": "a4"})
        self.assertEqual(
            alice.messages(),
            [
                {
                    "type": "error",
                    "for": "away",
                    "message": f"an away message may be at most {MAX_AWAY_LENGTH} characters long",
                    "label": "a3",
                },
                {"type": "error", "for": "away", "message": "'message' must be a string", "label": "a4"},
            ],
        )
        self.assertIsNone(self.hub.awayOf("Alice"))

    def test_beforeNaming(self) -> None:
        client = self.connect()
        client.send({"type": "away", "message": "lunch"})
        self.assertEqual(
            client.messages(), [{"type": "error", "for": "away", "message": "choose a nickname first"}]
        )


class AwayPushTests(WebTestCase):
    """Who is told of a member going away and coming back."""

    def test_pagesSharingARoom(self) -> None:
        """
        Every other page in a room with the member is told, once however many rooms they
        share; a page in no room with it is not; the page that asked gets its answer only.
        """
        alice, bob, carol, dave = (self.join(nick) for nick in ("Alice", "Bob", "Carol", "Dave"))
        for client in (alice, bob):
            client.send({"type": "join", "room": "games"})
        dave.send({"type": "part", "room": "lobby"})
        dave.send({"type": "join", "room": "chess"})
        for client in (alice, bob, carol, dave):
            client.messages()
        alice.send({"type": "away", "message": "lunch", "label": "a"})
        self.assertEqual(alice.messages(), [{"type": "away", "nick": "Alice", "message": "lunch", "label": "a"}])
        pushed = {"type": "away", "nick": "Alice", "message": "lunch"}
        self.assertEqual(bob.messages(), [pushed])  # in lobby and games with Alice: once
        self.assertEqual(carol.messages(), [pushed])
        self.assertEqual(dave.messages(), [])
        alice.send({"type": "away", "message": None})
        alice.messages()
        back = {"type": "away", "nick": "Alice", "message": None}
        self.assertEqual((bob.messages(), carol.messages(), dave.messages()), ([back], [back], []))

    def test_noChangeNoPush(self) -> None:
        """Setting the same message again, or coming back when not away, tells nobody."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.messages()
        alice.send({"type": "away", "message": None})
        alice.send({"type": "away", "message": "lunch"})
        alice.send({"type": "away", "message": "lunch"})
        self.assertEqual(len(alice.messages()), 3)
        self.assertEqual(bob.messages(), [{"type": "away", "nick": "Alice", "message": "lunch"}])

    def test_renderedOnce(self) -> None:
        """The pushed message is rendered to JSON once for all the pages told."""
        alice = self.join("Alice")
        others = [self.join(f"m{number}") for number in range(5)]
        for client in others:
            client.messages()
        encoded: list[dict[str, Any]] = []
        encode = protocol._encode

        def counting(message: dict[str, Any]) -> bytes:
            encoded.append(message)
            return encode(message)

        self.patch(protocol, "_encode", counting)
        alice.send({"type": "away", "message": "lunch"})
        self.assertEqual([m["type"] for m in encoded], ["away", "away"])  # the push, the answer
        frames = {client.frames()[0][1] for client in others}
        self.assertEqual(len(frames), 1)
        self.assertEqual(json.loads(frames.pop()), {"type": "away", "nick": "Alice", "message": "lunch"})

    def test_fromTheLineDoor(self) -> None:
        """A member going away on the line door: the pages in its rooms are told."""
        bob = self.join("Bob")
        line = LineClient(self.line)
        line.send("Line\n")
        line.lines()
        bob.messages()
        line.send("/away on the phone\n")
        self.assertEqual(line.lines(), ["*** You are marked as away: on the phone"])
        self.assertEqual(bob.messages(), [{"type": "away", "nick": "Line", "message": "on the phone"}])
        bob.send({"type": "whois", "nick": "line"})
        [whois] = bob.messages()
        self.assertEqual(whois["away"], "on the phone")

    def test_toTheLineDoor(self) -> None:
        """A page going away: the line door shows it in its member lists and on /msg."""
        web = self.join("Web")
        line = LineClient(self.line)
        line.send("Line\n")
        line.lines()
        web.send({"type": "away", "message": "lunch"})
        line.send("/who\n/msg web hi\n")
        self.assertEqual(
            line.lines(),
            ["*** Members (2): Line, Web (away)", "-> *Web* hi", "*** Web is away: lunch"],
        )


class AwayShownTests(WebTestCase):
    """Who is away, in what lists members and tells who is who."""

    def test_who(self) -> None:
        alice, bob, carol = self.join("Alice"), self.join("Bob"), self.join("carol")
        alice.send({"type": "away", "message": "lunch"})
        carol.send({"type": "away", "message": "meeting"})
        bob.messages()
        bob.send({"type": "who", "room": "lobby", "label": "w"})
        self.assertEqual(
            bob.messages(),
            [
                {
                    "type": "who",
                    "room": "lobby",
                    "members": ["Alice", "Bob", "carol"],
                    "roles": {},
                    "away": {"Alice": "lunch", "carol": "meeting"},
                    "label": "w",
                }
            ],
        )

    def test_room(self) -> None:
        """The room a page joins (or lands in) names those of its members who are away."""
        alice = self.join("Alice")
        alice.send({"type": "away", "message": "lunch"})
        bob = self.connect()
        bob.send({"type": "name", "nick": "Bob"})
        welcome, room = bob.messages()
        self.assertEqual((room["members"], room["away"]), (["Alice", "Bob"], {"Alice": "lunch"}))
        alice.send({"type": "join", "room": "games"})
        bob.send({"type": "join", "room": "games"})
        [games] = [m for m in bob.messages() if m["type"] == "room"]
        self.assertEqual(games["away"], {"Alice": "lunch"})
        bob.send({"type": "join", "room": "empty"})
        [empty] = bob.messages()
        self.assertEqual(empty["away"], {})

    def test_crowdedRoom(self) -> None:
        """A crowded room lists no names, and no away: who has both."""
        self.hub.crowdSize = 1
        alice = self.join("Alice")
        alice.send({"type": "away", "message": "lunch"})
        bob = self.connect()
        bob.send({"type": "name", "nick": "Bob"})
        _, room = bob.messages()
        self.assertEqual((room["members"], room["away"]), (None, {}))
        bob.send({"type": "who", "room": "lobby"})
        [who] = bob.messages()
        self.assertEqual(who["away"], {"Alice": "lunch"})

    def test_joined(self) -> None:
        """A newcomer who is not away (back before joining) joins without an away message."""
        alice, bob = self.join("Alice"), self.join("Bob")
        bob.send({"type": "join", "room": "games"})
        alice.send({"type": "away", "message": "lunch"})
        alice.send({"type": "join", "room": "games"})
        bob.messages()
        alice.send({"type": "away", "message": None})
        alice.send({"type": "part", "room": "games"})
        alice.send({"type": "join", "room": "games"})
        joined = [m for m in bob.messages() if m["type"] == "joined"]
        self.assertEqual([m.get("away") for m in joined], [None])
        self.assertNotIn("away", joined[0])

    def test_joinedAway(self) -> None:
        alice, bob = self.join("Alice"), self.join("Bob")
        bob.send({"type": "join", "room": "games"})
        bob.messages()
        alice.send({"type": "away", "message": "lunch"})
        self.assertEqual(bob.messages(), [{"type": "away", "nick": "Alice", "message": "lunch"}])
        alice.send({"type": "join", "room": "games"})
        [joined] = bob.messages()
        self.assertEqual((joined["type"], joined["nick"], joined["away"]), ("joined", "Alice", "lunch"))

    def test_whois(self) -> None:
        alice, bob = self.join("Alice"), self.join("Bob")
        bob.send({"type": "whois", "nick": "Alice"})
        [whois] = bob.messages()
        self.assertIsNone(whois["away"])
        alice.send({"type": "away", "message": "lunch"})
        bob.messages()
        bob.send({"type": "whois", "nick": "alice", "label": "i"})
        [whois] = bob.messages()
        self.assertEqual((whois["nick"], whois["away"], whois["label"]), ("Alice", "lunch", "i"))


class AwaySeveralPagesTests(WebAccountsTestCase):
    """An account on two pages (and a terminal) is one member, away on all of them."""

    def test_ownPagesTold(self) -> None:
        token = self.registered("Alice")
        laptop, phone = self.connect(), self.connect()
        for page in (laptop, phone):
            page.send({"type": "name", "nick": "Alice", "token": token})
            page.messages()
        terminal = LineClient(self.line)
        terminal.send("Alice\n")
        terminal.send("sesame-open\n")
        terminal.lines()
        laptop.send({"type": "away", "message": "lunch", "label": "a"})
        self.assertEqual(
            laptop.messages(), [{"type": "away", "nick": "Alice", "message": "lunch", "label": "a"}]
        )
        self.assertEqual(phone.messages(), [{"type": "away", "nick": "Alice", "message": "lunch"}])
        self.assertEqual(
            terminal.lines(), ["*** You are marked as away from another connection: lunch"]
        )
        phone.send({"type": "who", "room": "lobby"})
        [who] = phone.messages()
        self.assertEqual(who["away"], {"Alice": "lunch"})

        # Back from the terminal: both pages are told.
        terminal.send("/away\n")
        self.assertEqual(terminal.lines(), ["*** You are no longer marked as away"])
        back = {"type": "away", "nick": "Alice", "message": None}
        self.assertEqual((laptop.messages(), phone.messages()), ([back], [back]))

    def test_ownPagesInNoRoom(self) -> None:
        """The member's other pages are told even when it is in no room at all."""
        token = self.registered("Alice")
        laptop, phone = self.connect(), self.connect()
        for page in (laptop, phone):
            page.send({"type": "name", "nick": "Alice", "token": token})
        laptop.send({"type": "part", "room": "lobby"})
        laptop.messages()
        phone.messages()
        laptop.send({"type": "away", "message": "lunch"})
        self.assertEqual(phone.messages(), [{"type": "away", "nick": "Alice", "message": "lunch"}])
