"""
Tests for L{chatsvc.web.protocol}: the browser door's JSON protocol over WebSocket frames, on
in-memory transports and a L{Clock}, as the line door's are tested.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.chat import Hub, StoredMessage
from chatsvc.line.protocol import ChatFactory
from chatsvc.sessions.admission import Admission
from chatsvc.sessions.limits import Limits
from chatsvc.sessions.outbox import Outbox
from chatsvc.web.protocol import HISTORY_PAGE, MAX_FRAME_BYTES, WebFactory, WebSession, formatTime
from chatsvc.web.site import makeSite
from tests.chat.test_history import PagingStore
from tests.line.test_protocol import Client as LineClient

_nextPort = [50000]


def clientFrame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    """A masked frame, as a client sends it."""
    mask = os.urandom(4)
    length = len(payload)
    head = (0x80 if fin else 0) | opcode
    if length < 126:
        header = struct.pack("!BB", head, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", head, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", head, 0x80 | 127, length)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return header + mask + masked


def serverFrames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each unmasked frame in C{data}."""
    frames = []
    while data:
        opcode = data[0] & 0x0F
        length = data[1] & 0x7F
        offset = 2
        if length == 126:
            (length,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif length == 127:
            (length,) = struct.unpack("!Q", data[2:10])
            offset = 10
        frames.append((opcode, data[offset : offset + length]))
        data = data[offset + length :]
    return frames


class WebClient:
    """
    One in-memory connection to the browser door's site, opened as a WebSocket (the opening
    handshake goes through the site's HTTP channel and its C{/ws}), and what the server sent it.
    """

    def __init__(
        self,
        factory: WebFactory,
        origin: str | None = "http://chat.example:8080",
        headers: list[str] | None = None,
    ) -> None:
        _nextPort[0] += 1
        address = IPv4Address("TCP", "127.0.0.1", _nextPort[0])
        self.transport = StringTransport(peerAddress=address)
        clock = factory.clock
        assert isinstance(clock, Clock)
        self.clock: Clock = clock
        site = makeSite(factory)
        channel = site.buildProtocol(address)
        assert channel is not None
        channel.makeConnection(self.transport)
        if headers is None:
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            headers = [
                "GET /ws HTTP/1.1",
                "Host: chat.example:8080",
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13",
            ]
            if origin is not None:
                headers.append(f"Origin: {origin}")
        channel.dataReceived(("\r\n".join(headers) + "\r\n\r\n").encode("ascii"))
        self.clock.advance(0)
        response = self.transport.value()
        head, _, rest = response.partition(b"\r\n\r\n")
        self.head: bytes = head
        self.status: int = int(head.split(b" ")[1]) if head else 0
        self.transport.clear()
        self._pending: bytes = rest
        # Once opened, the connection is the session's (the HTTP channel handed it over).
        protocol = getattr(self.transport, "protocol", None)
        self.protocol: WebSession = protocol if isinstance(protocol, WebSession) else None  # type: ignore[assignment]

    def sendRaw(self, data: bytes) -> None:
        """Bytes on the wire, as the client would send them in one turn of the reactor."""
        self.protocol.dataReceived(data)
        self.clock.advance(0)

    def send(self, message: Any) -> None:
        """One JSON message in a text frame."""
        self.sendRaw(clientFrame(json.dumps(message).encode("utf-8")))

    def frames(self) -> list[tuple[int, bytes]]:
        """Every frame the server sent since the last call."""
        data = self._pending + self.transport.value()
        self._pending = b""
        self.transport.clear()
        return serverFrames(data)

    def messages(self) -> list[dict[str, Any]]:
        """The JSON messages the server sent since the last call."""
        return [json.loads(payload) for opcode, payload in self.frames() if opcode == 0x1]

    def types(self) -> list[str]:
        return [message["type"] for message in self.messages()]

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)


