"""
The line protocol: chatsvc over a plain TCP (or TLS, or UNIX) stream, one UTF-8 line at a time.

docs/protocol.md is the specification; in short:

    S: GET_NAME                      C: <nickname>
    S: <nick> connected to server!   S: *** Members (2): Alice, Bob
    C: hello                         others see  Alice: hello
    C: /me waves                     others see  * Alice waves
    C: /msg Bob psst                 Bob sees    *Alice* psst     Alice sees  -> *Bob* psst
    C: /nick Alicia                  all see     *** Alice is now known as Alicia
    C: q | exit | close | disconnect | /quit [reason]
    S: *** Goodbye, Alice!           others see  Alice left!   (or  Alice left! (reason))

Errors are one line, C{*** Error: <message>}, to the member who caused them; the connection stays.

This module only frames, decodes, parses and renders; every chat rule is in L{chatsvc.core}.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import Enum, auto

import structlog
from twisted.internet.interfaces import IAddress, ITCPTransport
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatsvc.core import (
    QUIT_WORDS,
    Acted,
    ChatError,
    Event,
    IMember,
    Joined,
    Left,
    Renamed,
    Room,
    Said,
    Whispered,
)
from chatsvc.text import neutralize

__all__ = ["ChatFactory", "ChatProtocol", "DEFAULT_MAX_LINE_LENGTH", "renderEvent"]

DEFAULT_MAX_LINE_LENGTH = 4096
"""The longest line accepted from a client, in bytes, without its line ending."""

GET_NAME = "GET_NAME"

_log = structlog.get_logger("chatsvc.protocol")

HELP = [
    "Commands:",
    "  /who                list the members of the room",
    "  /nick NEWNAME       change your nickname",
    "  /me ACTION          send an action: * you ACTION",
    "  /msg NICK TEXT      send TEXT to NICK alone",
    "  /say TEXT           send TEXT as it is, even if it starts with / or is a quit word",
    "  //TEXT              send /TEXT",
    "  /quit [REASON]      leave (q, exit, close and disconnect leave too)",
    "  /help               this list",
]


@functools.lru_cache(maxsize=1024)
def renderEvent(event: Event) -> bytes:
    """
    The line (with its ending) that shows C{event} to a member. Cached, so a message going to a
    whole room is rendered and encoded once, not once per recipient.
    """
    if isinstance(event, Said):
        text = f"{event.nick}: {event.text}"
    elif isinstance(event, Joined):
        text = f"{event.nick} joined!"
    elif isinstance(event, Left):
        text = f"{event.nick} left!" if event.reason is None else f"{event.nick} left! ({event.reason})"
    elif isinstance(event, Acted):
        text = f"* {event.nick} {event.action}"
    elif isinstance(event, Renamed):
        text = f"*** {event.old} is now known as {event.new}"
    else:
        text = f"*{event.sender}* {event.text}"
    return text.encode("utf-8") + b"\r\n"


def describeAddress(address: IAddress) -> str:
    """A short, readable form of a connection's address: C{host:port}, or a socket path."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    return str(address)


def _notConnected(*args: object) -> None:
    raise RuntimeError("not connected")


class _State(Enum):
    AWAITING_NAME = auto()
    CHATTING = auto()
    CLOSING = auto()


