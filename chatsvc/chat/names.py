"""
The rules for nicknames and room names: which are valid, and when two are the same name.

A name is shown as it was typed (trimmed and NFC-normalized), and compared through its I{key},
which is never shown. Two names that look alike must be one name, or a member could pass for
another; so the key is Unicode's confusable skeleton (UTS #39, "Unicode Security Mechanisms") of
the name's case-folded compatibility form: C{Alice}, C{ALICE}, fullwidth C{Ａｌｉｃｅ}, C{a1ice}
and C{аlice} with a Cyrillic C{а} all have the key C{alice}.

The skeleton, the scripts of a name and the Unicode properties used here all come from ICU (the
reference implementation of UTS #39, through PyICU), not from lists kept by hand (but for two
blank characters no Unicode property names, and the IRC characters below), so that they follow
Unicode as ICU does. A valid name also:

 - contains no invisible character: no whitespace, nothing Default_Ignorable_Code_Point (zero
   width characters, variation selectors, the Hangul fillers, the Khmer inherent vowels, the
   combining grapheme joiner...), and neither of the two graphic characters that draw nothing;
 - does not mix scripts beyond what ICU's C{HIGHLY_RESTRICTIVE} level allows: one script, or
   Latin with Han and the Japanese kana, with Han and Bopomofo, or with Han and Hangul (digits,
   punctuation and symbols belong to every script);
 - does not mix digits of different number systems, nor repeat a combining mark on one letter.

A nickname must also be valid on every door, the IRC door's included, where it is the first part
of a message's source (C{nick!user@host}), a word of a space-separated C{NAMES} reply behind its
membership prefixes (C{@alice +bob}), and a target beside channels. So, following the modern IRC
client protocol (modern.ircdocs.horse, "Clients"), a nickname:

 - contains no space, C{,}, C{*}, C{?}, C{!} or C{@} (which separate targets, make masks and
   split a source), no C{:} (which starts a trailing parameter), and no C{.} (which makes it look
   like a server's name);
 - does not start with C{$} (a server mask), with a channel type (C{#}, and C{&}, which clients
   commonly take for one), or with a membership prefix (C{~}, C{&}, C{@}, C{%} and C{+}: those
   clients commonly know, beyond the C{@} and C{+} of the C{PREFIX=(ov)@+} the IRC door
   advertises);
 - does not start with an ASCII digit (C{0} to C{9}) or C{-}, which RFC 2812 refuses and which
   many clients and bots assume never start a nickname.

Nor does it start with C{/} (a line door command), C{[} (the line door marks lines from a
member's other rooms with C{[room]}) or a combining mark.

Nothing here may import from chatsvc but L{chatsvc.chat.errors}.
"""

from __future__ import annotations

import icu

from chatsvc.chat.errors import ChatError

__all__ = [
    "KEY_RULES",
    "MAX_NICK_LENGTH",
    "MAX_ROOM_NAME_LENGTH",
    "nick_key",
    "room_key",
    "validate_nick",
    "validate_room_name",
]

MAX_NICK_LENGTH = 32
"""The longest nickname, in characters."""

MAX_ROOM_NAME_LENGTH = 32
"""The longest room name, in characters."""

# Characters no nickname holds, anywhere, for the IRC door (see the module's docstring): only these
# ASCII ones, which IRC gives a meaning, not their look-alikes. Spaces, controls and invisible
# characters are refused through Unicode properties, below.
_NOT_IN_NICKS = ",:*?!@."

# Characters no nickname starts with: for the IRC door, a server mask's C{$}, channel types and
# membership prefixes, and C{-} (as digits, refused on their own); for the line door, C{/} (a
# command) and C{[} (a line from another room). What is refused anywhere is not repeated here.
_NOT_FIRST_IN_NICKS = "$#&~%+-/["
_ASCII_DIGITS = "0123456789"

# HIGHLY_RESTRICTIVE (ICU's default) rather than MODERATELY_RESTRICTIVE: it admits every script
# alone and the mixes people write names in (Japanese with Latin, Chinese with Latin or
# Bopomofo, Korean with Latin), while MODERATELY would add Latin with one more script such as
# Arabic, Hebrew or Devanagari. Those mixes are rare in a nickname, and Latin beside a
# right-to-left script is reordered on display, one more way for a name to look like another.
_RESTRICTION_LEVEL = icu.URestrictionLevel.HIGHLY_RESTRICTIVE

