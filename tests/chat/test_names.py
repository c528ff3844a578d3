"""
Tests for L{chatsvc.chat.names}: names that look alike are one name, names that mix look-alike scripts
or hold invisible characters are refused, nicknames are valid IRC nicknames, and names of every
script are still welcome.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import icu
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import chatsvc.chat
import chatsvc.chat.errors
import chatsvc.chat.names
from chatsvc.chat import ChatError, nick_key, room_key, validate_nick, validate_room_name
from tests.chat.test_hub import Recorder, arrive, hubWith, rename
from tests.test_layers import importsOf

# The look-alikes of "alice" and the blank names a security review found accepted, each with
# (part of) the reason it is refused for.
LOOK_ALIKES = {
    "alice\u034f": "invisible characters (U+034F COMBINING GRAPHEME JOINER)",
    "alice\ufe0f": "invisible characters (U+FE0F VARIATION SELECTOR-16)",
    "alice\ufe00": "invisible characters (U+FE00 VARIATION SELECTOR-1)",
    "alice\u1160": "invisible characters (U+1160 HANGUL JUNGSEONG FILLER)",
    "\u0430lice": "mix the Cyrillic and Latin scripts",
    "al\u0456ce": "mix the Latin and Cyrillic scripts",
}

BLANKS = {
    "\u3164": "U+3164 HANGUL FILLER",
    "\u115f": "U+115F HANGUL CHOSEONG FILLER",
    "\uffa0": "U+FFA0 HALFWIDTH HANGUL FILLER",
    "\u2800": "U+2800 BRAILLE PATTERN BLANK",
    "\u17b4": "U+17B4 KHMER VOWEL INHERENT AQ",
    "\u3164\u3164\u3164": "U+3164 HANGUL FILLER",
    "\u17b4\u17b5": "U+17B4 KHMER VOWEL INHERENT AQ",
}

# Names people really use, in many scripts and script mixes; and room names the same.
GOOD_NICKNAMES = [
    "Alice",
    "José",
    "Zoë",
    "Øyvind",
    "Ελένη",
    "Наташа",
    "محمد",
    "יוסי",
    "राजेश",
    "ภาษาไทย",
    "李雷",
    "山田たろう",
    "タロウ",
    "Taroたろう",
    "김민수",
    "Kim김",
    "ㄅㄆ李",
    "ᏣᎳᎩ",
    "ⴰⵣⵓⵍ",
    "dj_42",
    "x-y_z",
    "a+b",
    "<->",
    "dj🎉",
    "🎸",
    "Straße",
]

GOOD_ROOM_NAMES = [
    "games",
    "año-2026",
    "v1.2_beta",
    "Ελληνικά",
    "русский",
    "العربية",
    "עברית",
    "हिन्दी",
    "ภาษาไทย",
    "中文",
    "日本語のへや",
    "한국어",
    "Kpop한국",
]


def assertRefused(
    case: SynchronousTestCase, validate: Callable[[str], str], cases: dict[str, str]
) -> None:
    """Each name in C{cases} is refused by C{validate} with a message holding its reason."""
    for name, reason in cases.items():
        with case.subTest(name=name):
            error = case.assertRaises(ChatError, validate, name)
            case.assertIn(reason, str(error))


def _blank(character: str) -> bool:
    """
    Whether C{character} draws nothing: whitespace, default-ignorable, or one of the two graphic
    characters designed blank. Asked of ICU character by character, not through the sets
    L{chatsvc.chat.names} builds, so that the two checks are independent.
    """
    return (
        icu.Char.hasBinaryProperty(character, icu.UProperty.WHITE_SPACE)
        or icu.Char.hasBinaryProperty(character, icu.UProperty.DEFAULT_IGNORABLE_CODE_POINT)
        or character in "\u2800\U0001d159"
    )


class LookAlikeTests(SynchronousTestCase):
    """The names of the security review: refused, or one name with C{alice}."""

    def test_lookAlikesRefused(self) -> None:
        """
        Each look-alike of C{alice} is refused, with a reason that names what is wrong, and
        has C{alice}'s key, so that not even a lookup tells them apart.
        """
        assertRefused(self, validate_nick, LOOK_ALIKES)
        for nick in LOOK_ALIKES:
            self.assertEqual(nick_key(nick), nick_key("alice"), nick)

    def test_blankNamesRefused(self) -> None:
        """
        A nickname or room name of blank-looking characters only is refused as invisible,
        and so is one with a single blank character among visible ones.
        """
        for blank, described in BLANKS.items():
            for name in [blank, f"a{blank}", f"{blank}a", f"Bob{blank}by"]:
                with self.subTest(name=name):
                    error = self.assertRaises(ChatError, validate_nick, name)
                    self.assertEqual(
                        str(error), f"a nickname may not contain invisible characters ({described})"
                    )
                    error = self.assertRaises(ChatError, validate_room_name, name)
                    if blank != "\u2800":
                        # Room names hold only letters, marks and digits: the Braille blank,
                        # a symbol, is refused as not one of those, before it is seen blank.
                        self.assertIn("invisible characters", str(error))

    def test_sameKeyAsAlice(self) -> None:
        """Names that look like C{alice}, in other cases, widths and scripts, are one name."""
        spellings = ["Alice", "ALICE", "Ａｌｉｃｅ", "a1ice", "\u0430lice", "al\u0456ce", "alice\u034f"]
        for nick in spellings:
            with self.subTest(nick=nick):
                self.assertEqual(nick_key(nick), nick_key("alice"))
        self.assertNotEqual(nick_key("alice"), nick_key("alicia"))

    def test_wholeScriptLookAlikeInUse(self) -> None:
        """
        A name wholly in another script that looks like one in use (Cyrillic C{аре} beside
        Latin C{ape}) is valid on its own, and refused while the other is in use.
        """
        cyrillic = "\u0430\u0440\u0435"
        self.assertEqual(validate_nick(cyrillic), cyrillic)
        hub, (ape,) = hubWith("ape")
        newcomer = Recorder()
        error = self.assertRaises(ChatError, arrive, hub, newcomer, cyrillic)
        self.assertIn("already in use", str(error))
        self.assertNotIn(newcomer, hub)
        self.assertIs(hub.memberNamed(cyrillic), ape)

    def test_renameToLookAlike(self) -> None:
        """Renaming to a name that looks like another member's is refused."""
        hub, (bob, _) = hubWith("Bob", "ml")
        error = self.assertRaises(ChatError, rename, hub, bob, "rn1")
        self.assertIn("already in use", str(error))
        self.assertEqual(hub.nickOf(bob), "Bob")

    def test_lookAlikeRoomsAreOne(self) -> None:
        """Rooms whose names look alike are one room, shown as first created."""
        hub, (alice,) = hubWith("Alice")
        room = hub.join(alice, "lobby2")
        self.assertIs(hub.join(alice, "#LOBBY2"), room)
        self.assertIs(hub.join(alice, "10bby2"), room)
        self.assertEqual(room.name, "lobby2")


