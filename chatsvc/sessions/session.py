"""
One connection of any door, everything about it but its wire format: its life cycle (being named,
then talking, then closing), the name timeout, the flood gate, the send-queue guard, writing
straight through to the socket, long replies written at the pace the peer reads them, keepalive,
and closing within a grace period.

A door's protocol builds on L{Session} (the line door's L{chatsvc.line.protocol.ChatProtocol}
does) and gives it what only the door knows: how to stop and start reading its framing
(L{Session._stopReading}), what to do with a line the flood gate held (L{Session._handleHeld}),
how to tell the peer it is being slowed down (L{Session._tellDelayed}), what its name timeout is
called (L{Session._nameTimedOut}), and how the member leaves the hub (L{Session._leave}).
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from enum import Enum, auto
from typing import TypeVar

import structlog
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
    ITransport,
)
from twisted.internet.defer import Deferred
from twisted.internet.tcp import Connection as TCPConnection
from twisted.python.failure import Failure
from zope.interface import implementer

from chatsvc.chat import ChatError, TokenBucket
from chatsvc.sessions.addresses import addressOf, describeAddress
from chatsvc.sessions.admission import Admission
from chatsvc.sessions.interfaces import ISession
from chatsvc.sessions.limits import Limits
from chatsvc.sessions.outbox import Outbox

__all__ = [
    "REPLY_CHUNK",
    "REPLY_TOKEN_BYTES",
    "Session",
    "State",
    "enableKeepAlive",
    "unsentBytes",
]

REPLY_CHUNK = 16 * 1024
"""Bytes of a long reply (history, member and room lists) written at a time; the next part is
written once the member has read enough of what waits (see L{Session.reply})."""

REPLY_TOKEN_BYTES = 8 * 1024
"""A reply costs the member who asked for it one line of its flood budget for every this many
bytes, so that asking for long replies over and over is held to the flood rate like talking."""

T = TypeVar("T")

# The namespace these events have always been logged under.
_log = structlog.get_logger("chatsvc.protocol")


class State(Enum):
    """Where a session is in its life."""

    AWAITING_NAME = auto()
    CHATTING = auto()
    CLOSING = auto()


def _notConnected(*args: object) -> None:
    raise RuntimeError("not connected")


def _discard(data: bytes) -> None:
    """Where writes go once a connection is being cut."""


def enableKeepAlive(transport: ITCPTransport, idle: int) -> None:
    """
    Have the kernel find dead peers: TCP keepalive probes after C{idle} seconds of silence, every
    10 seconds, 6 times; and data left unacknowledged for C{idle} + 60 seconds drops the
    connection. Clients need nothing for this: their kernel answers the probes.
    """
    transport.setTcpKeepAlive(True)
    # The socket itself: a TCP transport's, or (TLS) the one beneath the protocol wrapper,
    # which hands attributes on from its own transport; whereas getHandle() there is the
    # OpenSSL connection. An in-memory transport has none: nothing more to tune.
    handle = getattr(transport, "socket", None)
    if not isinstance(handle, socket.socket):
        return
    options = [
        ("TCP_KEEPIDLE", idle),
        ("TCP_KEEPINTVL", 10),
        ("TCP_KEEPCNT", 6),
        ("TCP_USER_TIMEOUT", (idle + 60) * 1000),
    ]
    for name, value in options:
        option = getattr(socket, name, None)
        if option is not None:  # Linux has them all; elsewhere, keepalive's own defaults
            handle.setsockopt(socket.IPPROTO_TCP, option, value)


def unsentBytes(transport: object) -> int | None:
    """
    How many bytes written to C{transport} it still holds, not yet handed to the kernel; or
    L{None} if it keeps no buffer this function knows how to measure.

    Twisted's TCP and UNIX transports (L{twisted.internet.abstract.FileDescriptor}) keep what
    the kernel has not taken yet in C{dataBuffer}, of which the first C{offset} bytes are
    already sent, plus C{_tempDataLen} bytes written since their last attempt to send. TLS, and
    any other L{twisted.protocols.policies.ProtocolWrapper}, hands these attributes on from the
    transport beneath it, so there the encrypted bytes waiting are measured.
    """
    try:
        buffered: bytes = transport.dataBuffer  # type: ignore[attr-defined]
        offset: int = transport.offset  # type: ignore[attr-defined]
        pending: int = transport._tempDataLen  # type: ignore[attr-defined]
    except AttributeError:
        return None
    return len(buffered) - offset + pending


@implementer(IPushProducer)
class _SendQueueWatch:
    """
    Registered as the producer of a connection's transport, which pauses it when its write
    buffer passes its own size (64 KiB for Twisted's), and resumes it only once that buffer is
    empty again: the protocol writes the next part of a long reply only then.
    """

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Session) -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol.sendBlocked()

    def resumeProducing(self) -> None:
        self._protocol.sendUnblocked()

    def stopProducing(self) -> None:
        pass


@implementer(ISession)
class Session:
    """
    The door-independent half of a connection (see the module's description). Its attributes
    are slots: a server holds thousands of these.
    """

    __slots__ = (
        "_state",
        "nick",
        "peer",
        "host",
        "_limits",
        "_clock",
        "_admission",
        "_gatherer",
        "_write",
        "_outbox",
        "_blocked",
        "_queuedWhileBlocked",
        "_nameTimer",
        "_floodTimer",
        "_closeTimer",
        "_lastFloodNotice",
        "_held",
        "_bucket",
        "_addressBucket",
        "_replies",
        "_replyBytes",
        "_waiting",
    )

    transport: ITransport | None

    def __init__(self) -> None:
        self._state = State.AWAITING_NAME
        self.nick: str | None = None
        self.peer = "-"
        self.host: str | None = None
        """The address the limits count this connection under (L{addressOf})."""
        self._write: Callable[[bytes], object] = _notConnected
        self._outbox: list[bytes] = []
        self._blocked = False
        self._queuedWhileBlocked = 0
        self._nameTimer: IDelayedCall | None = None
        self._floodTimer: IDelayedCall | None = None
        self._closeTimer: IDelayedCall | None = None
        self._lastFloodNotice: float | None = None
        self._held: object = None
        self._addressBucket: TokenBucket | None = None
        # The parts of long replies still to be written, oldest first (see reply()); made
        # only when a reply has to wait, since an empty deque costs 600 bytes a connection.
        self._replies: deque[Iterator[bytes]] | None = None
        self._replyBytes = 0
        # Whether the connection waits for an answer (see _whenAnswered), and is not read.
        self._waiting = False

    # What the door provides

    def _stopReading(self) -> None:
        """Stop reading, and handling what was read, until L{_startReading}."""
        raise NotImplementedError

    def _startReading(self) -> None:
        """Read, and handle what was read, again."""
        raise NotImplementedError

    def _reading(self) -> bool:
        """Whether the connection is being read (not stopped by L{_stopReading})."""
        raise NotImplementedError

    def _handleHeld(self, held: object) -> None:
        """Handle what the flood gate held back (see L{_hold}), now that it is due."""
        raise NotImplementedError

    def _tellDelayed(self) -> None:
        """Tell the peer, in the door's words, that its lines are being delayed."""
        raise NotImplementedError

    def _nameTimedOut(self) -> None:
        """No nickname came within the name timeout: the door says so and closes."""
        raise NotImplementedError

    def _leave(self, reason: str | None, quitting: bool = False) -> None:
        """The member leaves the hub (once; again is harmless)."""
        raise NotImplementedError

    def disconnect(self, reason: str) -> None:
        """Tell the peer C{reason}, in the door's words, and close (L{_closeWith})."""
        raise NotImplementedError

    # Life cycle

    def _startSession(
        self,
        transport: ITransport,
        limits: Limits,
        clock: IReactorTime,
        admission: Admission,
        outbox: Outbox,
        address: IAddress | None = None,
    ) -> None:
        # Set the connection up: the socket's options, how it is written to, the send-queue
        # watch, who it is from (the transport's peer, unless the door knows better: the
        # client behind a trusted proxy), its flood buckets and name timer; and count it in.
        self._limits = limits
        self._clock = clock
        self._admission = admission
        self._gatherer = outbox
        if ITCPTransport.providedBy(transport):
            # Chat is many small writes that must go out now: without this, Nagle's algorithm
            # meeting delayed ACKs adds tens of milliseconds to each line.
            transport.setTcpNoDelay(True)
            enableKeepAlive(transport, limits.keepAliveIdle)
        # Bound once: writing is the hot path of every broadcast.
        if isinstance(transport, TCPConnection):
            self._write = self._writeThrough
        else:
            self._write = self._writeMeasured
        transport.registerProducer(_SendQueueWatch(self), True)  # type: ignore[attr-defined]
        if address is None:
            address = transport.getPeer()
        self.host = addressOf(address)
        self.peer = describeAddress(address)
        self._bucket = TokenBucket(limits.floodRate, limits.floodBurst, clock.seconds())
        self._addressBucket = admission.addressBucket(self.host)
        self._nameTimer = clock.callLater(limits.nameTimeout, self._nameTimedOut)
        admission.connectionOpened(self)

    def _named(self) -> None:
        # The member has its nickname: no more name timeout, and choosing the name does not
        # eat into its first burst of lines.
        self._state = State.CHATTING
        if self._nameTimer is not None:
            self._nameTimer.cancel()
            self._nameTimer = None
        limits = self._limits
        self._bucket = TokenBucket(limits.floodRate, limits.floodBurst, self._clock.seconds())

    def _endSession(self) -> None:
        # The connection is gone: nothing more is written or timed, the member leaves (once),
        # and the connection is counted out.
        self._state = State.CLOSING
        self._write = _discard
        self._outbox = []
        self._replies = None
        for timer in (self._nameTimer, self._floodTimer, self._closeTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self._nameTimer = self._floodTimer = self._closeTimer = None
        self._leave("connection lost")
        self._admission.connectionClosed(self)

    def _closeWith(self, last: bytes) -> None:
        # The last line, after what was gathered for the member but instead of the rest of
        # any reply still being written; then close, giving the peer --shutdown-grace seconds
        # to take what is unsent (and, over TLS, to answer the close alert) before the
        # connection is cut, so that no closing connection lingers.
        self._replies = None
        self._enqueue(last)
        self.flush()
        self._state = State.CLOSING
        transport = self.transport
        assert transport is not None
        # A registered producer keeps Twisted's TLS layer from ever sending its close alert
        # (it waits for the producer to go), so the connection would stay open; a plain TCP
        # transport closes either way. Nothing more is written to this connection.
        transport.unregisterProducer()  # type: ignore[attr-defined]
        transport.loseConnection()
        self._closeTimer = self._clock.callLater(self._limits.shutdownGrace, self._closeTimedOut)

    def _closeTimedOut(self) -> None:
        self._closeTimer = None
        _log.warning("connection_close_timed_out", peer=self.peer, nick=self.nick)
        self.abort()

    def abort(self) -> None:
        """Cut this connection at once, whatever is still unsent."""
        self._state = State.CLOSING
        self._write = _discard
        self._outbox = []
        self._replies = None
        self.transport.abortConnection()  # type: ignore[union-attr]


    # Flood control: past the burst, lines are delayed (by not reading), never dropped

    def _takeToken(self) -> float:
        # A line costs a token of this connection's bucket and one of its address's, which
        # all the connections from that address share: 0.0 if both could be spent, else how
        # long until both can (and nothing is spent).
        now = self._clock.seconds()
        shared = self._addressBucket
        delay = self._bucket.wait(now)
        if shared is not None:
            delay = max(delay, shared.wait(now))
        if delay:
            return delay
        self._bucket.spend()
        if shared is not None:
            shared.spend()
        return 0.0

    def _charge(self, size: int) -> None:
        # A long reply costs its asker's flood budget by its size: a line for every whole
        # REPLY_TOKEN_BYTES of the replies written since the connection last had none waiting
        # (so a short reply costs nothing beyond the line that asked for it).
        before = self._replyBytes // REPLY_TOKEN_BYTES
        self._replyBytes += size
        tokens = self._replyBytes // REPLY_TOKEN_BYTES - before
        if tokens:
            self._bucket.spend(tokens)
            if self._addressBucket is not None:
                self._addressBucket.spend(tokens)

    def _hold(self, line: object, delay: float) -> None:
        # Keep the line, stop parsing and stop reading the socket until the bucket has a token
        # again: the flooder's further lines wait in its own kernel buffers, at no cost to us.
        self._held = line
        self._stopReading()
        self._admission.floodDelays += 1
        clock = self._clock
        self._floodTimer = clock.callLater(delay, self._floodPauseOver)
        now = clock.seconds()
        if self._lastFloodNotice is None or now - self._lastFloodNotice >= 30:
            self._lastFloodNotice = now
            self._tellDelayed()

    def _floodPauseOver(self) -> None:
        self._floodTimer = None
        if self._state is State.CLOSING:
            return
        delay = self._takeToken()
        if delay:  # not yet, after all
            self._floodTimer = self._clock.callLater(delay, self._floodPauseOver)
            return
        line, self._held = self._held, None
        self._handleHeld(line)
        self._resumeReading()

    def _resumeReading(self) -> None:
        # Read again, unless a held line, an unfinished reply or an answer still to come keeps
        # this connection from reading, or it is closing.
        if (
            not self._reading()
            and self._state is not State.CLOSING
            and self._floodTimer is None
            and not self._replies
            and not self._waiting
        ):
            self._startReading()

    # Waiting for answers: what may take a round trip (claiming a nickname in a cluster)

    def _whenAnswered(
        self,
        answer: Deferred[T],
        handle: Callable[[T], None],
        refused: Callable[[str], None],
        failed: Callable[[BaseException], None],
    ) -> None:
        """
        Call C{handle} with what C{answer} fires with, or C{refused} with the reason if it
        fails with a L{ChatError} (the core's refusal); meanwhile, stop reading, so that what
        the member sends next waits until it has been answered, in the order it was sent. An
        answer given at once (by a server on its own) is handled at once, within the line
        that asked.

        Nothing is handled if the connection closed meanwhile. Any other failure, and what
        C{handle} or C{refused} raise, goes to C{failed}, and reading goes on.
        """
        now = True
        done = False

        def answered(result: T | Failure) -> None:
            nonlocal done
            done = True
            if not now:
                self._waiting = False
                gatherer = self._gatherer
                if not gatherer.gathering:
                    gatherer.gather()
            if self._state is not State.CLOSING:
                try:
                    if not isinstance(result, Failure):
                        handle(result)
                    elif result.check(ChatError) is not None:
                        refused(str(result.value))
                    else:
                        result.raiseException()
                except Exception as error:
                    failed(error)
            if not now:
                self._resumeReading()

        answer.addBoth(answered)
        now = False
        if not done:
            self._waiting = True
            self._stopReading()


    # Writing, and members that do not read

    def _sendReplyLine(self, data: bytes) -> None:
        if self._replies:
            self._replies.append(iter((data,)))
        else:
            self._enqueue(data)

    def reply(self, lines: Iterable[bytes]) -> None:
        """
        Send C{lines} (each with its line ending), which this member asked for, at the pace it
        reads them: L{REPLY_CHUNK} bytes at a time, the next once the transport's buffer has
        room again (L{sendUnblocked}). Meanwhile the connection is not read, so that the member's
        next requests wait in its own socket buffers. A member who does not read thus costs the
        server one chunk and Twisted's buffer at most, however much it asks for; and each chunk
        is charged to its flood budget (L{REPLY_TOKEN_BYTES}).

        What others say meanwhile still reaches the member at once; what the server tells it
        meanwhile (L{_sendReplyLine}) comes after the reply.
        """
        if self._replies:
            self._replies.append(iter(lines))
        else:
            self._replies = deque((iter(lines),))
            self._writeReplies()

    def _writeReplies(self) -> None:
        replies = self._replies
        if replies is None:
            return
        while replies and self._state is not State.CLOSING:
            if self._blocked:
                self._stopReading()  # until the transport's buffer is empty again
                return
            chunk: list[bytes] = []
            size = 0
            while replies and size < REPLY_CHUNK:
                for line in replies[0]:
                    chunk.append(line)
                    size += len(line)
                    if size >= REPLY_CHUNK:
                        break
                else:
                    replies.popleft()
            if chunk:
                self._charge(size)
                self._enqueue(b"".join(chunk))
            if replies and self._outbox:
                # Gathered, to be written with this turn's other lines for the member: the
                # next part follows from flush().
                self._stopReading()
                return
        if not replies:
            self._replies = None
            self._replyBytes = 0
            self._resumeReading()

    def _enqueue(self, data: bytes) -> None:
        # Every line for this member comes here. While the factory is gathering (what the
        # reactor read in this turn is being handled, or a big room's round of writes is
        # still going on), lines are kept and written with one write per member when its
        # turn in the round comes; otherwise each goes straight out.
        if self._outbox:
            self._outbox.append(data)
        elif self._gatherer.gathering:
            self._outbox = [data]
            self._gatherer.unflushed.append(self)
        else:
            self._write(data)

    def flush(self) -> None:
        """Write what has been gathered for this member."""
        outbox = self._outbox
        if outbox:
            self._outbox = []
            self._write(outbox[0] if len(outbox) == 1 else b"".join(outbox))
            if self._replies:
                self._writeReplies()

    def _writeThrough(self, data: bytes) -> None:
        # How a TCP or UNIX connection is written to. Twisted's write() only appends to the
        # connection's buffer and asks the reactor to watch the socket for writing; the data
        # goes out in the next turn, after which the reactor stops watching again: two
        # epoll_ctl calls besides the send, for every line to every member. When nothing is
        # waiting in that buffer, this sends at once, and leaves to Twisted only what the
        # kernel did not take (or a failure, which Twisted then meets and handles as ever).
        # The socket is sent to directly: Twisted's writeSomeData adds two calls and a retry
        # loop for EINTR, which Python's send() already retries, to every line.
        transport: TCPConnection = self.transport  # type: ignore[assignment]
        if transport.dataBuffer or transport._tempDataLen or transport.disconnecting:
            self._writeBehind(data)
            return
        try:
            sent = transport.socket.send(data)
        except OSError:  # the kernel's buffer is full, or the connection failed
            self._writeBehind(data)
            return
        if sent < len(data):
            self._writeBehind(data[sent:])

    def _writeBehind(self, data: bytes) -> None:
        # What the kernel did not take waits in the server, in Twisted's buffer for this
        # connection: every byte of it counts against the bound, from the first.
        transport: TCPConnection = self.transport  # type: ignore[assignment]
        queued = len(transport.dataBuffer) - transport.offset + transport._tempDataLen + len(data)
        if queued <= self._limits.maxSendQueue:
            transport.write(data)
        else:
            self._cut("send queue exceeded", queued)

    def _writeMeasured(self, data: bytes) -> None:
        # Any other transport (TLS, say): what would wait for the peer with this write, which
        # falls as the peer reads, so a member who keeps reading under heavy traffic is never
        # cut; or, for a transport whose buffer cannot be measured, everything written since
        # it last said it was full.
        transport = self.transport
        assert transport is not None
        unsent = unsentBytes(transport)
        if unsent is None:
            if not self._blocked:
                transport.write(data)
                return
            self._queuedWhileBlocked += len(data)
            queued = self._queuedWhileBlocked
        else:
            queued = unsent + len(data)
        if queued <= self._limits.maxSendQueue:
            transport.write(data)
        else:
            self._cut("send queue exceeded", queued)

    def sendBlocked(self) -> None:
        """
        The transport's buffer is full: hold the rest of any long reply until it is empty
        again. (Twisted says so again on every write while it stays full.)
        """
        if not self._blocked and self._state is not State.CLOSING:
            self._blocked = True
            self._queuedWhileBlocked = 0

    def sendUnblocked(self) -> None:
        """The peer has caught up: write the next part of a long reply, if there is one."""
        if self._blocked and self._state is not State.CLOSING:
            self._blocked = False
            if self._replies:
                self._writeReplies()

    def _cut(self, reason: str, queued: int) -> None:
        # The peer cannot be told (it is not reading): drop it now, unsent data and all.
        self._admission.cuts += 1
        self._state = State.CLOSING
        self._write = _discard
        self._outbox = []
        self._replies = None
        _log.warning(
            "connection_cut", peer=self.peer, nick=self.nick, reason=reason, queued=queued,
        )
        self.transport.abortConnection()  # type: ignore[union-attr]
        self._leave(reason)