class WebTestCase(SynchronousTestCase):
    """A hub, the two doors on it (sharing admission and outbox), and clients of both."""

    limits = Limits(nameTimeout=30)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.hub = Hub(self.clock)
        self.admission = Admission(self.clock, self.limits)
        self.outbox = Outbox(self.clock)
        # No pings but in the tests of them (KeepAliveTests): the others advance the clock
        # by minutes, with members who send nothing.
        self.factory = WebFactory(self.hub, self.limits, self.admission, self.outbox, pingInterval=0)
        self.line = ChatFactory(
            self.hub, self.limits, admission=self.admission, outbox=self.outbox
        )

    def connect(self, origin: str | None = "http://chat.example:8080") -> WebClient:
        client = WebClient(self.factory, origin)
        [hello] = client.messages()
        self.assertEqual(hello["type"], "hello")
        return client

    def join(self, nick: str) -> WebClient:
        client = self.connect()
        client.send({"type": "name", "nick": nick})
        self.assertEqual(client.types(), ["welcome", "room"])
        return client


class HandshakeTests(WebTestCase):
    """Hello, naming, and who may connect."""

    def test_hello(self) -> None:
        """The first message says the protocol version and the limits that apply."""
        client = WebClient(self.factory)
        self.assertEqual(client.status, 101)
        [hello] = client.messages()
        self.assertEqual(
            hello,
            {
                "type": "hello",
                "version": 1,
                "server": "chatsvc",
                "limits": {
                    "lineBytes": 4096,
                    "floodRate": 5.0,
                    "floodBurst": 20,
                    "historyPage": HISTORY_PAGE,
                    "frameBytes": MAX_FRAME_BYTES,
                    "nameTimeout": 30,
                },
            },
        )
        self.assertEqual(self.admission.connectionCount, 1)

    def test_named(self) -> None:
        """A good nickname: welcome, then the lobby as a newcomer is shown it."""
        bob = self.join("Bob")
        alice = self.connect()
        alice.send({"type": "name", "nick": " Alice ", "label": "n1"})
        welcome, room = alice.messages()
        self.assertEqual(welcome, {"type": "welcome", "nick": "Alice", "account": False, "label": "n1"})
        self.assertEqual(
            room,
            {
                "type": "room",
                "room": "lobby",
                "topic": None,
                "count": 2,
                "members": ["Alice", "Bob"],
                "roles": {},
                "away": {},
                "settings": {
                    "private": False,
                    "moderated": False,
                    "topiclock": False,
                    "registered": False,
                },
                "history": [],
                "more": False,
            },
        )
        [joined] = bob.messages()
        self.assertEqual((joined["type"], joined["nick"], joined["room"]), ("joined", "Alice", "lobby"))
        self.assertTrue(joined["id"].isdigit())
        self.assertEqual(joined["time"], "2027-01-15T08:00:00.000Z")

    def test_refusedNicknames(self) -> None:
        """Refused nicknames get the line door's reasons; the client may try again."""
        self.join("alice")
        client = self.connect()
        client.send({"type": "name", "nick": "ALICE"})
        client.send({"type": "name", "nick": "two words"})
        self.assertEqual(
            client.messages(),
            [
                {"type": "error", "for": "name", "message": "nickname 'ALICE' is already in use"},
                {"type": "error", "for": "name", "message": "a nickname may not contain spaces"},
            ],
        )
        client.send({"type": "name", "nick": "Bob"})
        self.assertEqual(client.types(), ["welcome", "room"])

    def test_nothingBeforeNaming(self) -> None:
        """Before a nickname, every other message is refused."""
        client = self.connect()
        client.send({"type": "say", "room": "lobby", "text": "hi"})
        self.assertEqual(
            client.messages(),
            [{"type": "error", "for": "say", "message": "choose a nickname first"}],
        )

    def test_foreignOriginRefused(self) -> None:
        """A page of another origin cannot open the WebSocket (cross-site hijacking)."""
        client = WebClient(self.factory, origin="https://evil.example")
        self.assertEqual(client.status, 403)
        self.assertEqual(self.admission.connectionCount, 0)

    def test_originsAllowed(self) -> None:
        """The page's own origin, an origin named by the operator, and none at all (no browser)."""
        self.factory.origins = frozenset({"https://chat.example.org"})
        for origin in ("http://chat.example:8080", "https://chat.example.org", None):
            self.assertEqual(WebClient(self.factory, origin=origin).status, 101, origin)

    def test_nameTimeout(self) -> None:
        """No nickname in time: told why, and closed."""
        client = self.connect()
        self.clock.advance(30)
        frames = client.frames()
        self.assertEqual(
            json.loads(frames[0][1]), {"type": "bye", "reason": "Disconnected: no nickname within 30 seconds"}
        )
        self.assertEqual(frames[1], (0x8, struct.pack("!H", 1000)))
        self.assertTrue(client.closing)

    def test_overTheCap(self) -> None:
        """Over the connection cap (counted with the line door's), bye and 1013."""
        self.admission.limits = Limits(maxConnections=1)
        LineClient(self.line)
        client = WebClient(self.factory)
        frames = client.frames()
        self.assertEqual(json.loads(frames[0][1])["type"], "bye")
        self.assertEqual(frames[1], (0x8, struct.pack("!H", 1013)))
        self.assertTrue(client.closing)