class ValidNamesTests(SynchronousTestCase):
    """Names in every script, and the usual mixes, are still welcome."""

    def test_nicknamesInManyScripts(self) -> None:
        """Single-script names in many scripts, Japanese, Chinese and Korean mixes, digits,
        punctuation and emoji are valid nicknames, kept as typed."""
        for nick in GOOD_NICKNAMES:
            with self.subTest(nick=nick):
                self.assertEqual(validate_nick(nick), nick)

    def test_roomNamesInManyScripts(self) -> None:
        """
        Room names in many scripts are valid, those whose letters carry combining marks
        (Devanagari, Thai) included.
        """
        for name in GOOD_ROOM_NAMES:
            with self.subTest(name=name):
                self.assertEqual(validate_room_name(name), name)
                self.assertEqual(validate_room_name(f"#{name}"), name)

    def test_shownAsTyped(self) -> None:
        """A name is shown as typed (NFC), never as its key."""
        self.assertEqual(validate_nick("Gamer"), "Gamer")
        self.assertEqual(nick_key("Gamer"), "garner")
        hub, (gamer,) = hubWith("Gamer")
        self.assertEqual(hub.nickOf(gamer), "Gamer")


_ONLY = "may contain only letters, digits, '-', '_' and '.'"

# Other names refused, each with what a member is told when asking for it as a nickname, and as
# a room name (after "a nickname " and "a room name ").
REFUSED = {
    # Highly restrictive: Latin goes with Chinese, Japanese or Korean only.
    "Ravi_रवि": ("may not mix the Latin and Devanagari scripts; use one script", None),
    "sam_سام": ("may not mix the Latin and Arabic scripts", None),
    "\u03b1lpha": ("may not mix the Greek and Latin scripts", None),
    "games\u034f": ("may not contain invisible characters (U+034F", None),
    "a\u3164b": ("may not contain invisible characters (U+3164", None),
    "a1\u0662": ("may not mix digits of different number systems", None),
    "e\u0301\u0301": ("may not repeat a combining mark on one letter", None),
    "\u0301a": ("may not start with a combining mark", "must start with a letter or a digit"),
    "a\ue000": ("may not contain unassigned or private-use characters (U+E000)", _ONLY),
    "a\u0378": ("may not contain unassigned or private-use characters (U+0378)", _ONLY),
    # An emoji sequence is joined by U+200D, a format character.
    "\U0001f468\u200d\U0001f4bb": ("may not contain control or formatting characters", _ONLY),
    "a\ud800": ("may not contain control or formatting characters", _ONLY),
}


