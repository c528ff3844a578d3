"""
The terminal client's face on a terminal: the input line stays at the bottom, intact, while
the lines that arrive are written above it; keys edit it (L{LineEditor}); lines get a time
stamp and colours of the client's own.

L{ChatTerminal} is an C{insults} terminal protocol: conch's C{ServerProtocol} (on
C{StandardIO}) parses the keys from what the terminal sends, and is the terminal drawn on.
Everything the server sends is neutralized before it is drawn (no byte of it reaches the
terminal as a control), and colours come from the client alone.
"""

from __future__ import annotations

import codecs
import re
import time
import zlib
from collections.abc import Callable, Sequence

from twisted.conch.insults.insults import ServerProtocol, TerminalProtocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from chatsvc.client.editor import LineEditor
from chatsvc.client.layout import CONTINUATION, displayWidth, wrapLine
from chatsvc.line.wire import AWAY_MARK
from chatsvc.text import neutralize

__all__ = ["ChatTerminal", "LINE_COMMANDS", "NICK_COLOURS", "TerminalConsole", "styled"]

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"
_BOLD_REVERSE = "\x1b[1;7m"

NICK_COLOURS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
"""The SGR colours nicknames are given, one each, always the same for a nickname."""

_CTRL_A, _CTRL_C, _CTRL_D, _CTRL_E = b"\x01", b"\x03", b"\x04", b"\x05"
_CTRL_K, _CTRL_L, _CTRL_U, _CTRL_W = b"\x0b", b"\x0c", b"\x15", b"\x17"
_BACKSPACES = (b"\x7f", b"\x08")


def nickColour(nick: str) -> int:
    """A nickname's colour: the same on every run and every machine."""
    return NICK_COLOURS[zlib.crc32(nick.casefold().encode("utf-8")) % len(NICK_COLOURS)]


def styled(line: str, me: str | None, colour: bool) -> str:
    """
    A line from the server (neutralized already) with the client's colours: a nickname in
    its colour, the member's own nickname highlighted where it is mentioned, notices dimmed,
    errors in red. Without C{colour}, the line as it is.
    """
    if not colour:
        return line
    prefix = ""
    if line.startswith("[") and "] " in line:
        room, _, line = line.partition("] ")
        prefix = f"{_DIM}{room}]{_RESET} "
    if line.startswith("*** Error"):
        return f"{prefix}{_RED}{line}{_RESET}"
    if line.startswith("***"):
        return f"{prefix}{_DIM}{line}{_RESET}"
    nick, separator, text = line.partition(": ")
    if separator and nick and " " not in nick:
        return f"{prefix}\x1b[{nickColour(nick)}m{nick}{_RESET}: {_mentions(text, me)}"
    if line.startswith("* ") and " " in line[2:]:
        nick, _, action = line[2:].partition(" ")
        return f"{prefix}* \x1b[{nickColour(nick)}m{nick}{_RESET} {_mentions(action, me)}"
    return prefix + line


def _mentions(text: str, me: str | None) -> str:
    # The member's own nickname, wherever the text names it, highlighted.
    if not me:
        return text
    folded, key = text.casefold(), me.casefold()
    out, start = [], 0
    while (found := folded.find(key, start)) >= 0:
        out.append(text[start:found])
        out.append(f"{_BOLD_REVERSE}{text[found : found + len(me)]}{_RESET}")
        start = found + len(me)
    out.append(text[start:])
    return "".join(out)