class ChatTests(WebTestCase):
    """Talking, across both doors."""

    def test_sayEchoedWithCid(self) -> None:
        """The sender gets its own line with its cid; the others get it without."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.messages()
        alice.send({"type": "say", "room": "lobby", "text": "hi <b>bob</b>", "cid": "c1"})
        [own] = alice.messages()
        [seen] = bob.messages()
        self.assertEqual(own.pop("cid"), "c1")
        self.assertEqual(own, seen)
        self.assertEqual((seen["type"], seen["nick"], seen["text"]), ("said", "Alice", "hi <b>bob</b>"))

    def test_cidMakesResendHarmless(self) -> None:
        """A line sent again with the same cid is said once; the resend gets the original."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.messages()
        alice.send({"type": "say", "room": "lobby", "text": "once", "cid": "c1"})
        [first] = alice.messages()
        alice.send({"type": "say", "room": "lobby", "text": "once", "cid": "c1"})
        [again] = alice.messages()
        self.assertEqual(first, again)
        self.assertEqual(len(bob.messages()), 1)
        self.assertEqual(len(self.hub.defaultRoom.recent), 1)

    def test_withTheLineDoor(self) -> None:
        """A page and a line-door member talk to each other in the same room."""
        web = self.join("Web")
        line = LineClient(self.line)
        line.send("Line\n")
        line.lines()
        [joined] = web.messages()
        self.assertEqual(joined["nick"], "Line")
        line.send("hello from netcat\n")
        [said] = web.messages()
        self.assertEqual((said["nick"], said["text"]), ("Line", "hello from netcat"))
        web.send({"type": "act", "room": "lobby", "text": "waves"})
        self.assertEqual(line.lines(), ["* Web waves"])

    def test_controlCharactersMadeVisible(self) -> None:
        """Bidi overrides and control characters arrive made visible, as on the line door."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send({"type": "say", "room": "lobby", "text": "a\u202eb\x1b[2Jc"})
        [said] = bob.messages()
        self.assertNotIn("\u202e", said["text"])
        self.assertNotIn("\x1b", said["text"])

    def test_joinPartAndRoomList(self) -> None:
        """Joining shows the room; parting is confirmed; rooms and who list what there is."""
        alice = self.join("Alice")
        alice.send({"type": "join", "room": "games", "label": "j"})
        [room] = alice.messages()
        self.assertEqual((room["type"], room["room"], room["label"]), ("room", "games", "j"))
        alice.send({"type": "topic", "room": "games", "topic": "Chess"})
        [topic] = alice.messages()
        self.assertEqual((topic["type"], topic["topic"]), ("topic", "Chess"))
        alice.send({"type": "rooms"})
        [rooms] = alice.messages()
        self.assertEqual(
            rooms["rooms"],
            [{"room": "games", "count": 1, "topic": "Chess"}, {"room": "lobby", "count": 1, "topic": None}],
        )
        alice.send({"type": "who", "room": "games"})
        self.assertEqual(alice.messages(), [{"type": "who", "room": "games", "members": ["Alice"], "roles": {}, "away": {}}])
        alice.send({"type": "part", "room": "games"})
        self.assertEqual(alice.messages(), [{"type": "parted", "room": "games"}])

    def test_privateMessage(self) -> None:
        """A whisper reaches its recipient, and the sender gets its copy."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.messages()
        alice.send({"type": "msg", "to": "bob", "text": "psst"})
        [copy] = alice.messages()
        [whisper] = bob.messages()
        self.assertEqual(copy, whisper)
        self.assertEqual((whisper["from"], whisper["to"], whisper["text"]), ("Alice", "Bob", "psst"))

    def test_privateMessageOnce(self) -> None:
        """A private message resent with its cid reaches its recipient once."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.messages()
        for _ in range(2):
            alice.send({"type": "msg", "to": "Bob", "text": "psst", "cid": "d1"})
        first, again = alice.messages()
        self.assertEqual(first, again)
        self.assertEqual(first["cid"], "d1")
        self.assertEqual(len(bob.messages()), 1)

    def test_rename(self) -> None:
        """A rename reaches the member and those sharing a room with it."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.messages()
        alice.send({"type": "nick", "nick": "Alicia"})
        for client in (alice, bob):
            [renamed] = client.messages()
            self.assertEqual((renamed["old"], renamed["new"]), ("Alice", "Alicia"))

    def test_quit(self) -> None:
        """Quitting: bye, a normal close, and the others see the leave."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.messages()
        alice.send({"type": "quit", "reason": "dinner"})
        frames = alice.frames()
        self.assertEqual(json.loads(frames[0][1]), {"type": "bye", "reason": "Goodbye, Alice!"})
        self.assertEqual(frames[1], (0x8, struct.pack("!H", 1000)))
        [left] = bob.messages()
        self.assertEqual((left["type"], left["reason"]), ("left", "dinner"))

    def test_floodDelayedNotDropped(self) -> None:
        """Past the burst, messages are delayed (the peer told once), never dropped."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.messages()
        alice.sendRaw(
            b"".join(
                clientFrame(json.dumps({"type": "say", "room": "lobby", "text": str(n)}).encode())
                for n in range(30)
            )
        )
        self.assertEqual(len(bob.messages()), 20)
        self.assertIn("notice", [message["type"] for message in alice.messages()])
        self.clock.advance(2.0)
        self.assertEqual([message["text"] for message in bob.messages()], [str(n) for n in range(20, 30)])