class RefusedNamesTests(SynchronousTestCase):
    """What else the look-alike rules refuse, and what the member is told."""

    def test_nicknames(self) -> None:
        """Each refused nickname gets a reason the member can act on."""
        told = {name: f"a nickname {reason}" for name, (reason, _) in REFUSED.items()}
        assertRefused(self, validate_nick, told)

    def test_roomNames(self) -> None:
        """
        Room names are refused for the same reasons, told as a room name's (a reason of its own
        where it has one), and emoji, not letters, are not in them.
        """
        told = {
            name: f"a room name {ownReason or reason}"
            for name, (reason, ownReason) in REFUSED.items()
        }
        assertRefused(self, validate_room_name, {**told, "dj🎉": f"a room name {_ONLY}"})


# What the IRC door needs of a nickname (modern.ircdocs.horse, "Clients"): each character refused
# anywhere, and each refused as the first, with a name holding it there.
IRC_REFUSED_ANYWHERE = {
    ",": "a nickname may not contain ','",
    ":": "a nickname may not contain ':'",
    "*": "a nickname may not contain '*'",
    "?": "a nickname may not contain '?'",
    "!": "a nickname may not contain '!'",
    "@": "a nickname may not contain '@'",
    ".": "a nickname may not contain '.'",
}

IRC_REFUSED_FIRST = {
    "$server": "a nickname may not start with '$'",
    ":colon": "a nickname may not contain ':'",
    "#channel": "a nickname may not start with '#'",
    "&channel": "a nickname may not start with '&'",
    "~owner": "a nickname may not start with '~'",
    "@op": "a nickname may not contain '@'",
    "%halfop": "a nickname may not start with '%'",
    "+voice": "a nickname may not start with '+'",
    "-dash": "a nickname may not start with '-'",
    "0day": "a nickname may not start with a digit",
    "1bot": "a nickname may not start with a digit",
    "9lives": "a nickname may not start with a digit",
}

# Names with IRC's special characters that stay valid (RFC 2812's "special" and others allowed
# past the first character), and the characters refused first but allowed after it.
IRC_ALLOWED = [
    "a[b]",
    "x_y",
    "foo|bar",
    "a^b",
    "a{b}",
    "a\\b",
    "a`b",
    "a-b",
    "a'b",
    "a1",
    "a$b",
    "a#b",
    "a&b",
    "a~b",
    "a%b",
    "a+b",
    "_x",
    "|x|",
    "{x}",
    "^x",
    "`x",
    "\\x",
]


