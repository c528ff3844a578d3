"""
End to end with a real IRC client: WeeChat (headless, tests/weechat.py) logs in with SASL to a
real C{twistd -n chatroom}, joins two channels, talks with a line-door member (netcat) and a
browser member (Chromium), is shown a room's history with its original times, and is kicked.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from tests.test_accounts_e2e import Netcat, member
from tests.weechat import WeeChat
from tests.web.test_page_e2e import WAIT_MS, PageTestCase, login, say, seeded

try:
    from playwright.sync_api import expect
except ImportError:  # the page tests skip (or fail under CI=true) with the reason
    pass

_SEEDED = 3


class WeeChatTests(PageTestCase):
    def prepare(self) -> None:
        # Three messages in games from an hour ago, stored as the server stores them.
        self.seededAt = time.time()
        seeded(self.directory / "chat.db", "games", _SEEDED)

    def netcat(self, nick: str, register: str | None = None) -> Netcat:
        return member(self, self.port, nick, register)

    def test_weechat(self) -> None:
        ircPort = self.server.waitIrcListening()
        # Alice's account, registered on the line door; Carol owns #dev (she made it).
        alice = self.netcat("Alice", register="sesame-open")
        alice.send("/quit")
        carol = self.netcat("Carol", register="carol-pass")
        carol.send("/join dev")
        carol.expect("You joined dev")
        bob = self.page()
        login(bob, self.url, "Bob")
        say(bob, "/join games")
        expect(bob.locator("#conv-title")).to_have_text("#games", timeout=WAIT_MS)

        weechat = WeeChat(self)
        weechat.addServer("chat", "127.0.0.1", ircPort, "alice", sasl=("Alice", "sesame-open"))
        weechat.connect("chat")
        weechat.waitFor("irc.server.chat", r"You are now logged in as Alice")
        weechat.command("/join #games,#dev", buffer="irc.server.chat")

        # The history of games, with the times it was said at (server-time).
        first = weechat.waitFor("irc.chat.#games", r"^Old\tm1$")
        said = datetime.fromtimestamp(self.seededAt - (_SEEDED - 1) * 60, timezone.utc)
        shown = first.time.replace(tzinfo=timezone.utc) if first.time.tzinfo is None else first.time
        self.assertLess(abs((shown - said.astimezone(shown.tzinfo)).total_seconds()), 90, first)
        weechat.waitFor("irc.chat.#games", r"^Old\tm3$")
        weechat.waitFor("irc.chat.#dev", r"Channel #dev: 2 nicks \(1 op")

        # The browser member and the line-door member, both ways.
        say(bob, "hello from the page")
        weechat.waitFor("irc.chat.#games", r"^Bob\thello from the page$")
        carol.send("hello from netcat")
        weechat.waitFor("irc.chat.#dev", r"^@?Carol\thello from netcat$")
        weechat.say("irc.chat.#games", "hello from weechat")
        expect(bob.locator("#timeline")).to_contain_text("hello from weechat", timeout=WAIT_MS)
        weechat.say("irc.chat.#dev", "and to dev")
        carol.expect(r"^\[dev\] Alice: and to dev$|^Alice: and to dev$")

        # Kicked from #dev by its owner.
        carol.send("/kick Alice enough")
        weechat.waitFor("irc.chat.#dev", r"kicked.*Alice.*Carol|Carol.*kicked.*Alice")
        carol.send("/who")
        carol.expect(r"^\*\*\* Members \(1\): @Carol$")
        weechat.waitFor("irc.chat.#dev", r"^<--\tCarol has kicked Alice \(enough\)$")
