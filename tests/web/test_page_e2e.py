"""
The chat page end to end: a real C{twistd chatroom} process, Debian's chromium driven by
Playwright, and real line-door clients, all on loopback. Skipped (failed, under C{CI=true}) when
chromium cannot start; see L{tests.web.browser}.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.storage.sqlite import migrate, rekeyRooms
from tests.processes import Client, Server
from tests.web.browser import launchBrowser, newPage, screenshot

try:
    from playwright.sync_api import Dialog, Page, expect
except ImportError:  # the browser helpers skip (or fail, under CI=true) saying why
    pass

WAIT_MS = 10_000
"""How long a page is given to show what a test waits for."""


def login(page: Page, url: str, nick: str) -> None:
    """Open the page at C{url} and pick C{nick}; wait until the chat shows."""
    page.goto(url)
    page.fill("#login-nick", nick)
    page.click("#login-submit")
    expect(page.locator("#input")).to_be_visible(timeout=WAIT_MS)


def say(page: Page, text: str) -> None:
    """Type C{text} into the input and send it."""
    page.fill("#input", text)
    page.press("#input", "Enter")


def timeline(page: Page) -> str:
    return page.locator("#timeline").inner_text()


def seeded(path: Path, room: str, count: int) -> None:
    """A history database holding C{count} messages of C{room}, m1 the oldest, one a minute."""
    start = time.time() - count * 60
    connection = sqlite3.connect(str(path), isolation_level=None)
    try:
        migrate(connection)
        rekeyRooms(connection)
        connection.executemany(
            "INSERT INTO messages (id, room_key, room, time, nick, text, action) "
            "VALUES (?, ?, ?, ?, ?, ?, 0)",
            [
                (int((start + n * 60) * 1000) << 10, room, room, start + n * 60, "Old", f"m{n}")
                for n in range(1, count + 1)
            ],
        )
    finally:
        connection.close()


class PageTestCase(SynchronousTestCase):
    """A server with both doors on free ports, and a browser."""

    serverOptions: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.prepare()
        self.browser = launchBrowser(self)
        self.start()

    def prepare(self) -> None:
        """Before the server starts: what its directory should hold."""

    def start(self, *options: str) -> None:
        self.server = Server(self.directory, "--db", "chat.db", *self.serverOptions, *options)
        self.addCleanup(self.server.stop)
        self.port = self.server.waitListening()
        self.webPort = self.server.waitWebListening()
        self.url = f"http://127.0.0.1:{self.webPort}/"

    def page(self, width: int = 1280, height: int = 800) -> Page:
        page = newPage(self, self.browser)
        page.set_viewport_size({"width": width, "height": height})
        return page


class ChatTests(PageTestCase):
    """Pages and a terminal talking in two rooms."""

    def threeMembers(self) -> tuple[Page, Page, Client]:
        """Alice and Bob on pages, Carol on the line door, all in the lobby."""
        alice, bob = self.page(), self.page()
        login(alice, self.url, "Alice")
        login(bob, self.url, "Bob")
        carol = Client(self.directory, "Carol", self.port)
        self.addCleanup(carol.stop)
        carol.stdout.expect("Carol connected to server!")
        return alice, bob, carol

    def test_twoPagesAndALineClient(self) -> None:
        """Two pages and a line-door client chat with each other, in the lobby and in games."""
        alice, bob, carol = self.threeMembers()
        say(alice, "hello everyone")
        expect(bob.locator("#timeline")).to_contain_text("hello everyone", timeout=WAIT_MS)
        carol.stdout.expect("Alice: hello everyone")
        carol.send("hi from the terminal\n")
        expect(alice.locator("#timeline")).to_contain_text("hi from the terminal", timeout=WAIT_MS)
        say(alice, "/join games")
        say(bob, "/join games")
        for page in (alice, bob):
            expect(page.locator("#conv-title")).to_have_text("#games", timeout=WAIT_MS)
        expect(alice.locator("#timeline")).to_contain_text("Bob", timeout=WAIT_MS)
        carol.send("/join games\n")
        carol.stdout.expect("You joined games")
        say(bob, "game on")
        carol.stdout.expect(r"Bob: game on")
        expect(alice.locator("#timeline")).to_contain_text("game on", timeout=WAIT_MS)
        carol.send("gg\n")
        expect(bob.locator("#timeline")).to_contain_text("gg", timeout=WAIT_MS)
        screenshot(alice, "two-rooms")

    def test_privateMessages(self) -> None:
        """A private message reaches its page once, and the terminal's reaches the page."""
        alice, bob, carol = self.threeMembers()
        say(alice, "/msg Bob just between us")
        expect(bob.locator("#dm-list")).to_contain_text("Alice", timeout=WAIT_MS)
        carol.send("/msg Bob from the terminal\n")
        expect(bob.locator("#dm-list")).to_contain_text("Carol", timeout=WAIT_MS)
        bob.locator("#dm-list").get_by_text("Alice").click()
        expect(bob.locator("#timeline")).to_contain_text("just between us", timeout=WAIT_MS)
        self.assertEqual(timeline(bob).count("just between us"), 1)

    def test_away(self) -> None:
        """
        A page types /away lunch: the other page shows that member away in its member list
        (greyed, marked in words, the message in the title) and in /whois, and so does the
        terminal; /away alone brings it back everywhere.
        """
        alice, bob, carol = self.threeMembers()
        member = bob.locator("#member-list button.member[data-nick='Alice']")
        expect(member).to_be_visible(timeout=WAIT_MS)
        expect(member).not_to_have_class(re.compile(r"\baway\b"))
        say(alice, "/away lunch")
        expect(alice.locator("#timeline")).to_contain_text("You are marked as away: lunch", timeout=WAIT_MS)
        expect(member).to_have_class(re.compile(r"\baway\b"), timeout=WAIT_MS)
        expect(member.locator(".away-badge")).to_have_text("away")
        expect(member).to_have_attribute("title", re.compile(r"^Alice is away: lunch"))
        # Alice's own page shows her away too.
        own = alice.locator("#member-list button.member[data-nick='Alice']")
        expect(own).to_have_class(re.compile(r"\baway\b"), timeout=WAIT_MS)
        say(bob, "/whois Alice")
        expect(bob.locator("#timeline")).to_contain_text("away: lunch", timeout=WAIT_MS)
        say(bob, "/who")
        expect(bob.locator("#timeline")).to_contain_text("Alice (away), Bob, Carol", timeout=WAIT_MS)
        carol.send("/who\n")
        carol.stdout.expect(r"Members \(3\): Alice \(away\), Bob, Carol")
        screenshot(bob, "away-member-list")
        # Greyed: the name is drawn in the muted colour, not the nickname's own.
        colours = bob.evaluate(
            """() => [...document.querySelectorAll('#member-list button.member')]
                 .map((b) => [b.dataset.nick, getComputedStyle(b).color])"""
        )
        shown = dict(colours)
        self.assertNotEqual(shown["Alice"], shown["Carol"])
        carol.send("/away in a meeting\n")
        carol.stdout.expect(r"You are marked as away: in a meeting")
        carolOnBob = bob.locator("#member-list button.member[data-nick='Carol']")
        expect(carolOnBob).to_have_attribute("title", re.compile(r"^Carol is away: in a meeting"), timeout=WAIT_MS)
        say(alice, "/away")
        expect(alice.locator("#timeline")).to_contain_text("You are no longer marked as away", timeout=WAIT_MS)
        expect(member).not_to_have_class(re.compile(r"\baway\b"), timeout=WAIT_MS)
        self.assertEqual(member.locator(".away-badge").count(), 0)

    def test_inertPayloads(self) -> None:
        """Markup and scripts arrive as text; a bidi override is made visible, never obeyed."""
        alice, bob = self.page(), self.page()
        dialogs: list[str] = []

        def dialogOpened(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        bob.on("dialog", dialogOpened)
        login(alice, self.url, "Alice")
        login(bob, self.url, "Bob")
        payload = '<img src=x onerror="alert(1)"><script>window.pwned=1</script><b>bold</b>'
        say(alice, payload)
        say(alice, "left \u202eright")
        expect(bob.locator("#timeline")).to_contain_text("<b>bold</b>", timeout=WAIT_MS)
        expect(bob.locator("#timeline")).to_contain_text("left", timeout=WAIT_MS)
        self.assertEqual(bob.locator("#timeline img").count(), 0)
        self.assertEqual(bob.locator("#timeline b").count(), 0)
        self.assertIsNone(bob.evaluate("window.pwned"))
        self.assertNotIn("\u202e", timeline(bob))
        self.assertEqual(dialogs, [])


class HistoryTests(PageTestCase):
    """Scrolling back through a room's stored history."""

    serverOptions = ("--history-max", "20", "--history-lines", "20")

    def prepare(self) -> None:
        seeded(self.directory / "chat.db", "lobby", 130)

    def test_scrollToTheBeginning(self) -> None:
        """Scrolling up loads older pages from the store until the room's first message."""
        alice = self.page()
        login(alice, self.url, "Alice")
        expect(alice.locator("#timeline")).to_contain_text("m130", timeout=WAIT_MS)
        for _ in range(20):
            if "Beginning of #lobby" in timeline(alice):
                break
            alice.evaluate("document.querySelector('#timeline').scrollTop = 0")
            older = alice.locator("#timeline [data-older]")
            if older.count():
                older.first.click()
            alice.wait_for_timeout(200)
        expect(alice.locator("#timeline")).to_contain_text("Beginning of #lobby", timeout=WAIT_MS)
        text = timeline(alice)
        for number in (1, 2, 50, 129, 130):
            self.assertIn(f"m{number}\n", text + "\n")
        self.assertEqual(text.count("m77\n"), 1)


class ReconnectionTests(PageTestCase):
    """The page through a restart of the server."""

    def test_survivesRestart(self) -> None:
        """
        The page comes back by itself with its nickname and rooms, fills the gap from history,
        and sends once what was typed while the server was down.
        """
        alice = self.page()
        login(alice, self.url, "Alice")
        say(alice, "/join games")
        # Typed before the room is shown, a line goes to the room shown then: the lobby.
        expect(alice.locator("#conv-title")).to_have_text("#games", timeout=WAIT_MS)
        say(alice, "before the restart")
        expect(alice.locator("#timeline")).to_contain_text("before the restart", timeout=WAIT_MS)
        self.assertEqual(self.server.terminate(), 0)
        expect(alice.locator("#banner")).to_be_visible(timeout=WAIT_MS)
        say(alice, "typed while down")
        self.start("--web-listen", f"tcp:{self.webPort}:interface=127.0.0.1")
        bob = Client(self.directory, "Bob", self.port)
        self.addCleanup(bob.stop)
        bob.stdout.expect("Bob connected to server!")
        bob.send("/join games\n")
        bob.send("said in the gap\n")
        bob.stdout.expect(r"Alice: typed while down", timeout=30)
        expect(alice.locator("#timeline")).to_contain_text("said in the gap", timeout=30_000)
        expect(alice.locator("#banner")).to_be_hidden(timeout=WAIT_MS)
        text = timeline(alice)
        self.assertEqual(text.count("typed while down"), 1)
        self.assertEqual(text.count("said in the gap"), 1)
        self.assertEqual(text.count("before the restart"), 1)
        bob.send("/who\n")
        bob.stdout.expect(r"Members \(2\): Alice, Bob")


class PhoneTests(PageTestCase):
    """A 360 px wide screen."""

    def test_usableOnAPhone(self) -> None:
        """At 360×740 the input fits the screen, the sidebar folds away, and chatting works."""
        phone = self.page(360, 740)
        login(phone, self.url, "Pocket")
        box = phone.locator("#input").bounding_box()
        assert box is not None
        self.assertGreaterEqual(box["x"], 0)
        self.assertLessEqual(box["x"] + box["width"], 360)
        sidebar = phone.locator("#sidebar").bounding_box()
        self.assertTrue(sidebar is None or sidebar["x"] + sidebar["width"] <= 0 or sidebar["x"] >= 360
                        or not phone.locator("#sidebar").is_visible())
        say(phone, "hello from a phone")
        expect(phone.locator("#timeline")).to_contain_text("hello from a phone", timeout=WAIT_MS)
        self.assertLessEqual(phone.evaluate("document.documentElement.scrollWidth"), 360)
        screenshot(phone, "phone")
