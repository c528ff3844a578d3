"""
IRC messages on the wire: reading one line into its tags, source, command and parameters, and
writing one back, as the modern client protocol describes them (RFC 1459 and 2812 framing, with
IRCv3's message tags).

    @time=2026-12-01T18:00:00.000Z;msgid=1234 :Alice!chat@chatsvc PRIVMSG #games :hello there

Everything here works on C{str}: the door decodes a line (UTF-8 only) before parsing it and
encodes what it formats.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Iterator, Mapping, Sequence

from attrs import frozen

__all__ = [
    "BadMessage",
    "MAX_LINE_BYTES",
    "Message",
    "escapeTag",
    "formatMessage",
    "isupportTokens",
    "parse",
    "serverTime",
    "splitText",
    "unescapeTag",
]

MAX_LINE_BYTES = 512
"""The longest message, its C{\\r\\n} included, tags excluded (RFC 1459)."""

MAX_TAGS_BYTES = 8191
"""The longest tag section a client may send (IRCv3 message-tags), its C{@} and space included."""

_ESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class BadMessage(Exception):
    """A line that is no IRC message: empty, or a tag section or source with nothing after it."""


@frozen
class Message:
    """One IRC message: its C{command} (upper case, or three digits) and C{params}."""

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: Mapping[str, str] = {}


def escapeTag(value: str) -> str:
    """A tag's value as it is written on the wire (IRCv3 message-tags' escaping)."""
    if not any(character in value for character in _ESCAPES):
        return value
    return "".join(_ESCAPES.get(character, character) for character in value)


def unescapeTag(value: str) -> str:
    """A tag's value as it was meant, from its escaped form (an invalid escape is dropped)."""
    if "\\" not in value:
        return value
    out = []
    characters = iter(value)
    for character in characters:
        if character != "\\":
            out.append(character)
            continue
        following = next(characters, "")
        out.append(_UNESCAPES.get(following, following))
    return "".join(out)


def parse(line: str) -> Message:
    """
    Read one line (without its line ending) as a message.

    @raise BadMessage: if there is no command in it.
    """
    if line.startswith("PRIVMSG ") and " :" in line:
        # What clients send most, without tags or a source: read at once.
        target, _, text = line[8:].partition(" :")
        if target and " " not in target:
            return Message("PRIVMSG", (target, text))
    tags: dict[str, str] = {}
    rest = line.lstrip(" ")
    if rest.startswith("@"):
        section, _, rest = rest[1:].partition(" ")
        for item in section.split(";"):
            if not item:
                continue
            key, _, value = item.partition("=")
            tags[key] = unescapeTag(value)
        rest = rest.lstrip(" ")
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    rest, colon, trailing = rest.partition(" :")
    if rest.startswith(":"):
        # ":..." with nothing before it: the whole rest is the trailing parameter.
        rest, colon, trailing = "", ":", rest[1:]
    # Parameters are separated by spaces only: a tab or a form feed is part of one.
    words = [word for word in rest.split(" ") if word]
    if not words:
        raise BadMessage("no command")
    command = words[0].upper()
    params = words[1:]
    if colon:
        params.append(trailing)
    return Message(command, tuple(params), source, tags)


def formatMessage(
    command: str,
    *params: str,
    source: str | None = None,
    tags: Mapping[str, str] | None = None,
    trailing: bool = False,
) -> str:
    """
    One message as a line, without its line ending. The last parameter is written as a
    trailing one (after C{:}) when it must be (empty, with a space, or starting with C{:}),
    or when it is a message's text (C{trailing}); the others never hold a space.
    """
    parts = []
    if tags:
        parts.append("@" + ";".join(key if value == "" else f"{key}={escapeTag(value)}" for key, value in tags.items()))
    if source is not None:
        parts.append(":" + source)
    parts.append(command)
    if params:
        *middle, last = params
        parts.extend(middle)
        parts.append(":" + last if (trailing or not last or " " in last or last.startswith(":")) else last)
    return " ".join(parts)


def serverTime(seconds: float) -> str:
    """A time as the C{server-time} tag gives it: UTC, to the millisecond."""
    whole = int(seconds)
    milliseconds = int(round((seconds - whole) * 1000))
    if milliseconds == 1000:
        whole, milliseconds = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{milliseconds:03d}Z"


def splitText(text: str, room: int) -> Iterator[str]:
    """
    Cut C{text} into pieces of at most C{room} bytes of UTF-8 each: never inside a code point,
    and not inside a grapheme (a letter with its marks, an emoji with its modifiers) unless
    one grapheme is longer than C{room}; at a space where one falls in the last fifth of a
    piece.
    """
    room = max(room, 4)
    encoded = text.encode("utf-8")
    if len(encoded) <= room:
        yield text
        return
    start = 0
    while start < len(text):
        end, used = start, 0
        lastBreak = None
        while end < len(text):
            cluster = _clusterEnd(text, end)
            size = len(text[end:cluster].encode("utf-8"))
            if used + size > room:
                break
            end, used = cluster, used + size
            if text[end - 1] == " ":
                lastBreak = end
        if end == start:
            # One grapheme longer than a piece: cut it between code points.
            while end < len(text) and used + len(text[end].encode("utf-8")) <= room:
                used += len(text[end].encode("utf-8"))
                end += 1
        elif end < len(text) and lastBreak is not None and lastBreak - start >= (end - start) * 4 // 5:
            end = lastBreak
        yield text[start:end]
        start = end


def _clusterEnd(text: str, index: int) -> int:
    # The end of the grapheme starting at index, near enough: a code point, then the combining
    # marks, variation selectors, zero-width joiners (and what they join) and emoji modifiers
    # after it.
    end = index + 1
    while end < len(text):
        character = text[end]
        if character == "\u200d" and end + 1 < len(text):
            end += 2
        elif (
            unicodedata.category(character) in ("Mn", "Me", "Mc")
            or "\ufe00" <= character <= "\ufe0f"
            or "\U0001f3fb" <= character <= "\U0001f3ff"
            or "\U000e0020" <= character <= "\U000e007f"
        ):
            end += 1
        else:
            break
    return end


def isupportTokens(tokens: Sequence[str], perLine: int = 13) -> Iterator[list[str]]:
    """C{RPL_ISUPPORT}'s tokens, at most C{perLine} to a line."""
    for start in range(0, len(tokens), perLine):
        yield list(tokens[start : start + perLine])