class HistoryTests(WebTestCase):
    """History pages by id, and coming back after a reconnection."""

    def setUp(self) -> None:
        super().setUp()
        self.hub.restore(
            {
                "lobby": [
                    StoredMessage("lobby", "lobby", 1_700_000_000 + n, "Old", f"m{n}", False, id=1000 + n)
                    for n in range(80)
                ]
            }
        )

    def test_joinShowsLatestPage(self) -> None:
        """Joining shows the last page of messages, and says older ones exist."""
        client = self.connect()
        client.send({"type": "name", "nick": "Alice"})
        _, room = client.messages()
        self.assertEqual([m["text"] for m in room["history"]], [f"m{n}" for n in range(30, 80)])
        self.assertTrue(room["more"])
        self.assertEqual(room["history"][0], {"id": "1030", "time": formatTime(1_700_000_030), "nick": "Old", "text": "m30", "action": False})

    def test_pageBackToTheBeginning(self) -> None:
        """Pages before the oldest shown reach the beginning, where more is false."""
        alice = self.join("Alice")
        alice.send({"type": "history", "room": "lobby", "before": "1030", "limit": 20})
        [page] = alice.messages()
        self.assertEqual([m["id"] for m in page["messages"]], [str(1000 + n) for n in range(10, 30)])
        self.assertTrue(page["more"])
        alice.send({"type": "history", "room": "lobby", "before": "1010"})
        [last] = alice.messages()
        self.assertEqual(len(last["messages"]), 10)
        self.assertFalse(last["more"])

    def test_nameAfter(self) -> None:
        """Naming with after (back after a reconnection): the lobby shows what came since."""
        client = self.connect()
        client.send({"type": "name", "nick": "Alice", "after": "1075"})
        _, room = client.messages()
        self.assertEqual([m["id"] for m in room["history"]], ["1076", "1077", "1078", "1079"])
        self.assertFalse(room["more"])

    def test_resumeAfter(self) -> None:
        """Joining with after gives what was said since, page by page: nothing missed or twice."""
        alice = self.join("Alice")
        alice.send({"type": "join", "room": "lobby", "after": "1009"})
        [room] = alice.messages()
        self.assertEqual(room["history"][0]["id"], "1010")
        self.assertEqual(len(room["history"]), HISTORY_PAGE)
        self.assertTrue(room["more"])
        last = room["history"][-1]["id"]
        alice.send({"type": "history", "room": "lobby", "after": last})
        [rest] = alice.messages()
        self.assertEqual([m["id"] for m in rest["messages"]], [str(1000 + n) for n in range(60, 80)])
        self.assertFalse(rest["more"])


