"""
Accounts in the chat page end to end: registering from the page's form, a reload that stays
logged in (by the server's token, never the password), logging in with the password from
another browser, a line-door guest refused the name, and logging out; real chromium, real
server, real SQLite file and argon2id hashes.
"""

from __future__ import annotations

from tests.processes import Client
from tests.test_accounts_e2e import Netcat
from tests.web.browser import screenshot
from tests.web.test_page_e2e import WAIT_MS, PageTestCase, login, say

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the browser helpers skip (or fail, under CI=true) saying why
    pass


def register(page: Page, password: str) -> None:
    """Register the page's nickname from the form in the sidebar."""
    page.click("#account-toggle")
    page.fill("#account-new", password)
    page.click("#account-submit")
    expect(page.locator("#account-badge")).to_be_visible(timeout=WAIT_MS)


class AccountPageTests(PageTestCase):
    def owner(self, room: str) -> Page:
        """A page logged in as Alice, registered, in C{room}, which it created and owns."""
        page = self.page()
        login(page, self.url, "Alice")
        register(page, "sesame-open")
        say(page, f"/join {room}")
        expect(page.locator("#member-list")).to_contain_text("owner", timeout=WAIT_MS)
        return page

    def test_registerReloadAndLogIn(self) -> None:
        alice = self.page()
        login(alice, self.url, "Alice")
        register(alice, "sesame-open")
        expect(alice.locator("#timeline")).to_contain_text("Alice is registered", timeout=WAIT_MS)
        stored = alice.evaluate("localStorage.getItem('chatsvc.login')")
        self.assertNotIn("sesame", stored)
        screenshot(alice, "registered")

        # A reload: straight back in by the token, with no password asked.
        alice.reload()
        expect(alice.locator("#input")).to_be_visible(timeout=WAIT_MS)
        expect(alice.locator("#account-badge")).to_be_visible(timeout=WAIT_MS)
        self.assertTrue(alice.locator("#login-password-row").is_hidden())


        # Another browser: asked for the password; a wrong one is refused, the right one works.
        alice.click("#quit-button")
        expect(alice.locator("#banner")).to_contain_text("You left the chat", timeout=WAIT_MS)

        # A guest on the line door cannot have the name.
        guest = Client(self.directory, "alice", self.port)
        self.addCleanup(guest.stop)
        guest.stderr.expect("alice is registered: give its password", timeout=10)
        other = self.page()
        other.goto(self.url)
        other.fill("#login-nick", "alice")
        other.click("#login-submit")
        expect(other.locator("#login-password")).to_be_visible(timeout=WAIT_MS)
        screenshot(other, "password-asked")
        other.fill("#login-password", "open-sesame")
        other.click("#login-submit")
        expect(other.locator("#login-error")).to_contain_text("wrong password for Alice", timeout=WAIT_MS)
        other.fill("#login-password", "sesame-open")
        other.click("#login-submit")
        expect(other.locator("#input")).to_be_visible(timeout=WAIT_MS)
        say(other, "logged in from elsewhere")
        expect(other.locator("#timeline")).to_contain_text("logged in from elsewhere", timeout=WAIT_MS)

        # Logging out: the token is forgotten and revoked.
        token = other.evaluate("JSON.parse(localStorage.getItem('chatsvc.login')).token")
        other.click("#logout-button")
        expect(other.locator("#banner")).to_contain_text("logged out", timeout=WAIT_MS)
        self.assertIsNone(other.evaluate("localStorage.getItem('chatsvc.login')"))
        other.evaluate(f"localStorage.setItem('chatsvc.login', JSON.stringify({{nick: 'Alice', token: '{token}'}}))")
        other.reload()  # tries the revoked token by itself
        expect(other.locator("#login-password")).to_be_visible(timeout=WAIT_MS)
        expect(other.locator("#login-error")).to_contain_text("log in", timeout=WAIT_MS)

    def test_everywhereAtOnce(self) -> None:
        """
        One account in Chromium, on netcat and in the bundled client at once: the same
        nickname and rooms, and what each sends the others see.
        """
        page = self.owner("games")

        netcat = Netcat(self.port)
        self.addCleanup(netcat.close)
        self.assertEqual(netcat.line(), "GET_NAME")
        netcat.send("alice")
        self.assertEqual(netcat.line(), "GET_PASSWORD")
        netcat.send("sesame-open")
        self.assertEqual(netcat.line(), "Alice connected to server!")
        netcat.expect(r"^\*\*\* You are logged in from 2 connections; your rooms: lobby, games$")

        secret = self.directory / "password"
        secret.write_text("sesame-open\n", encoding="utf-8")
        terminal = Client(self.directory, "Alice", self.port, passwordFile=str(secret))
        self.addCleanup(terminal.stop)
        terminal.stdout.expect(r"You are logged in from 3 connections; your rooms: lobby, games")

        netcat.send("/join games")
        netcat.expect(r"^\*\*\* Now talking in games$")
        netcat.send("from netcat")
        expect(page.locator("#timeline")).to_contain_text("from netcat", timeout=WAIT_MS)
        terminal.stdout.expect(r"^\[games\] Alice: from netcat$")
        say(page, "from the page")
        netcat.expect("^Alice: from the page$")
        terminal.stdout.expect(r"^\[games\] Alice: from the page$")
        terminal.send("/who games\n")
        terminal.stdout.expect(r"Members \(1\): @Alice")
        screenshot(page, "everywhere")

    def test_moderatingFromThePage(self) -> None:
        """The owner of a room, in the page, sees its badge and kicks a netcat guest."""
        page = self.owner("games")
        guest = Netcat(self.port)
        self.addCleanup(guest.close)
        guest.line()
        guest.send("Bob")
        guest.expect("^Bob connected")
        guest.send("/join games")
        expect(page.locator("#member-list")).to_contain_text("Bob", timeout=WAIT_MS)
        say(page, "/kick Bob spam")
        guest.expect(r"^\*\*\* Bob was kicked by Alice \(spam\)$")
        guest.expect(r"^\*\*\* You are out of games; now talking in lobby$")
        expect(page.locator("#timeline")).to_contain_text("Bob was kicked by Alice (spam)", timeout=WAIT_MS)
        expect(page.locator("#member-list")).not_to_contain_text("Bob", timeout=WAIT_MS)
        guest.send("/join games")
        guest.expect(r"^\*\*\* You joined games")
        guest.send("buy cheap watches")
        expect(page.locator("#timeline")).to_contain_text("buy cheap watches", timeout=WAIT_MS)
        page.locator("#timeline .line", has_text="buy cheap watches").hover()
        page.locator("#timeline [data-remove]").last.click()
        expect(page.locator("#timeline")).not_to_contain_text("buy cheap watches", timeout=WAIT_MS)
        guest.expect(r"^\*\*\* Alice removed a message by Bob$")
        say(page, "/set moderated on")
        expect(page.locator("#timeline")).to_contain_text("Alice turned moderated on", timeout=WAIT_MS)
        screenshot(page, "moderating")
        page.reload()
        expect(page.locator("#input")).to_be_visible(timeout=WAIT_MS)
        say(page, "/join games")
        expect(page.locator("#conv-title")).to_have_text("#games", timeout=WAIT_MS)
        expect(page.locator("#timeline")).to_contain_text("Beginning of #games", timeout=WAIT_MS)
        self.assertNotIn("buy cheap watches", page.locator("#timeline").inner_text())
