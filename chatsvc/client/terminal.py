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
import time
import zlib
from collections.abc import Callable, Sequence

from twisted.conch.insults.insults import TerminalProtocol

from chatsvc.client.editor import LineEditor, width
from chatsvc.text import neutralize

__all__ = ["ChatTerminal", "NICK_COLOURS", "styled"]

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
        self.width = 80
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def connectionMade(self) -> None:
        self._drawInput()

    def terminalSize(self, width: int, height: int) -> None:
        self.width = width
        self._drawInput()

    # What arrives

    def show(self, text: str) -> None:
        """
        Write a line above the input line: neutralized, styled, stamped with the time, and
        wrapped to the terminal's width; then the input line again, as it was.
        """
        safe = neutralize(text)
        stamp = time.strftime("%H:%M ", time.localtime(self._clock())) if self.timestamps else ""
        rows = _wrap(stamp + safe, self.width, len(stamp))
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

    def password(self, secret: bool) -> None:
        """The next line is a password (or no longer): typed without being shown."""
        self.editor.secret = secret
        self._drawInput()

    def _drawInput(self) -> None:
        terminal = self.terminal
        if terminal is None:
            return
        prompt = "Password: " if self.editor.secret else self.prompt
        promptWidth = sum(width(c) for c in prompt)
        text, column = self.editor.view(max(2, self.width - promptWidth - 1))
        terminal.write(b"\r")
        terminal.eraseLine()
        terminal.write((prompt + text).encode("utf-8") + b"\r")
        if promptWidth + column:
            terminal.cursorForward(promptWidth + column)

    def unhandledControlSequence(self, seq: bytes) -> None:
        """Keys this client does not use (function keys, a paste's brackets) do nothing."""


def _wrap(text: str, columns: int, indent: int) -> list[str]:
    # Rows of at most columns columns; those after the first start with indent spaces, so
    # that a row starting in the first column is always the start of a line.
    columns = max(indent + 2, columns)
    rows: list[str] = []
    row, used = "", 0
    for character in text:
        cost = width(character)
        if used + cost > columns:
            rows.append(row)
            row, used = " " * indent, indent
        row += character
        used += cost
    rows.append(row)
    return rows