class BadInputTests(WebTestCase):
    """Every kind of bad input: a clear error, and the connection goes on."""

    def assertError(self, client: WebClient, data: bytes, message: str) -> None:
        client.sendRaw(data)
        [error] = client.messages()
        self.assertEqual(error["type"], "error")
        self.assertIn(message, error["message"])
        self.assertFalse(client.closing)

    def test_errors(self) -> None:
        """Malformed JSON, non-objects, wrong types, binary frames: each one error."""
        alice = self.join("Alice")
        self.assertError(alice, clientFrame(b"{not json"), "not JSON")
        self.assertError(alice, clientFrame(b"[1, 2]"), "must be a JSON object")
        self.assertError(alice, clientFrame(b'{"type": 5}'), "string 'type'")
        self.assertError(alice, clientFrame(b'{"type": "say", "room": "lobby", "text": 5}'), "'text' must be a string")
        self.assertError(alice, clientFrame(b'{"type": "say", "room": "nowhere", "text": "x"}'), "no such room")
        self.assertError(alice, clientFrame(b'{"type": "history", "room": "lobby", "before": "x"}'), "must be an id")
        self.assertError(alice, clientFrame(b'{"type": "history", "room": "lobby", "limit": 1000}'), "'limit'")
        self.assertError(alice, clientFrame(b"\x00\x01", opcode=0x2), "binary frames")
        alice.send({"type": "say", "room": "lobby", "text": "still here"})
        self.assertEqual(alice.types(), ["said"])

    def test_deeplyNested(self) -> None:
        """JSON nested deeper than the parser goes is an error, not a fault of the server."""
        alice = self.join("Alice")
        self.assertError(alice, clientFrame(b"[" * 30000 + b"]" * 30000), "nested too deeply")

    def test_sendQueueBound(self) -> None:
        """A web member who stops reading is cut at the send-queue bound; the others go on."""
        self.limits = Limits(maxSendQueue=65536)
        self.factory.limits = self.limits
        alice, bob, carol = self.join("Alice"), self.join("Bob"), self.join("Carol")
        carol.protocol.sendBlocked()  # its transport says it is full, and stays so
        for n in range(200):
            alice.send({"type": "say", "room": "lobby", "text": f"{n:04d} " + "x" * 500})
            self.clock.advance(1)
        self.assertTrue(carol.transport.disconnected)
        seen = bob.messages()
        self.assertEqual(len([m for m in seen if m["type"] == "said"]), 200)
        self.assertIn(
            ("left", "Carol", "send queue exceeded"),
            [(m["type"], m.get("nick"), m.get("reason")) for m in seen],
        )

    def test_unknownIgnored(self) -> None:
        """Unknown types and fields are ignored."""
        alice = self.join("Alice")
        alice.send({"type": "teleport", "to": "mars"})
        alice.send({"type": "say", "room": "lobby", "text": "x", "colour": "red"})
        self.assertEqual(alice.types(), ["said"])

    def test_tooLongText(self) -> None:
        """Text over the line limit is refused with the limit named."""
        alice = self.join("Alice")
        self.assertError(
            alice,
            clientFrame(json.dumps({"type": "say", "room": "lobby", "text": "x" * 5000}).encode()),
            "over 4096 bytes",
        )

    def test_frameTooBig(self) -> None:
        """A frame past the bound is not read: the connection is closed with 1009."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.sendRaw(clientFrame(b"x" * (MAX_FRAME_BYTES + 1)))
        closes = [payload for opcode, payload in alice.frames() if opcode == 0x8]
        self.assertEqual(struct.unpack("!H", closes[0][:2])[0], 1009)
        alice.protocol.connectionLost(Failure(ConnectionDone()))
        [left] = bob.messages()
        self.assertEqual((left["type"], left["nick"]), ("left", "Alice"))


class StoredHistoryTests(WebTestCase):
    """History older than the room keeps at hand comes from the store, page by page."""

    def setUp(self) -> None:
        super().setUp()
        store = PagingStore(200)
        self.hub = Hub(self.clock, store, historyKept=20)
        self.hub.restore({"lobby": store.messages[-20:]})
        self.factory = WebFactory(self.hub, self.limits, self.admission, self.outbox, pingInterval=0)

    def test_scrollToTheBeginning(self) -> None:
        """Paging back with before from the oldest shown reaches message 1, and no more."""
        client = self.connect()
        client.send({"type": "name", "nick": "Alice"})
        _, room = client.messages()
        ids = [int(m["id"]) for m in room["history"]]
        self.assertEqual(ids, list(range(151, 201)))  # 20 at hand, 30 from the store
        self.assertTrue(room["more"])
        seen = ids
        while True:
            client.send({"type": "history", "room": "lobby", "before": str(seen[0])})
            [page] = client.messages()
            seen = [int(m["id"]) for m in page["messages"]] + seen
            if not page["more"]:
                break
        self.assertEqual(seen, list(range(1, 201)))


class FramingTests(WebTestCase):
    """What is checked of the frames themselves."""

    def test_invalidUTF8(self) -> None:
        """A text frame that is not UTF-8 closes the connection with 1007."""
        alice = self.join("Alice")
        alice.sendRaw(clientFrame(b'{"type": "say", "text": "\xff"}'))
        closes = [payload for opcode, payload in alice.frames() if opcode == 0x8]
        self.assertEqual(struct.unpack("!H", closes[0][:2])[0], 1007)

    def test_fragmentedMessage(self) -> None:
        """A message sent in several frames is handled once it is whole."""
        alice, bob = self.join("Alice"), self.join("Bob")
        payload = json.dumps({"type": "say", "room": "lobby", "text": "in parts"}).encode()
        alice.sendRaw(clientFrame(payload[:10], fin=False))
        self.assertEqual(bob.messages(), [])
        alice.sendRaw(clientFrame(payload[10:], opcode=0x0))
        [said] = bob.messages()
        self.assertEqual(said["text"], "in parts")

    def test_pingAnswered(self) -> None:
        """A client's ping gets its pong."""
        alice = self.join("Alice")
        alice.sendRaw(clientFrame(b"are you there", opcode=0x9))
        self.assertIn((0xA, b"are you there"), alice.frames())