class IrcNicknameTests(SynchronousTestCase):
    """Every nickname is a valid IRC nickname, in a message's source and in C{NAMES} replies."""

    def test_refusedAnywhere(self) -> None:
        """
        Space, C{,}, C{:}, C{*}, C{?}, C{!}, C{@} and C{.} are refused wherever they are, the
        member told which.
        """
        for character, told in IRC_REFUSED_ANYWHERE.items():
            for name in [f"a{character}b", f"{character}ab", f"ab{character}", character * 3]:
                with self.subTest(name=name):
                    error = self.assertRaises(ChatError, validate_nick, name)
                    self.assertEqual(str(error), told)
        error = self.assertRaises(ChatError, validate_nick, "a b")
        self.assertEqual(str(error), "a nickname may not contain spaces")

    def test_refusedFirst(self) -> None:
        """
        A server mask's C{$}, a channel type, a membership prefix, an ASCII digit and C{-} are
        refused as the first character, the member told which.
        """
        for name, told in IRC_REFUSED_FIRST.items():
            with self.subTest(name=name):
                error = self.assertRaises(ChatError, validate_nick, name)
                self.assertEqual(str(error), told)

    def test_lineDoorFirst(self) -> None:
        """C{/} (a command) and C{[} (a line from another room) are still refused first."""
        for name in ["/who", "[games]"]:
            with self.subTest(name=name):
                error = self.assertRaises(ChatError, validate_nick, name)
                self.assertEqual(str(error), f"a nickname may not start with '{name[0]}'")

    def test_firstFoundTold(self) -> None:
        """Of several characters refused, the member is told of the first."""
        error = self.assertRaises(ChatError, validate_nick, "a.b!c")
        self.assertEqual(str(error), "a nickname may not contain '.'")
        error = self.assertRaises(ChatError, validate_nick, "#a!b")
        self.assertEqual(str(error), "a nickname may not contain '!'")

    def test_lookAlikesOfIrcCharacters(self) -> None:
        """
        Only the ASCII characters are refused: a fullwidth digit or exclamation mark breaks no
        IRC message, and its key is that of the ASCII one, so the two cannot both be in use.
        """
        for nick, ascii in [("１bot", "1bot"), ("a！b", "a!b"), ("ｘ．ｙ", "x.y")]:
            with self.subTest(nick=nick):
                self.assertEqual(validate_nick(nick), nick)
                self.assertEqual(nick_key(nick), nick_key(ascii))

    def test_allowed(self) -> None:
        """
        IRC's special characters, and those refused first, are valid where IRC allows them;
        names in any script still are.
        """
        for nick in [*IRC_ALLOWED, "Zoë", "李雷", "Ａｌｉｃｅ", "dj🎉"]:
            with self.subTest(nick=nick):
                self.assertEqual(validate_nick(nick), nick)


class KeyTests(SynchronousTestCase):
    """The comparison keys."""

    def test_roomKeyDropsHash(self) -> None:
        """A room's key ignores a leading C{#} and surrounding spaces, as its name does."""
        self.assertEqual(room_key(" #Games "), room_key("games"))
        self.assertEqual(room_key("#games"), nick_key("games"))

    def test_keyOfAKey(self) -> None:
        """
        The key of a key is itself, where a single skeleton is not: that of C{0} is C{O},
        whose folded form's skeleton is C{o}; that of C{%} holds a C{0}. The compatibility
        form of U+037A (a letter) starts with a space, which a room key drops.
        """
        for name in ["0", "O", "%", "n000", "Σίσυφος", "ϛ", "ҋ", "ቀ", "games", "\u037a", "\ufc5e"]:
            with self.subTest(name=name):
                key = nick_key(name)
                self.assertEqual(nick_key(key), key)
                key = room_key(name)
                self.assertEqual(room_key(key), key)

    def test_anyStringHasAKey(self) -> None:
        """Lookups may name anything: even a lone surrogate has a key, and matches nobody."""
        self.assertEqual(nick_key("a\ud800"), nick_key("a\udfff"))
        self.assertNotEqual(nick_key("a\ud800"), nick_key("a"))


class ModuleTests(SynchronousTestCase):
    """Where the rules live."""

    def test_coreReexports(self) -> None:
        """
        L{chatsvc.chat} offers the name functions and L{ChatError}; the quit words are the line
        door's to refuse, not a rule of the core's.
        """
        shared = [
            "MAX_NICK_LENGTH", "MAX_ROOM_NAME_LENGTH", "nick_key", "room_key", "validate_nick",
            "validate_room_name",
        ]
        for name in shared:
            with self.subTest(name=name):
                self.assertIs(getattr(chatsvc.chat, name), getattr(chatsvc.chat.names, name))
                self.assertIn(name, chatsvc.chat.__all__)
        self.assertIs(chatsvc.chat.ChatError, chatsvc.chat.errors.ChatError)
        self.assertEqual(chatsvc.chat.names.validate_nick("q"), "q")

    def test_namesImportsOnlyErrors(self) -> None:
        """
        L{chatsvc.chat.names} imports nothing from chatsvc but L{chatsvc.chat.errors}.
        """
        imported = importsOf(Path(chatsvc.chat.names.__file__))
        ours = {name for name in imported if name.startswith("chatsvc")}
        self.assertEqual(ours, {"chatsvc.chat.errors"})