KEY_RULES = f"confusable-skeleton, ICU {icu.ICU_VERSION}"
"""
The rules by which L{nick_key} and L{room_key} make keys: the confusable skeleton of the
case-folded name, as this version of ICU computes it. Stored room keys made under other rules
are made again (see chatsvc.storage.sqlite), so a change here, or an ICU with other confusable data,
never leaves a room's stored history under a key nobody finds.
"""

_SPOOF_CHECKER = icu.SpoofChecker()
_SPOOF_CHECKER.setRestrictionLevel(_RESTRICTION_LEVEL)
_SPOOF_CHECKER.setChecks(
    icu.USpoofChecks.RESTRICTION_LEVEL
    | icu.USpoofChecks.MIXED_NUMBERS
    | icu.USpoofChecks.INVISIBLE
)

_NFC = icu.Normalizer2.getNFCInstance()
# NFKC_Casefold: compatibility forms, case folding and the removal of default-ignorable code
# points in one step, idempotent by construction (what UAX #31 gives for comparing identifiers
# without case).
_FOLD = icu.Normalizer2.getNFKCCasefoldInstance()


def _frozen_set(pattern: str) -> icu.UnicodeSet:
    characters = icu.UnicodeSet(pattern)
    characters.freeze()
    return characters


_WHITE_SPACE = _frozen_set("[:White_Space:]")
_CONTROL_OR_FORMAT = _frozen_set("[[:Cc:][:Cf:][:Z:]]")
_UNASSIGNED_OR_PRIVATE = _frozen_set("[[:Cn:][:Co:]]")
# What draws nothing. Unicode has no property for a graphic character without ink, so the two
# designed to be blank are named: U+2800 BRAILLE PATTERN BLANK (a cell with no dots) and U+1D159
# MUSICAL SYMBOL NULL NOTEHEAD; UTS #39 excludes both from identifiers (Identifier_Type
# Technical). Everything else invisible is whitespace or Default_Ignorable_Code_Point.
_INVISIBLE = _frozen_set(r"[[:White_Space:][:Default_Ignorable_Code_Point:]\u2800\U0001D159]")
_MARKS = _frozen_set("[:M:]")
_LETTERS_AND_DIGITS = _frozen_set("[[:L:][:N:]]")
_ROOM_CHARACTERS = _frozen_set(r"[[:L:][:M:][:N:]\-_.]")

# How many times, at most, the skeleton is folded and taken again (see _key): every single code
# point settles within three rounds with ICU 77.
_KEY_ROUNDS = 8


