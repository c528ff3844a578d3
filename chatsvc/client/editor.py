"""
The terminal client's input line, as a model: the text being typed (a C{str}, so that every
script edits as one), where the cursor is, what Emacs-style keys do to them, the lines typed
before (Up and Down), completion of the word before the cursor (Tab), and what part of a long
line shows in a terminal of a given width (L{LineEditor.view}).

Nothing here reads keys or writes to a terminal: the client's terminal protocol turns the keys
that conch's C{insults} parses into these calls, and draws L{LineEditor.view}.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from chatsvc.client.layout import displayWidth

__all__ = ["HISTORY_KEPT", "LineEditor"]

HISTORY_KEPT = 500
"""How many lines typed are kept for Up to recall, for the session."""

_PASSWORD_COMMAND = re.compile(r"^(/(?:register|password)\s)(.*)$", re.IGNORECASE | re.DOTALL)
"""The commands whose arguments are passwords: shown masked, and never kept for Up."""

MASK = "*"


class LineEditor:
    """The line being typed; see the module's description."""

    def __init__(
        self,
        complete: Callable[[str, bool], Sequence[str]] | None = None,
        historyKept: int = HISTORY_KEPT,
    ) -> None:
        """
        @param complete: what the word before the cursor may be completed to, given that word
            and whether it starts the line (where commands are): candidates, in the order to
            offer them.
        """
        self.text = ""
        self.cursor = 0
        """Where the cursor is: an index into L{text}."""
        self.secret = False
        """Whether the line is a password: shown as nothing, never kept in the history."""
        self._complete = complete
        self._historyKept = historyKept
        self.history: list[str] = []
        self._recalled: int | None = None  # an index into history, while recalling
        self._draft = ""  # what was being typed before Up
        # While Tab cycles through candidates: where the word starts, the candidates, and
        # which one is shown.
        self._cycle: tuple[int, list[str], int] | None = None

    # Typing

    def insert(self, typed: str) -> None:
        """Characters typed (or pasted) at the cursor; control characters are left out."""
        kept = "".join(c for c in typed if c.isprintable())
        if kept:
            self.text = self.text[: self.cursor] + kept + self.text[self.cursor :]
            self.cursor += len(kept)
        self._cycle = None

    def backspace(self) -> None:
        """Delete the character before the cursor (with the marks combined with it)."""
        start = self._previousCluster(self.cursor)
        self.text = self.text[:start] + self.text[self.cursor :]
        self.cursor = start
        self._cycle = None

    def delete(self) -> None:
        """Delete the character under the cursor (Delete, or Ctrl-D on a line not empty)."""
        end = self._nextCluster(self.cursor)
        self.text = self.text[: self.cursor] + self.text[end:]
        self._cycle = None

    def left(self) -> None:
        self.cursor, self._cycle = self._previousCluster(self.cursor), None

    def right(self) -> None:
        self.cursor, self._cycle = self._nextCluster(self.cursor), None

    def home(self) -> None:
        """Home, or Ctrl-A."""
        self.cursor, self._cycle = 0, None

    def end(self) -> None:
        """End, or Ctrl-E."""
        self.cursor, self._cycle = len(self.text), None

    def killToEnd(self) -> None:
        """Ctrl-K: delete from the cursor to the end of the line."""
        self.text = self.text[: self.cursor]
        self._cycle = None

    def killToStart(self) -> None:
        """Ctrl-U: delete from the start of the line to the cursor."""
        self.text = self.text[self.cursor :]
        self.cursor = 0
        self._cycle = None

    def killWord(self) -> None:
        """Ctrl-W: delete the word before the cursor (and the spaces after it)."""
        start = self.cursor
        while start > 0 and self.text[start - 1] == " ":
            start -= 1
        while start > 0 and self.text[start - 1] != " ":
            start -= 1
        self.text = self.text[:start] + self.text[self.cursor :]
        self.cursor = start
        self._cycle = None

    def submit(self) -> str:
        """Enter: the line, kept for Up to recall (unless a password, or empty), and a new one."""
        line = self.text
        kept = not self.secret and not _PASSWORD_COMMAND.match(line)
        if line.strip() and kept and (not self.history or self.history[-1] != line):
            self.history.append(line)
            del self.history[: -self._historyKept]
        self.text, self.cursor = "", 0
        self._recalled, self._draft, self._cycle = None, "", None
        return line

    # Recalling

    def up(self) -> None:
        """The line typed before the one shown (the line being typed is kept for Down)."""
        if self.secret or not self.history:
            return
        if self._recalled is None:
            self._draft, self._recalled = self.text, len(self.history)
        if self._recalled > 0:
            self._recalled -= 1
            self._show(self.history[self._recalled])

    def down(self) -> None:
        """The line typed after the one shown, and at the end, what was being typed."""
        if self._recalled is None:
            return
        self._recalled += 1
        if self._recalled >= len(self.history):
            self._recalled = None
            self._show(self._draft)
        else:
            self._show(self.history[self._recalled])

    def _show(self, text: str) -> None:
        self.text, self.cursor, self._cycle = text, len(text), None

    # Completing

    def complete(self) -> None:
        """
        Tab: complete the word before the cursor. One candidate: it, and a space after it
        (unless one follows already).
        Several: their longest common beginning if it is longer than the word; else, each
        Tab after the first puts the next candidate in its place, in turn.
        """
        if self._complete is None or self.secret:
            return
        if self._cycle is not None:
            start, candidates, index = self._cycle
            index = (index + 1) % len(candidates)
            self._replace(start, candidates[index])
            self._cycle = (start, candidates, index)
            return
        start = self.cursor
        while start > 0 and self.text[start - 1] != " ":
            start -= 1
        word = self.text[start : self.cursor]
        if not word:
            return
        candidates = list(self._complete(word, start == 0))
        if not candidates:
            return
        if len(candidates) == 1:
            spaced = self.text[self.cursor : self.cursor + 1] == " "
            self._replace(start, candidates[0] + ("" if spaced else " "))
            return
        common = _commonPrefix(candidates)
        if len(common) > len(word):
            self._replace(start, common)
            return
        self._replace(start, candidates[0])
        self._cycle = (start, candidates, 0)

    def _replace(self, start: int, word: str) -> None:
        # The word from start to the cursor becomes word, the cursor after it.
        self.text = self.text[:start] + word + self.text[self.cursor :]
        self.cursor = start + len(word)

    # Showing

    def view(self, columns: int) -> tuple[str, int]:
        """
        What of the line shows in C{columns} columns, and the column of the cursor in it: the
        whole line if it fits, else the part around the cursor (a long line scrolls
        sideways). A password shows as nothing; the arguments of C{/register} and
        C{/password} as one L{MASK} a character.
        """
        if self.secret:
            return "", 0
        columns = max(2, columns)
        text = self.text
        command = _PASSWORD_COMMAND.match(text)
        if command is not None:
            # The command shows; what follows it (the passwords) as one mask a character.
            text = command.group(1) + MASK * len(command.group(2))
        widths = [displayWidth(c) for c in text]
        # Start at the beginning; scroll so that the cursor (and a column for it) fits.
        start = 0
        used = sum(widths[: self.cursor]) + 1
        while used > columns and start < self.cursor:
            used -= widths[start]
            start += 1
        shown: list[str] = []
        total = 0
        for index in range(start, len(text)):
            if total + widths[index] > columns:
                break
            shown.append(text[index])
            total += widths[index]
        return "".join(shown), sum(widths[start : self.cursor])

    # Characters, as people see them

    def _previousCluster(self, index: int) -> int:
        # The start of the character before index, marks combined with it included.
        if index <= 0:
            return 0
        index -= 1
        while index > 0 and displayWidth(self.text[index]) == 0:
            index -= 1
        return index

    def _nextCluster(self, index: int) -> int:
        # The end of the character at index, marks combined with it included.
        if index >= len(self.text):
            return len(self.text)
        index += 1
        while index < len(self.text) and displayWidth(self.text[index]) == 0:
            index += 1
        return index


def _commonPrefix(words: Sequence[str]) -> str:
    first, last = min(words), max(words)
    for index, character in enumerate(first):
        if index >= len(last) or last[index] != character:
            return first[:index]
    return first
