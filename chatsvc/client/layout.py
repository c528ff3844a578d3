"""
How lines are laid out on a terminal: how many columns a character takes, and lines wrapped by
the client itself, every row after the first indented, so that a row starting in the first
column is always the start of a line (text padded to the end of a row cannot pass for another
member's line).
"""

from __future__ import annotations

import unicodedata

__all__ = ["CONTINUATION", "displayWidth", "wrapLine"]

CONTINUATION = "    "
"""What each row of a wrapped line but the first starts with."""
_TAB_STOP = 8


def displayWidth(character: str) -> int:
    """
    How many columns a terminal gives C{character}: 2 for East Asian wide and full-width
    characters, 0 for combining marks, 1 for the rest.

    Where terminals differ, this counts the wider way, since counting too few columns would let a
    line wrap where the client did not wrap it: a character this version of Unicode does not know
    (a newer terminal may draw it as a wide emoji), a regional indicator (half a flag) and the
    emoji presentation selector U+FE0F (which makes some terminals draw the character before it
    two columns wide) count 2, 2 and 1.
    """
    if character == "\ufe0f":
        return 1
    category = unicodedata.category(character)
    if category in ("Mn", "Me"):
        return 0
    if (
        category == "Cn"
        or unicodedata.east_asian_width(character) in ("W", "F")
        or "\U0001f1e6" <= character <= "\U0001f1ff"
    ):
        return 2
    return 1


def wrapLine(line: str, columns: int, continuation: str = CONTINUATION) -> list[str]:
    """
    Split C{line}, already made safe by L{chatsvc.text.neutralize}, into rows no wider than C{columns} (at
    least room for C{continuation} and a wide character), as it is to be printed on a terminal
    that wide.

    Rows break after a space where a word fits on the next row, anywhere in a word that does not;
    spaces at a break are dropped, tabs expanded to spaces. Every row but the first starts with
    C{continuation} (spaces; L{CONTINUATION} by default) then a character that is not a space,
    so that no continuation row starts in the first column.
    """
    columns = max(columns, len(continuation) + 2)
    if len(line) <= columns and line.isascii() and "\t" not in line:
        return [line]
    rows: list[str] = []
    prefix = ""
    row: list[str] = []
    used = 0
    wordStart: int | None = None
    afterSpace = False
    skippingSpaces = False

    def breakRow(at: int) -> None:
        nonlocal prefix, row, used, wordStart, afterSpace
        rows.append(prefix + "".join(row[:at]).rstrip(" "))
        prefix = continuation
        row = row[at:]
        used = len(continuation) + sum(map(displayWidth, row))
        wordStart = None
        afterSpace = False

    for character in line:
        if character in " \t":
            if skippingSpaces:
                continue
            for _ in range(1 if character == " " else _TAB_STOP - used % _TAB_STOP):
                if used >= columns:
                    breakRow(len(row))
                    skippingSpaces = True
                    break
                row.append(" ")
                used += 1
                afterSpace = True
            continue
        width = displayWidth(character)
        if used + width > columns:
            at = len(row) if afterSpace else wordStart
            if at is None or len(continuation) + sum(map(displayWidth, row[at:])) + width > columns:
                at = len(row)
            breakRow(at)
        if afterSpace:
            wordStart = len(row)
            afterSpace = False
        row.append(character)
        used += width
        skippingSpaces = False
    if row or not rows:
        rows.append(prefix + "".join(row))
    return rows