def _key(name: str) -> str:
    """
    The comparison key of C{name}: its NFKC_Casefold form, then its confusable skeleton, folded
    again, until that no longer changes, so that the key of a key is itself (keys are stored).
    A skeleton may hold capitals (that of C{0} is C{O}), which folding changes, which may give
    another skeleton (C{%} becomes C{o/0}, then C{o/o}).
    """
    # Lone surrogates, which no valid name holds, would stop ICU: they become U+FFFD.
    key: str = _FOLD.normalize(name.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
    for _ in range(_KEY_ROUNDS):
        skeleton: str = _FOLD.normalize(_SPOOF_CHECKER.getSkeleton(0, key))
        if skeleton == key:
            break
        key = skeleton
    return key


def nick_key(nick: str) -> str:
    """
    The form in which nicknames are compared: the same for names that look alike, whatever their
    case, width or script (C{Alice}, C{ALICE}, C{Ａｌｉｃｅ}, C{аlice} are one name). For
    comparison only: never show it (that of C{games} is C{garnes}). Stable: the key of a key is
    itself.
    """
    return _key(nick)


def room_key(name: str) -> str:
    """The form in which room names are compared: as L{nick_key}, without a leading C{#}."""
    # Stripped again: a letter's compatibility form may start with a space (that of U+037A
    # GREEK YPOGEGRAMMENI is a space and a combining mark), which would make the key of the
    # key another key.
    return _key(name.strip().removeprefix("#")).strip()


def _describe(character: str) -> str:
    name: str = icu.Char.charName(character)
    return f"U+{ord(character):04X} {name}" if name else f"U+{ord(character):04X}"


def _first(characters: icu.UnicodeSet, text: str) -> str | None:
    return next((character for character in text if characters.contains(character)), None)


def _scripts(text: str) -> list[str]:
    """The scripts of C{text}'s letters, each once, in order of appearance."""
    scripts: dict[str, None] = {}
    for character in text:
        script: str = icu.Script.getScript(character).getName()
        if script not in ("Common", "Inherited", "Unknown"):
            scripts[script] = None
    return list(scripts)


def _check_confusable(name: str, what: str) -> None:
    """
    Refuse C{name} (described to the member as C{what}) if ICU's spoof checks find mixed scripts,
    mixed number systems or a repeated combining mark in it.
    """
    failed: int = _SPOOF_CHECKER.check(name)
    if failed & icu.USpoofChecks.MIXED_NUMBERS:
        raise ChatError(f"{what} may not mix digits of different number systems")
    if failed & icu.USpoofChecks.RESTRICTION_LEVEL:
        scripts = _scripts(name)
        mixed = "scripts"
        if len(scripts) > 1:
            mixed = f"the {', '.join(scripts[:-1])} and {scripts[-1]} scripts"
        raise ChatError(
            f"{what} may not mix {mixed};"
            " use one script (Latin may go with Chinese, Japanese or Korean)"
        )
    if failed & icu.USpoofChecks.INVISIBLE:
        raise ChatError(f"{what} may not repeat a combining mark on one letter")


def _normalized(text: str) -> str | None:
    """C{text} in NFC, or L{None} if it holds a lone surrogate (which cannot be shown)."""
    if any("\ud800" <= character <= "\udfff" for character in text):
        return None
    normalized: str = _NFC.normalize(text)
    return normalized


def validate_nick(raw: str) -> str:
    """
    Check a requested nickname against the rules of this module (those of every door, the IRC
    door's included) and return it as it will be used (trimmed, NFC-normalized). The line door
    also refuses its quit words (L{chatsvc.line.wire.QUIT_WORDS}).

    @raise ChatError: with a message saying what is wrong with it.
    """
    nick = _normalized(raw.strip())
    if nick is None:
        raise ChatError("a nickname may not contain control or formatting characters")
    if not nick:
        raise ChatError("a nickname may not be empty")
    if len(nick) > MAX_NICK_LENGTH:
        raise ChatError(f"a nickname may be at most {MAX_NICK_LENGTH} characters long")
    if any(character.isspace() for character in nick) or _WHITE_SPACE.containsSome(nick):
        raise ChatError("a nickname may not contain spaces")
    if _CONTROL_OR_FORMAT.containsSome(nick):
        raise ChatError("a nickname may not contain control or formatting characters")
    refused = next((character for character in nick if character in _NOT_IN_NICKS), None)
    if refused is not None:
        raise ChatError(f"a nickname may not contain '{refused}'")
    unassigned = _first(_UNASSIGNED_OR_PRIVATE, nick)
    if unassigned is not None:
        raise ChatError(
            "a nickname may not contain unassigned or private-use characters"
            f" ({_describe(unassigned)})"
        )
    invisible = _first(_INVISIBLE, nick)
    if invisible is not None:
        raise ChatError(f"a nickname may not contain invisible characters ({_describe(invisible)})")
    if nick[0] in _NOT_FIRST_IN_NICKS:
        raise ChatError(f"a nickname may not start with '{nick[0]}'")
    if nick[0] in _ASCII_DIGITS:
        raise ChatError("a nickname may not start with a digit")
    if _MARKS.contains(nick[0]):
        raise ChatError("a nickname may not start with a combining mark")
    _check_confusable(nick, "a nickname")
    return nick


def validate_room_name(raw: str) -> str:
    """
    Check a room name and return it as it will be shown: trimmed, NFC-normalized, without a
    leading C{#} (C{/join #games} and C{/join games} are the same room). Letters (with their
    marks) and digits of any script, C{-}, C{_} and C{.}; at most L{MAX_ROOM_NAME_LENGTH}
    characters; no invisible characters and no mixed scripts, as for nicknames.

    @raise ChatError: with a message saying what is wrong with it.
    """
    name = _normalized(raw.strip().removeprefix("#"))
    only = "a room name may contain only letters, digits, '-', '_' and '.'"
    if name is None:
        raise ChatError(only)
    if not name:
        raise ChatError("a room name may not be empty")
    if len(name) > MAX_ROOM_NAME_LENGTH:
        raise ChatError(f"a room name may be at most {MAX_ROOM_NAME_LENGTH} characters long")
    if not _ROOM_CHARACTERS.containsAll(name):
        raise ChatError(only)
    invisible = _first(_INVISIBLE, name)
    if invisible is not None:
        raise ChatError(
            f"a room name may not contain invisible characters ({_describe(invisible)})"
        )
    if not _LETTERS_AND_DIGITS.contains(name[0]):
        raise ChatError("a room name must start with a letter or a digit")
    _check_confusable(name, "a room name")
    return name