class ChatTerminal(TerminalProtocol):
    """
    The input line at the bottom, the chat above it (see the module's description).

    @ivar lineTyped: called with each line the member enters (a C{str}).
    @ivar leave: called when the member asks to leave from the keyboard (Ctrl-C, or Ctrl-D on
        an empty line).
    """

    def __init__(
        self,
        lineTyped: Callable[[str], object],
        leave: Callable[[], object],
        complete: Callable[[str, bool], Sequence[str]] | None = None,
        colour: bool = True,
        timestamps: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lineTyped = lineTyped
        self.leave = leave
        self.colour = colour
        self.timestamps = timestamps
        self._clock = clock
        self.editor = LineEditor(complete)
        self.me: str | None = None
        """The member's nickname, highlighted where it is mentioned."""
        self.prompt = "> "
        self.secretPrompt = "Password: "
        self.width = 80
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        # The column the cursor was left at by the last drawing of the input line.
        self._drawnCursor = 0

    def connectionMade(self) -> None:
        self._drawInput()

    def terminalSize(self, width: int, height: int) -> None:
        """
        The terminal has a new width. A narrower terminal reflows the input line drawn for the
        old width onto several rows, the cursor on one of them: back up to the first, clear
        from there down, and draw the line again to fit.
        """
        self.width = width
        terminal = self.terminal
        if terminal is not None:
            above = self._drawnCursor // max(1, width)
            if above:
                terminal.cursorUp(above)
            terminal.write(b"\r")
            terminal.eraseToDisplayEnd()
        self._drawInput()

    # What arrives

    def show(self, text: str) -> None:
        """
        Write a line above the input line: neutralized, styled, stamped with the time, and
        wrapped to the terminal's width; then the input line again, as it was.
        """
        safe = neutralize(text)
        stamp = time.strftime("%H:%M ", time.localtime(self._clock())) if self.timestamps else ""
        rows = wrapLine(stamp + safe, self.width, " " * len(stamp) if stamp else CONTINUATION)
        terminal = self.terminal
        terminal.write(b"\r")
        terminal.eraseLine()
        for number, row in enumerate(rows):
            if number == 0 and stamp:
                shown = (_DIM + stamp + _RESET if self.colour else stamp) + styled(row[len(stamp) :], self.me, self.colour)
            else:
                shown = styled(row, self.me, self.colour) if number == 0 else row
            terminal.write(shown.encode("utf-8") + b"\r\n")
        self._drawInput()

    # What is typed

    def keystrokeReceived(self, keyID: object, modifier: object) -> None:
        terminal = self.terminal
        editor = self.editor
        handlers: dict[object, Callable[[], object]] = {
            terminal.LEFT_ARROW: editor.left,
            terminal.RIGHT_ARROW: editor.right,
            terminal.HOME: editor.home,
            terminal.END: editor.end,
            terminal.UP_ARROW: editor.up,
            terminal.DOWN_ARROW: editor.down,
            terminal.DELETE: editor.delete,
            _CTRL_A: editor.home,
            _CTRL_E: editor.end,
            _CTRL_K: editor.killToEnd,
            _CTRL_U: editor.killToStart,
            _CTRL_W: editor.killWord,
            b"\t": editor.complete,
            _CTRL_L: lambda: None,
        }
        handler = handlers.get(keyID)
        if handler is not None:
            handler()
        elif keyID in _BACKSPACES:
            editor.backspace()
        elif keyID in (b"\r", b"\n"):
            line = editor.submit()
            self._drawInput()
            self.lineTyped(line)
            return
        elif keyID == _CTRL_C or (keyID == _CTRL_D and not editor.text):
            self.leave()
            return
        elif keyID == _CTRL_D:
            editor.delete()
        elif isinstance(keyID, bytes) and modifier is None and keyID >= b" ":
            editor.insert(self._decoder.decode(keyID))
        self._drawInput()

    def password(self, secret: bool, prompt: str = "Password: ") -> None:
        """The next line is a password (or no longer): typed without being shown."""
        self.editor.secret = secret
        self.secretPrompt = prompt
        self._drawInput()

    def _drawInput(self) -> None:
        terminal = self.terminal
        if terminal is None:
            return
        prompt = self.secretPrompt if self.editor.secret else self.prompt
        promptWidth = sum(map(displayWidth, prompt))
        text, column = self.editor.view(max(2, self.width - promptWidth - 1))
        terminal.write(b"\r")
        terminal.eraseLine()
        terminal.write((prompt + text).encode("utf-8") + b"\r")
        self._drawnCursor = promptWidth + column
        if self._drawnCursor:
            terminal.cursorForward(self._drawnCursor)

    def redraw(self) -> None:
        """Draw the input line again (its prompt changed)."""
        self._drawInput()

    def unhandledControlSequence(self, seq: bytes) -> None:
        """Keys this client does not use (function keys, a paste's brackets) do nothing."""


LINE_COMMANDS = (
    "/join", "/part", "/rooms", "/who", "/topic", "/history", "/nick", "/me", "/msg", "/say",
    "/register", "/password", "/whois", "/away", "/help", "/quit",
    "/kick", "/ban", "/unban", "/bans", "/mute", "/unmute", "/mutes", "/op", "/deop",
    "/voice", "/devoice", "/invite", "/remove", "/set",
    "/announce", "/kill", "/suspend", "/unsuspend", "/lockdown", "/owner",
)
"""The line door's commands, for Tab (docs/protocol.md lists them)."""

_MEMBERS = re.compile(r"^\*\*\* (?:Members \(\d+\):|  ) ?(?P<names>.*)$")
_SPEAKER = re.compile(r"^(?:\[\S+\] )?(?:\* )?(?P<nick>[^\s:*\[][^\s:]*)(?::| joined!| left!| )")


@implementer(IHalfCloseableProtocol)
class TerminalConsole(ServerProtocol):
    """
    The terminal client on a terminal: conch's key parser in front of a L{ChatTerminal}, which
    it draws through. It learns what the server's lines say (the room talked in, for the
    prompt; the nicknames seen, for Tab) and hands the lines typed to C{sendLine}.

    @ivar closed: fires once the terminal is let go (the client's exit waits for it).
    """

    def __init__(
        self,
        nick: str,
        sendLine: Callable[[bytes], object],
        leave: Callable[[], object],
        columns: Callable[[], int],
        colour: bool = True,
        timestamps: bool = True,
    ) -> None:
        super().__init__()
        self._sendLine = sendLine
        self._leave = leave
        self._columns = columns
        self.closed: Deferred[None] = Deferred()
        self._secret: tuple[Deferred[str], Callable[[], None]] | None = None
        self.nicks: dict[str, str] = {}
        self.chat = ChatTerminal(self._typed, leave, self._complete, colour, timestamps)
        self.chat.me = nick
        self.chat.width = columns()
        self.protocolFactory = lambda: self.chat

    def inRoom(self, room: str | None) -> None:
        """The room talked in is C{room} (L{None}: none), shown in the prompt."""
        self.chat.prompt = "> " if room is None else f"[{room}] "
        self.chat.redraw()

    def offline(self) -> None:
        """Not connected: the prompt says so."""
        self.chat.prompt = "(offline) "
        self.chat.redraw()

    def named(self, nick: str) -> None:
        """The member's nickname is now C{nick}: its mentions are highlighted."""
        self.chat.me = nick

    def askSecret(self, prompt: str) -> Deferred[str]:
        """
        The next line typed, which is not shown as it is typed, nor kept for Up: a password.
        A line half typed is put aside meanwhile, and back once the password is entered or
        the L{Deferred} cancelled.
        """
        editor = self.chat.editor
        aside = (editor.text, editor.cursor)
        editor.text, editor.cursor = "", 0

        def done() -> None:
            self._secret = None
            editor.text, editor.cursor = aside
            self.chat.password(False)

        asked: Deferred[str] = Deferred(lambda asked: done())
        self._secret = (asked, done)
        self.chat.password(True, prompt)
        return asked

    def resized(self) -> None:
        """The terminal changed size (SIGWINCH): the input line is drawn again to fit."""
        self.chat.terminalSize(self._columns(), 0)

    def show(self, text: str) -> None:
        """A line from the server: learnt from, then drawn above the input line."""
        self._learn(text)
        self.chat.width = self._columns()
        self.chat.show(text)

    def finish(self) -> None:
        """Leaving: the input line goes, so that the shell's prompt comes on a clean line."""
        if self.transport is not None:
            self.transport.write(b"\r\x1b[2K")

    def _typed(self, line: str) -> None:
        if self._secret is not None:
            asked, done = self._secret
            done()
            asked.callback(line)
            return
        self._sendLine(line.encode("utf-8"))

    def _complete(self, word: str, atStart: bool) -> list[str]:
        if atStart and word.startswith("/"):
            return [command for command in LINE_COMMANDS if command.startswith(word.lower())]
        key = word.lstrip("@+").casefold()
        me = (self.chat.me or "").casefold()
        found = [nick for folded, nick in self.nicks.items() if folded.startswith(key) and folded != me]
        return sorted(found, key=str.casefold)

    def _learn(self, text: str) -> None:
        members = _MEMBERS.match(text)
        if members is not None:
            # Names with their roles' prefixes (@alice) and marked if away (Bob (away)); a
            # line of anything else that starts the same way (a /whois line, a room of /rooms
            # with its topic) has words that are no names, and teaches nothing.
            names = [
                name.strip().removesuffix(AWAY_MARK).lstrip("@+")
                for name in members.group("names").split(", ")
            ]
            if all(name and " " not in name for name in names):
                for name in names:
                    self.nicks[name.casefold()] = name
            return
        speaker = _SPEAKER.match(text)
        if speaker is not None and len(self.nicks) < 10_000:
            nick = speaker.group("nick")
            self.nicks[nick.casefold()] = nick

    # What the client asks of a console, beyond show and finish

    def readConnectionLost(self) -> None:
        """The terminal's input ended: leave."""
        self._leave()

    def writeConnectionLost(self) -> None:
        """Nobody reads the terminal any more: leave."""
        self._leave()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        if not self.closed.called:
            self.closed.callback(None)
