"""
Property-based tests of every command with arbitrary Unicode arguments: handled at once, or
delayed by the flood limit and handled from a timer, no argument makes the server raise, log
trouble, or stop reading the connection.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.sessions.limits import Limits
from chatsvc.line.protocol import HELP
from tests.line.test_properties import World, examples

COMMANDS = sorted(
    line.split()[0][1:] for line in HELP if line.startswith("  /") and line[3] != "/"
)
"""Every command /help lists, without the slash."""

# Any text that can be one line: every code point but the surrogates and the line endings,
# with digits of every script and the characters that str.isdigit takes and int refuses.
_CHARACTERS = st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n")
_TRICKY = st.sampled_from(["²", "¹", "①", "٣", "𝟗", "０", "-1", "0", "9" * 5000, "#", " ", "\t"])
arguments = st.lists(st.one_of(st.text(_CHARACTERS, max_size=40), _TRICKY), max_size=4).map(
    " ".join
)


class CommandArgumentTests(SynchronousTestCase):
    """Every command, any argument, directly and through the flood delay."""

    def check(self, command: str, argument: str, delayed: bool) -> None:
        """
        Send C{/command argument} (after filling the flood bucket, if C{delayed}), then a line
        that must be answered: the connection still reads, and nothing was logged as trouble.
        """
        world = World(self, Limits(floodBurst=3, floodRate=5, addressFloodBurst=1000))
        with world.observingLog():
            world.join("Watcher")
            client = world.join("Alice")
            if delayed:
                client.send(b"a\nb\nc\n")  # the bucket is empty now
            line = f"/{command} {argument}\n".encode("utf-8")
            if len(line) > world.factory.limits.maxLineLength:
                line = line[: world.factory.limits.maxLineLength].decode("utf-8", "ignore").encode()
                line = line.rstrip(b"\n") + b"\n"
            client.send(line + b"/msg Watcher still here\n")
            world.settle()
            world.assertRoomConsistent()
            world.assertNoTrouble()
            if not client.transport.disconnecting:
                # Still reading: the line after the command was handled.
                self.assertIn(client.protocol, world.room)
                told = [text for text in world.connections[0].lines() if "still here" in text]
                self.assertEqual(told, [f"*{client.protocol.nick}* still here"], client.lines())
            world.dropAll()

    @examples(400)
    @given(command=st.sampled_from(COMMANDS + ["nosuchcommand"]), argument=arguments)
    def test_anyArgument(self, command: str, argument: str) -> None:
        """A command with any argument, handled as it arrives."""
        self.check(command, argument, delayed=False)

    @examples(400)
    @given(command=st.sampled_from(COMMANDS + ["nosuchcommand"]), argument=arguments)
    def test_anyArgumentDelayed(self, command: str, argument: str) -> None:
        """A command with any argument, held by the flood limit and handled from a timer."""
        self.check(command, argument, delayed=True)

    def test_superscriptDigits(self) -> None:
        """C{/history ²} (which str.isdigit takes and int refuses) gets the usage, not a crash."""
        for delayed in (False, True):
            for argument in ["²", "①", "٣", "9" * 5000]:
                self.check("history", argument, delayed)