# Characters to build names from: the review's, others that look alike or draw nothing, marks,
# digits of several systems, and anything at all.
_NAME_CHARACTERS = st.one_of(
    st.sampled_from(
        sorted(
            set("".join([*LOOK_ALIKES, *BLANKS]))
            | set("aliceAm01rnO%#-_.*:,/李たタ김ㄅ🎉")
            | set(" !?@$&~+[]{}|^`'\\")
            | set("\u03b1\u0301\u0308\u0662\u0966\u200d\u00a0\ue000\u0378")
        )
    ),
    st.characters(codec="utf-8"),
)
_names = st.one_of(
    st.text(_NAME_CHARACTERS, min_size=1, max_size=12),
    st.sampled_from([*LOOK_ALIKES, *BLANKS, *GOOD_NICKNAMES, *GOOD_ROOM_NAMES]),
)


class PropertyTests(SynchronousTestCase):
    """What holds for every name."""

    @settings(max_examples=800, deadline=None)
    @given(name=st.one_of(_names, st.text()))
    def test_keysStable(self, name: str) -> None:
        """
        Any string's key is the same each time it is computed; a nickname key is its own key
        (room keys are too, for valid room names: see L{test_validRoomNames}).
        """
        self.assertEqual(nick_key(name), nick_key(name))
        self.assertEqual(nick_key(nick_key(name)), nick_key(name))
        self.assertEqual(room_key(name), room_key(name))

    @settings(max_examples=800, deadline=None)
    @given(name=_names)
    def test_validNicknames(self, name: str) -> None:
        """
        A valid nickname is valid again as it is returned, unchanged; its key is not empty;
        and at least one of its characters, indeed every one, draws something.
        """
        try:
            nick = validate_nick(name)
        except ChatError:
            return
        self.assertEqual(validate_nick(nick), nick)
        self.assertNotEqual(nick_key(nick), "")
        self.assertFalse([character for character in nick if _blank(character)], nick)

    @settings(max_examples=800, deadline=None)
    @given(name=_names, prefixes=st.text(st.sampled_from("~&@%+"), max_size=5))
    def test_validNicknamesParseInIrc(self, name: str, prefixes: str) -> None:
        """
        A valid nickname comes back whole from an IRC message's source (C{nick!user@host}),
        split as a client splits it, from a list of targets, and from a word of a C{NAMES}
        reply behind any membership prefixes; it is one parameter, never a trailing one, and is
        no mask and names no channel or server.
        """
        try:
            nick = validate_nick(name)
        except ChatError:
            return
        line = f":{nick}!u@host PRIVMSG #lobby :hi"
        source, command, target, text = line.split(" ", 3)
        self.assertEqual(source[1:].split("!", 1)[0].split("@", 1)[0], nick)
        self.assertEqual((command, target, text), ("PRIVMSG", "#lobby", ":hi"))
        reply = f":server 353 {nick} = #lobby :{prefixes}{nick} @op"
        words = reply.split(" :", 1)[1].split(" ")
        self.assertEqual(words[0].lstrip("~&@%+"), nick)
        self.assertEqual(f"NICK {nick}".split(" "), ["NICK", nick])
        self.assertEqual(f"{nick},#lobby".split(","), [nick, "#lobby"])
        self.assertFalse(set(nick) & set("*?"), nick)
        self.assertNotIn(nick[0], "#&$:")
        self.assertNotIn(".", nick)
        self.assertNotIn(nick[0], "0123456789-")

    @settings(max_examples=800, deadline=None)
    @given(name=_names)
    def test_validRoomNames(self, name: str) -> None:
        """
        The same of room names: valid again unchanged, a non-empty key that is its own key,
        nothing blank.
        """
        try:
            room = validate_room_name(name)
        except ChatError:
            return
        self.assertEqual(validate_room_name(room), room)
        key = room_key(room)
        self.assertNotEqual(key, "")
        self.assertEqual(room_key(key), key)
        self.assertFalse([character for character in room if _blank(character)], room)

    @settings(max_examples=300, deadline=None)
    @given(name=_names)
    def test_lookAlikesCannotBothArrive(self, name: str) -> None:
        """
        Of two members whose names have one key, the second is refused; a valid name is
        found by any spelling with its key.
        """
        hub, (alice,) = hubWith("alice")
        try:
            nick = validate_nick(name)
        except ChatError:
            return
        newcomer = Recorder()
        if nick_key(nick) == nick_key("alice"):
            self.assertRaises(ChatError, arrive, hub, newcomer, nick)
            self.assertIs(hub.memberNamed(nick), alice)
        else:
            arrive(hub, newcomer, nick)
            self.assertIs(hub.memberNamed(nick_key(nick)), newcomer)