class UnreadableHistoryTests(WebTestCase):
    """A store that cannot be read does not keep anyone out of a room."""

    def setUp(self) -> None:
        super().setUp()

        class Broken(PagingStore):
            def page(self, *args: object, **kwargs: object) -> Deferred[list[StoredMessage]]:
                return fail(OSError("disk gone"))

        store = Broken(100)
        self.hub = Hub(self.clock, store, historyKept=20)
        self.hub.restore({"lobby": store.messages[-20:]})
        self.factory = WebFactory(self.hub, self.limits, self.admission, self.outbox, pingInterval=0)

    def test_joinedWithoutHistory(self) -> None:
        """The member is told why, and shown the room without its history."""
        client = self.connect()
        client.send({"type": "name", "nick": "Alice"})
        welcome, error, room = client.messages()
        self.assertEqual(
            (error["type"], error["for"], error["message"]),
            ("error", "join", "the history cannot be read just now; try again"),
        )
        self.assertEqual((room["type"], room["history"], room["more"]), ("room", [], True))
        self.assertEqual(room["members"], ["Alice"])
        self.flushLoggedErrors()
        client.send({"type": "history", "room": "lobby", "before": "50"})
        [refused] = client.messages()
        self.assertEqual((refused["type"], refused["for"]), ("error", "history"))


class KeepAliveTests(WebTestCase):
    """A browser whose network went away is noticed by its silence, and leaves."""

    def setUp(self) -> None:
        super().setUp()
        self.factory = WebFactory(self.hub, self.limits, self.admission, self.outbox, pingInterval=20)

    def test_silentMemberLeaves(self) -> None:
        """Pinged after a silent interval; silent through another, it leaves: 'ping timeout'."""
        alice, bob = self.join("Alice"), self.join("Bob")
        seen = []
        for _ in range(3):
            self.clock.advance(20)
            frames = alice.frames()
            seen += [json.loads(payload) for opcode, payload in frames if opcode == 0x1]
            if (0x9, b"") in frames:
                alice.sendRaw(clientFrame(b"", opcode=0xA))
        self.assertTrue(bob.transport.disconnected)
        self.assertFalse(alice.transport.disconnected)
        bob.protocol.connectionLost(Failure(ConnectionDone()))  # what the reactor does next
        left = [m for m in seen if m["type"] == "left"]
        self.assertEqual([(m["nick"], m["reason"]) for m in left], [("Bob", "ping timeout")])
        self.assertEqual(self.admission.connectionCount, 1)
        self.assertEqual(self.hub.nicks(self.hub.defaultRoom), ["Alice"])
