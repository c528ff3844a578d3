"""
Property-based tests of the client side of the protocol: whatever a server sends, split however
the network splits it, the client never raises, never prints anything unsafe for a terminal, and
prints the same thing however the bytes were cut; and whatever line it wraps to a terminal's
width, no row is too wide and no continuation row starts in the first column.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.client import CONTINUATION, ChatClient, Console, displayWidth, wrapLine
from chatsvc.text import UNSAFE_CHARACTERS, neutralize

_SERVER_LINES = st.sampled_from(
    [
        b"GET_NAME",
        b"Alice connected to server!",
        b"*** Error: nickname 'Alice' is already in use",
        b"*** Goodbye, Alice!",
        b"*** Disconnected: server shutting down",
        b"Bob: hi",
        b"\x1b[2J\x1b]0;title\x07",
        "\u202e\u2028\u0085".encode(),
        b"\xff\xfe\xc0\x80",
        b"\r",
        b"",
    ]
)

_JOINED = b"GET_NAME\r\nAlice connected to server!\r\n"
"""A server's side of a successful handshake, so that examples reach the chatting state."""

_STREAMS = st.tuples(
    st.sampled_from([b"", _JOINED]),
    st.one_of(
        st.binary(max_size=400),
        st.lists(st.one_of(_SERVER_LINES, st.binary(max_size=40)), max_size=12).map(
            lambda lines: b"".join(line + b"\r\n" for line in lines)
        ),
    ),
).map(b"".join)


def _cuts(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({min(point, len(data)) for point in points} | {0, len(data)})
    return [data[start:end] for start, end in zip(edges, edges[1:])]


def _run(chunks: list[bytes], typed: bytes) -> tuple[bytes, bytes, list[int], str | None]:
    """Feed C{chunks} from the server to a fresh client; what it sent, printed, and ended with."""
    output = StringTransport()
    client = ChatClient("Alice", Clock(), lambda console: console.makeConnection(output))
    transport = StringTransport()
    client.makeConnection(transport)
    status: list[int] = []
    client.done.addCallback(status.append)
    for chunk in chunks:
        if transport.disconnecting or transport.disconnected:
            break
        client.dataReceived(chunk)
        console: Console | None = client.console
        if console is not None and typed:
            console.dataReceived(typed)
            typed = b""
    client.connectionLost()
    if client.console is not None:
        client.console.connectionLost()
    return transport.value(), output.value(), status, client.error


class ClientStreamTests(SynchronousTestCase):
    """Arbitrary server output into the client."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=_STREAMS, points=st.lists(st.integers(0, 400), max_size=8), typed=st.binary(max_size=60))
    def test_anythingFromTheServer(self, data: bytes, points: list[int], typed: bytes) -> None:
        """
        Whatever arrives, the client prints only valid UTF-8 lines free of unsafe characters,
        ends with exactly one status (0 only after a goodbye), and says why when it is not 0.
        """
        sent, printed, status, error = _run(_cuts(data, points), typed)
        text = printed.decode("utf-8")
        self.assertTrue(text == "" or text.endswith("\n"))
        for line in text.split("\n"):
            self.assertFalse(set(map(ord, line)) & UNSAFE_CHARACTERS.keys(), repr(line))
        self.assertEqual(len(status), 1)
        self.assertEqual(status[0] == 0, error is None)
        if status[0] == 0:
            self.assertIn(b"*** Goodbye", data)
        for sentLine in sent.split(b"\r\n")[:-1]:
            self.assertNotIn(b"\n", sentLine)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=_STREAMS, points=st.lists(st.integers(0, 400), max_size=8))
    def test_splitDoesNotMatter(self, data: bytes, points: list[int]) -> None:
        """The client sends, prints and ends the same however the server's bytes were cut."""
        whole = _run([data], b"")
        self.assertEqual(_run(_cuts(data, points), b""), whole)
        self.assertEqual(_run([bytes([byte]) for byte in data], b""), whole)


_TERMINAL_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(" \t  abc:中Ａé\u0301\u20dd\ufe0f\U0001f600\U0001f1eb"), st.characters()
    ),
    max_size=300,
).map(neutralize)


def _unspaced(text: str) -> str:
    return text.replace(" ", "").replace("\t", "")


class WrapLineTests(SynchronousTestCase):
    """L{wrapLine} on arbitrary lines and widths."""

    @settings(max_examples=500, deadline=None)
    @given(line=_TERMINAL_TEXT, columns=st.integers(1, 120))
    def test_rows(self, line: str, columns: int) -> None:
        """
        Every row fits the width (six columns at the least); every row after the first is
        L{CONTINUATION} then a character other than a space; nothing but spaces is lost; a line
        that fits is left as it is.
        """
        rows = wrapLine(line, columns)
        width = max(columns, 6)
        for row in rows:
            self.assertNotIn("\t", row)
            self.assertLessEqual(sum(map(displayWidth, row)), width, rows)
        for row in rows[1:]:
            self.assertTrue(row.startswith(CONTINUATION), rows)
            self.assertNotIn(row[len(CONTINUATION) : len(CONTINUATION) + 1], ("", " "), rows)
        self.assertEqual(
            _unspaced(rows[0] + "".join(row[len(CONTINUATION) :] for row in rows[1:])),
            _unspaced(line),
        )
        if "\t" not in line and sum(map(displayWidth, line)) <= width:
            self.assertEqual(rows, [line])