@implementer(IMember)
class ChatProtocol(LineReceiver):
    """
    One client connection: turns lines into calls on the room, and room events into lines.
    """

    delimiter = b"\n"
    factory: ChatFactory

    def __init__(self) -> None:
        self._state = _State.AWAITING_NAME
        self.nick: str | None = None
        self.peer = "-"
        # True while the rest of an over-long line is still arriving and must be skipped.
        self._discarding = False
        self._leftover = b""
        self._write: Callable[[bytes], object] = _notConnected
        self._loseConnection: Callable[[], object] = _notConnected

    # Connection life cycle

    def connectionMade(self) -> None:
        """Greet the newcomer with C{GET_NAME}."""
        if ITCPTransport.providedBy(self.transport):
            # Chat is many small writes that must go out now: without this, Nagle's algorithm
            # meeting delayed ACKs adds tens of milliseconds to each line.
            self.transport.setTcpNoDelay(True)
        transport = self.transport
        assert transport is not None
        # Bound once: writing is the hot path of every broadcast.
        self._write = transport.write
        self._loseConnection = transport.loseConnection
        self.peer = describeAddress(transport.getPeer())
        self.MAX_LENGTH = self.factory.maxLineLength + 1  # room for a "\r" before the "\n"
        self.factory.connectionOpened(self)
        self.sendText(GET_NAME)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """A dropped connection is a leave too, announced once."""
        self._state = _State.CLOSING
        self._leave("connection lost")
        self.factory.connectionClosed(self)

    # Framing: lines, over-long lines, decoding

    def dataReceived(self, data: bytes) -> None:
        """
        Feed C{data} to the line parser, skipping the rest of any over-long line and going on
        with the lines after it (L{LineReceiver} alone would stop there).
        """
        while data:
            if self._discarding:
                end = data.find(self.delimiter)
                if end == -1:
                    return
                self._discarding = False
                data = data[end + len(self.delimiter) :]
            super().dataReceived(data)
            data, self._leftover = self._leftover, b""
            if self._state is _State.CLOSING:
                return

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        Refuse an over-long line but keep the connection: skip to the end of that line, and keep
        what follows it for L{dataReceived}.
        """
        _, delimiter, rest = line.partition(self.delimiter)
        if delimiter:
            self._leftover = rest
        else:
            self._discarding = True
        self._lineTooLong()

    def _lineTooLong(self) -> None:
        self._refuse(f"line too long (over {self.factory.maxLineLength} bytes); it was discarded")

    def _refuse(self, message: str) -> None:
        # One place for every refused line: the error, and the question again if it was the
        # answer to GET_NAME.
        self.sendError(message)
        if self._state is _State.AWAITING_NAME:
            self.sendText(GET_NAME)

    def lineReceived(self, line: bytes) -> None:
        """Decode one line and hand it to the handler for the connection's state."""
        if self._state is _State.CLOSING:
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.factory.maxLineLength:
            self._lineTooLong()
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse("line is not valid UTF-8; it was discarded")
            return
        if not text.strip(" \t"):
            return
        try:
            if self._state is _State.AWAITING_NAME:
                self._nameReceived(text)
            else:
                self._chatLineReceived(text)
        except ChatError as error:
            self._refuse(str(error))

    # Writing

    def sendText(self, text: str) -> None:
        """Send one line of text."""
        self._write(text.encode("utf-8") + b"\r\n")

    def sendNotice(self, text: str) -> None:
        """Send a server notice: C{*** text}."""
        self.sendText("*** " + text)

    def sendError(self, message: str) -> None:
        """Tell this member (only) that their last line was refused."""
        self.sendText("*** Error: " + message)

    def deliver(self, event: Event) -> None:
        """Write a room event to this member."""
        self._write(renderEvent(event))

    # The nickname

    def _nameReceived(self, text: str) -> None:
        word = text.strip()
        if word in QUIT_WORDS or word.split(" ", 1)[0].lower() == "/quit":
            self._goodbye("Goodbye!")
            return
        room = self.factory.room
        self.nick = room.join(self, text)
        self._state = _State.CHATTING
        self.sendText(f"{self.nick} connected to server!")
        self._sendMembers()
        self.sendNotice("Type /help for commands, /quit to leave.")
        _log.info(
            "member_joined",
            nick=self.nick,
            peer=self.peer,
            members=len(room),
            connections=self.factory.connectionCount,
        )

    # Chat lines and commands

    def _chatLineReceived(self, text: str) -> None:
        if text.strip() in QUIT_WORDS:
            self._quit(None)
        elif text.startswith("//"):
            self.factory.room.say(self, text[1:])
        elif text.startswith("/"):
            name, _, argument = text[1:].partition(" ")
            command = getattr(self, "command_" + name.lower(), None)
            if command is None:
                raise ChatError(f"unknown command /{neutralize(name)} (try /help)")
            command(argument.strip())
        else:
            self.factory.room.say(self, text)

    def command_help(self, argument: str) -> None:
        """C{/help}: list the commands."""
        for line in HELP:
            self.sendNotice(line)

    def command_who(self, argument: str) -> None:
        """C{/who}: list the members of the room."""
        self._sendMembers()

    def command_nick(self, argument: str) -> None:
        """C{/nick NEWNAME}: change nickname."""
        if not argument:
            raise ChatError("usage: /nick NEWNAME")
        old = self.nick
        self.nick = self.factory.room.rename(self, argument)
        _log.info(
            "member_renamed",
            old=old,
            nick=self.nick,
            peer=self.peer,
            members=len(self.factory.room),
            connections=self.factory.connectionCount,
        )

    def command_me(self, argument: str) -> None:
        """C{/me ACTION}: an action."""
        if not argument:
            raise ChatError("usage: /me ACTION")
        self.factory.room.act(self, argument)

    def command_msg(self, argument: str) -> None:
        """C{/msg NICK TEXT}: a private message."""
        recipient, _, text = argument.partition(" ")
        text = text.lstrip()
        if not recipient or not text:
            raise ChatError("usage: /msg NICK TEXT")
        sent = self.factory.room.whisper(self, recipient, text)
        self.sendText(f"-> *{sent.recipient}* {sent.text}")

    def command_say(self, argument: str) -> None:
        """C{/say TEXT}: send TEXT as chat, whatever it looks like."""
        if not argument:
            raise ChatError("usage: /say TEXT")
        self.factory.room.say(self, argument)

    def command_quit(self, argument: str) -> None:
        """C{/quit [REASON]}: leave."""
        self._quit(argument or None)

    # Leaving

    def _sendMembers(self) -> None:
        nicks = self.factory.room.nicks()
        self.sendNotice(f"Members ({len(nicks)}): {', '.join(nicks)}")

    def _quit(self, reason: str | None) -> None:
        self._goodbye(f"Goodbye, {self.nick}!")
        self._leave(reason, quitting=True)

    def _goodbye(self, notice: str) -> None:
        self.sendNotice(notice)
        self._state = _State.CLOSING
        self._loseConnection()

    def disconnect(self, reason: str) -> None:
        """Close this connection for the server's own C{reason}, telling the member why."""
        if self._state is _State.CLOSING:
            return
        self._goodbye(f"Disconnected: {reason}")
        self._leave(reason)

    def _leave(self, reason: str | None, quitting: bool = False) -> None:
        room = self.factory.room
        if room.leave(self, reason):
            _log.info(
                "member_left",
                nick=self.nick,
                peer=self.peer,
                reason=reason,
                quit=quitting,
                members=len(room),
                connections=self.factory.connectionCount,
            )


class ChatFactory(ServerFactory):
    """
    Holds what all connections share: the room, the line limit, and the open connections.
    """

    protocol = ChatProtocol  # type: ignore[assignment]
    noisy = False  # connections and members are logged by chatsvc's own events

    def __init__(self, room: Room, maxLineLength: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        """
        @param room: the room every connection joins.
        @param maxLineLength: the longest line accepted, in bytes.
        """
        self.room = room
        self.maxLineLength = maxLineLength
        self.connections: set[ChatProtocol] = set()

    @property
    def connectionCount(self) -> int:
        """The number of open connections, named or not."""
        return len(self.connections)

    def connectionOpened(self, protocol: ChatProtocol) -> None:
        """Count a new connection and log it."""
        self.connections.add(protocol)
        _log.info("connection_opened", peer=protocol.peer, connections=self.connectionCount)

    def connectionClosed(self, protocol: ChatProtocol) -> None:
        """Forget a closed connection and log it."""
        self.connections.discard(protocol)
        _log.info(
            "connection_closed",
            peer=protocol.peer,
            nick=protocol.nick,
            connections=self.connectionCount,
        )
