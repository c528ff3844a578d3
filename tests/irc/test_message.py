"""
Tests for L{chatsvc.irc.message}: reading and writing IRC messages, tags' escaping, the
server-time format, and text cut to fit IRC's 512 bytes; with properties checked on generated
input (hypothesis).
"""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.irc.message import BadMessage, escapeTag, formatMessage, parse, serverTime, splitText, unescapeTag

_WORD = st.text(
    st.characters(exclude_categories=["Cs", "Zs", "Cc"], exclude_characters=":@ \r\n\x00"),
    min_size=1,
    max_size=12,
)
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"), max_size=40)


class ParseTests(SynchronousTestCase):
    def test_parts(self) -> None:
        message = parse("@time=2026-12-01T18:00:00.000Z;msgid=12;+x :Alice!chat@chatsvc PRIVMSG #games :hello there")
        self.assertEqual(message.command, "PRIVMSG")
        self.assertEqual(message.params, ("#games", "hello there"))
        self.assertEqual(message.source, "Alice!chat@chatsvc")
        self.assertEqual(message.tags, {"time": "2026-12-01T18:00:00.000Z", "msgid": "12", "+x": ""})

    def test_forms(self) -> None:
        self.assertEqual(parse("nick alice").params, ("alice",))
        self.assertEqual(parse("NICK :alice").params, ("alice",))
        self.assertEqual(parse("user a 0 * :A B").params, ("a", "0", "*", "A B"))
        self.assertEqual(parse("PRIVMSG #a ::-)").params, ("#a", ":-)"))
        self.assertEqual(parse("PRIVMSG #a :").params, ("#a", ""))
        self.assertEqual(parse("  PING   x  ").params, ("x",))
        self.assertEqual(parse("001").command, "001")
        for bad in ("", "   ", "@a=b", ":source", "@a=b :source"):
            with self.assertRaises(BadMessage):
                parse(bad)

    def test_tagEscapes(self) -> None:
        value = "a;b c\\d\re\nf"
        self.assertEqual(escapeTag(value), "a\\:b\\sc\\\\d\\re\\nf")
        self.assertEqual(unescapeTag(escapeTag(value)), value)
        self.assertEqual(unescapeTag("x\\"), "x")  # a lone backslash at the end is dropped
        self.assertEqual(unescapeTag("\\q"), "q")

    @given(st.lists(_WORD, max_size=5), _TEXT, st.dictionaries(_WORD.filter(lambda k: "=" not in k and ";" not in k), _TEXT, max_size=3))
    @settings(max_examples=300, deadline=None)
    def test_roundTrip(self, middle: list[str], last: str, tags: dict[str, str]) -> None:
        """What is written reads back as it was: every parameter and tag."""
        line = formatMessage("PRIVMSG", *middle, last, source="a!b@c", tags=tags)
        message = parse(line)
        self.assertEqual(message.params, (*middle, last))
        self.assertEqual(dict(message.tags), tags)
        self.assertEqual(message.source, "a!b@c")

    def test_serverTime(self) -> None:
        self.assertEqual(serverTime(0), "1970-01-01T00:00:00.000Z")
        self.assertEqual(serverTime(1.9996), "1970-01-01T00:00:02.000Z")
        self.assertEqual(serverTime(1800000000.123), "2027-01-15T08:00:00.123Z")


class SplitTests(SynchronousTestCase):
    def test_short(self) -> None:
        self.assertEqual(list(splitText("hello", 100)), ["hello"])

    def test_atSpaces(self) -> None:
        pieces = list(splitText("the quick brown fox jumps over the lazy dog", 20))
        self.assertEqual("".join(pieces), "the quick brown fox jumps over the lazy dog")
        self.assertTrue(all(len(p.encode()) <= 20 for p in pieces))
        self.assertTrue(pieces[0].endswith(" "))

    def test_graphemesKept(self) -> None:
        family = "👩\u200d👩\u200d👧"
        pieces = list(splitText(("e\u0301" + family) * 20, 30))
        for piece in pieces:
            self.assertFalse(unicodedata.category(piece[0]).startswith("M"), piece)
            self.assertNotEqual(piece[0], "\u200d")

    def test_oneHugeGrapheme(self) -> None:
        """A grapheme longer than a piece is cut between code points, never inside one."""
        text = "a" + "\u0301" * 40
        pieces = list(splitText(text, 10))
        self.assertEqual("".join(pieces), text)
        self.assertTrue(all(len(p.encode()) <= 10 for p in pieces))

    @given(st.text(st.characters(exclude_categories=["Cs"]), max_size=300), st.integers(4, 60))
    @settings(max_examples=300, deadline=None)
    def test_properties(self, text: str, room: int) -> None:
        """The pieces join into the text, each within its bytes, none empty."""
        pieces = list(splitText(text, room))
        self.assertEqual("".join(pieces), text)
        self.assertTrue(all(len(piece.encode("utf-8")) <= room for piece in pieces))
        if text:
            self.assertTrue(all(pieces))
