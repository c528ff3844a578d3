"""
Making text safe to show in somebody else's terminal.

Both ends use this: the server on everything it relays, and the client on everything it prints, so
that neither a hostile member nor a hostile server can move a cursor, recolour a terminal, ring its
bell or reorder what is shown.
"""

from __future__ import annotations

__all__ = ["neutralize", "UNSAFE_CHARACTERS"]


def _unsafe() -> dict[int, str]:
    table: dict[int, str] = {}
    # C0 controls (tab excepted) and DEL, in caret notation as `cat -v` shows them.
    for code in range(0x20):
        if code != 0x09:
            table[code] = "^" + chr(code + 0x40)
    table[0x7F] = "^?"
    # C1 controls, bidirectional marks, overrides and isolates, line and paragraph separators.
    others = [
        *range(0x80, 0xA0),
        0x061C,
        0x200E,
        0x200F,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
        0x2028,
        0x2029,
    ]
    for code in others:
        table[code] = f"<U+{code:04X}>"
    return table


UNSAFE_CHARACTERS: dict[int, str] = _unsafe()
"""Each unsafe code point and the visible text that stands for it."""


def neutralize(text: str) -> str:
    """
    Return C{text} with every unsafe character replaced by a visible stand-in.

    C0 controls other than tab, and DEL, become caret notation (ESC is C{^[}); C1 controls,
    bidirectional controls and the Unicode line and paragraph separators become C{<U+XXXX>}.
    Everything else, emoji and every script included, is left as it is.
    """
    return text.translate(UNSAFE_CHARACTERS)
