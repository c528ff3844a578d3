"""
The browser door's WebSocket: JSON objects, one per text frame, specified in
docs/web-protocol.md.

A L{WebSession} is a L{Session} (the name timeout, flood gate, send-queue guard, writing straight
through, gathered writes, closing within the grace) and a L{WebSocketProtocol}, which reads and
checks frames (unmasking, UTF-8, the size bounds, pings and the closing handshake); the
handshake is L{WebFactory.acceptWebSocket}'s, at the site's C{/ws}. What the server writes to a
session goes through the session, as on the line door: events are rendered to JSON and framed
once for every member they reach, and the frame's bytes join what is gathered for each member.

This module only parses, checks and renders; every chat rule is in L{chatsvc.chat}.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any, assert_never, cast

import structlog
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer, provider

from chatsvc.chat import (
    Account,
    Acted,
    ChatError,
    DeliveryFailed,
    Event,
    Hub,
    IBatchDelivery,
    IMember,
    Joined,
    JoinsAndLeaves,
    Left,
    Moderated,
    PasswordRequired,
    Renamed,
    Room,
    RoomView,
    Said,
    StoredMessage,
    TopicChanged,
    Whispered,
    nick_key,
)
from chatsvc.sessions.admission import Admission
from chatsvc.sessions.away import AwayNicks
from chatsvc.sessions.interfaces import ISession
from chatsvc.sessions.keepalive import KeepAlive
from chatsvc.sessions.limits import Limits
from chatsvc.sessions.outbox import Outbox
from chatsvc.sessions.session import Session, State
from chatsvc.web.websocket import (
    CLOSE_NORMAL,
    CLOSE_TRY_AGAIN_LATER,
    HandshakeRefused,
    WebSocketProtocol,
    closeFrame,
    frame,
)

__all__ = [
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "WebFactory",
    "WebSession",
    "formatTime",
]

PROTOCOL_VERSION = 1
"""The version of docs/web-protocol.md this module speaks, sent in C{hello}."""

MAX_FRAME_BYTES = 64 * 1024
"""The longest frame, and message, read from a client; longer ones close the connection (1009).
A message of the longest text, every character escaped by JSON as six, still fits."""

HISTORY_PAGE = 50
"""The most messages in one C{history} reply."""

MAX_LABEL_LENGTH = 64
"""The longest C{label} or C{cid} a client may give."""

REMEMBERED_CIDS = 10_000
"""How many client ids of messages said (see C{cid}) the door remembers, newest kept."""

PING_INTERVAL = 20
"""Seconds of silence after which a member is pinged; silent for as long again, it is gone."""

_log = structlog.get_logger("chatsvc.web")


class _Refused(Exception):
    """A client message that cannot be handled: its error message says why."""


def formatTime(when: float) -> str:
    """A POSIX time as the protocol gives times: ISO 8601, UTC, with milliseconds."""
    whole = int(when)
    millis = min(999, int(round((when - whole) * 1000)))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def _encode(message: dict[str, Any]) -> bytes:
    # Compact, and UTF-8 as it is: JSON's \\u escapes would make every non-ASCII letter six bytes.
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _message(message: StoredMessage) -> dict[str, Any]:
    """A stored message as the protocol shows one."""
    return {
        "id": str(message.id),
        "time": formatTime(message.time),
        "nick": message.nick,
        "text": message.text,
        "action": message.action,
    }


def eventMessage(event: Event) -> dict[str, Any]:
    """
    The protocol's message for C{event}. Every kind of event has its own case: a new kind makes
    mypy name this function (assert_never) until the browser door says how it looks.
    """
    stamp = {"id": str(event.id), "time": formatTime(event.time)}
    match event:
        case Said(room=room, nick=nick, text=text):
            return {"type": "said", "room": room, **stamp, "nick": nick, "text": text}
        case Acted(room=room, nick=nick, action=action):
            return {"type": "acted", "room": room, **stamp, "nick": nick, "text": action}
        case Joined(room=room, nick=nick):
            return {"type": "joined", "room": room, **stamp, "nick": nick}
        case Left(room=room, nick=nick, reason=reason):
            return {"type": "left", "room": room, **stamp, "nick": nick, "reason": reason}
        case TopicChanged(room=room, nick=nick, topic=topic):
            return {"type": "topic", "room": room, **stamp, "nick": nick, "topic": topic}
        case Renamed(old=old, new=new):
            return {"type": "renamed", **stamp, "old": old, "new": new}
        case Whispered(sender=sender, recipient=recipient, text=text):
            return {"type": "whisper", **stamp, "from": sender, "to": recipient, "text": text}
        case Moderated(room=room):
            message = {
                "type": "moderation",
                **stamp,
                "action": event.action,
                "by": event.by,
                "text": event.describe(),
            }
            if room is not None:
                message["room"] = room
            for name in ("target", "reason", "setting", "on"):
                value = getattr(event, name)
                if value is not None:
                    message[name] = value
            if event.until is not None:
                message["until"] = formatTime(event.until)
            if event.text is not None:
                message["announcement"] = event.text
            if event.message is not None:
                message["message"] = str(event.message)
            return message
        case JoinsAndLeaves(room=room):
            runs = [{"joined": joined, "nicks": list(nicks)} for joined, nicks in event.shown()]
            return {"type": "crowd", "room": room, **stamp, "runs": runs}
        case _:
            assert_never(event)


class _Renderer:
    """
    Renders an event to the bytes of its frame once, however many members it reaches: a
    broadcast hands the same event to every recipient in turn, so the last event is remembered
    (by identity), and nothing else.
    """

    def __init__(self) -> None:
        self._event: Event | None = None
        self._frame = b""

    def __call__(self, event: Event, hub: Hub | None = None) -> bytes:
        """
        The frame of C{event}; a C{joined} of a member who is away (as C{hub} says) carries
        its C{away} message, so that the pages in the room know it without asking.
        """
        if event is not self._event:
            message = eventMessage(event)
            if hub is not None and event.__class__ is Joined:
                away = hub.awayOf(event.nick)
                if away is not None:
                    message["away"] = away
            self._frame = frame(_encode(message))
            self._event = event
        return self._frame


renderEvent = _Renderer()


def _text(message: dict[str, Any], field: str, optional: bool = False) -> Any:
    # A string field of a client message, or (optional) None when absent.
    value = message.get(field)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _Refused(f"{field!r} must be a string")
    return value


def _id(message: dict[str, Any], field: str) -> int | None:
    # An event id a client gives back (a string of digits), or None when absent.
    value = message.get(field)
    if value is None:
        return None
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20):
        raise _Refused(f"{field!r} must be an id: a string of digits")
    return int(value)


def _short(message: dict[str, Any], field: str) -> str | None:
    value: str | None = _text(message, field, optional=True)
    if value is not None and len(value) > MAX_LABEL_LENGTH:
        raise _Refused(f"{field!r} may be at most {MAX_LABEL_LENGTH} characters long")
    return value


@implementer(IMember, ISession)
@provider(IBatchDelivery)
class WebSession(Session, WebSocketProtocol):
    """
    One browser connection: turns the client's JSON messages into calls on the hub, and the
    hub's events into JSON frames. What every door's connections share is L{Session}'s; what
    every WebSocket needs, L{WebSocketProtocol}'s.
    """

    __slots__ = ("factory", "_paused", "_backlog", "_opened", "_address")

    factory: WebFactory

    def __init__(self, factory: WebFactory, address: IAddress) -> None:
        Session.__init__(self)
        self.factory = factory
        self._paused = False
        # Messages read while the session was not to be read (one read may carry several),
        # handled in order once it is again; made when first needed, since an empty deque
        # costs 600 bytes a connection.
        self._backlog: deque[str] | None = None
        self._opened = False
        self._address = address

    maxMessageBytes = MAX_FRAME_BYTES

    # The WebSocket's life

    def connectionMade(self) -> None:
        """Count the connection in (or refuse it, over a limit), and say hello."""
        WebSocketProtocol.connectionMade(self)
        factory = self.factory
        transport = self._tcp
        address = self._address
        refusal = factory.admission.refusal(address)
        if refusal is not None:
            _log.warning("connection_refused", peer=str(address), reason=refusal, door="web")
            transport.write(self._byeFrame(refusal) + closeFrame(CLOSE_TRY_AGAIN_LATER))
            transport.loseConnection()
            return
        self._startSession(
            transport, factory.limits, factory.clock, factory.admission, factory.outbox, address
        )
        self._opened = True
        factory.keepAlive.opened(self)
        limits = factory.limits
        self._sendMessage(
            {
                "type": "hello",
                "version": PROTOCOL_VERSION,
                "server": "chatsvc",
                "limits": {
                    "lineBytes": limits.maxLineLength,
                    "floodRate": limits.floodRate,
                    "floodBurst": limits.floodBurst,
                    "historyPage": HISTORY_PAGE,
                    "frameBytes": MAX_FRAME_BYTES,
                    "nameTimeout": limits.nameTimeout,
                },
            }
        )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """A dropped connection is a leave too, announced once."""
        if self._opened:
            self._opened = False
            self.factory.keepAlive.closed(self)
            self._endSession()

    def dataReceived(self, data: bytes) -> None:
        """
        Gather what the messages read in this turn cause, to be written once per member when
        the turn ends (the process's outbox), as the line door does; then read the frames.
        """
        if self._opened:
            gatherer = self._gatherer
            if not gatherer.gathering:
                gatherer.gather()
            WebSocketProtocol.dataReceived(self, data)

    def textReceived(self, text: str) -> None:
        """One whole message from the client: handled now, or when the session is read again."""
        if self._state is State.CLOSING:
            return
        if self._backlog or self._paused:
            if self._backlog is None:
                self._backlog = deque()
            self._backlog.append(text)
            return
        self._take(text)

    def binaryReceived(self, data: bytes) -> None:
        """Binary messages are not part of the protocol: the client is told so."""
        if self._state is not State.CLOSING:
            self._sendError("binary frames are not part of this protocol; send JSON text", None)

    def pingTimedOut(self) -> None:
        """The browser stopped answering (its network went away): the member leaves."""
        _log.info("web_ping_timeout", peer=self.peer, nick=self.nick)
        self._leave("ping timeout")
        self.abort()

    def _take(self, text: str) -> None:
        delay = self._takeToken()
        if delay:
            self._hold(text, delay)
        else:
            self._handle(text)

    # What the session asks of the door

    @property
    def _tcp(self) -> Any:
        # The connection beneath the WebSocket (TCP, or TLS over it), which this protocol
        # took over from the HTTP channel.
        return self.transport

    def _stopReading(self) -> None:
        self._paused = True
        self._tcp.pauseProducing()

    def _startReading(self) -> None:
        self._paused = False
        backlog = self._backlog
        while backlog and not self._paused and self._state is not State.CLOSING:
            self._take(backlog.popleft())
        if not self._paused:
            self._tcp.resumeProducing()

    def _reading(self) -> bool:
        return not self._paused

    def _handleHeld(self, held: object) -> None:
        assert isinstance(held, str)
        self._handle(held)

    def _tellDelayed(self) -> None:
        self._sendMessage(
            {"type": "notice", "text": "You are sending too fast; your messages are being delayed."}
        )

    def _nameTimedOut(self) -> None:
        self._nameTimer = None
        timeout = self.factory.limits.nameTimeout
        self.disconnect(f"no nickname within {timeout:g} second{'' if timeout == 1 else 's'}")

    def disconnect(self, reason: str) -> None:
        """Close this connection for the server's own C{reason}, telling the member why."""
        if self._state is State.CLOSING:
            return
        self._goodbye(f"Disconnected: {reason}")
        self._leave(reason)

    def _goodbye(self, reason: str) -> None:
        self._closeWith(self._byeFrame(reason) + self.closing(CLOSE_NORMAL))

    def _leave(self, reason: str | None, quitting: bool = False) -> None:
        hub = self.factory.hub
        if hub.depart(self, reason):
            _log.info(
                "member_left",
                nick=self.nick,
                peer=self.peer,
                reason=reason,
                quit=quitting,
                members=len(hub),
                connections=self.factory.admission.connectionCount,
                door="web",
            )

    # Writing

    def _sendMessage(self, message: dict[str, Any]) -> None:
        self._sendReplyLine(frame(_encode(message)))

    def _byeFrame(self, reason: str) -> bytes:
        return frame(_encode({"type": "bye", "reason": reason}))

    def _sendError(self, text: str, request: dict[str, Any] | None) -> None:
        error: dict[str, Any] = {"type": "error", "message": text}
        if request is not None:
            kind = request.get("type")
            if isinstance(kind, str):
                error["for"] = kind[:MAX_LABEL_LENGTH]
            label = request.get("label")
            if isinstance(label, str) and len(label) <= MAX_LABEL_LENGTH:
                error["label"] = label
        self._sendMessage(error)

    def deliver(self, event: Event) -> None:
        """Write an event to this member."""
        if (
            isinstance(event, Moderated)
            and event.action in ("kill", "suspend")
            and event.target == self.nick
        ):
            self.deliverKill(event)
            return
        self._enqueue(renderEvent(event, self.factory.hub))

    @staticmethod
    def deliverToMany(
        members: Sequence[IMember],
        event: Event,
        exclude: IMember | None,
        failed: DeliveryFailed,
    ) -> None:
        """
        L{deliver} to many members at once (L{IBatchDelivery}): the event is rendered and
        framed once, and the same bytes join what is gathered for each member.
        """
        sessions = cast("Sequence[WebSession]", members)
        data = renderEvent(event, sessions[0].factory.hub if sessions else None)
        for member in sessions:
            if member is exclude:
                continue
            try:
                outbox = member._outbox
                if outbox:
                    outbox.append(data)
                else:
                    member._enqueue(data)
            except Exception as error:
                failed(member, event, error)

    # Reading

    def _handle(self, text: str) -> None:
        # One client message. Whatever happens, the session goes on: a message the server fails
        # to handle is reported to its sender and logged, never left to stop the connection.
        request: dict[str, Any] | None = None
        try:
            try:
                parsed = json.loads(text)
            except ValueError as error:
                raise _Refused(f"not JSON: {error}") from None
            except RecursionError:
                raise _Refused("not JSON this server reads: nested too deeply") from None
            if not isinstance(parsed, dict):
                raise _Refused("a message must be a JSON object")
            request = parsed
            kind = parsed.get("type")
            if not isinstance(kind, str):
                raise _Refused("a message must have a string 'type'")
            label = _short(parsed, "label")
            if self._state is State.AWAITING_NAME:
                if kind == "name":
                    self._handleName(parsed, label)
                elif kind == "quit":
                    self._goodbye("Goodbye!")
                else:
                    raise _Refused("choose a nickname first")
                return
            handler = getattr(self, "handle_" + kind, None)
            if handler is None:
                return  # unknown types are ignored, as the protocol says
            handler(parsed, label)
        except (_Refused, ChatError) as error:
            if self._state is not State.CLOSING:
                self._sendError(str(error), request)
        except Exception as error:
            self._failed(error, request)

    def _failed(self, error: BaseException, request: dict[str, Any] | None = None) -> None:
        _log.error("message_failed", peer=self.peer, nick=self.nick, exc_info=error)
        if self._state is not State.CLOSING:
            self._sendError("the server failed to handle that message; it was dropped", request)

    def _refusal(self, request: dict[str, Any]) -> Callable[[str], None]:
        # How a refusal the core gives later is told: as the error for this request.
        return lambda reason: self._sendError(reason, request)

    def _reply(self, message: dict[str, Any], label: str | None) -> None:
        if label is not None:
            message["label"] = label
        self._sendMessage(message)

    # The nickname

    def _handleName(self, request: dict[str, Any], label: str | None) -> None:
        nick = _text(request, "nick")
        after = _id(request, "after")
        password = _text(request, "password", optional=True)
        token = _text(request, "token", optional=True)
        hub = self.factory.hub

        async def arrive() -> tuple[str | PasswordRequired, str | None]:
            try:
                result = await hub.arrive(self, nick, password=password, token=token)
            except PasswordRequired as required:
                return required, None
            account = hub.accountOf(self)
            issued = None
            if account is not None and password is not None:
                # What keeps the page logged in across reloads, instead of the password.
                issued = await hub.accounts.issueToken(account)  # type: ignore[union-attr]
            return result, issued

        def answered(answer: tuple[str | PasswordRequired, str | None]) -> None:
            result, issued = answer
            if isinstance(result, PasswordRequired):
                self._reply({"type": "password", "nick": result.nick}, label)
                return
            self._named()
            self.nick = result
            account = hub.accountOf(self)
            _log.info(
                "member_joined",
                nick=result,
                peer=self.peer,
                room=hub.defaultRoom.name,
                members=len(hub),
                connections=self.factory.admission.connectionCount,
                account=account is not None,
                door="web",
            )
            connections = len(hub.connectionsOf(self))
            welcome: dict[str, Any] = {
                "type": "welcome",
                "nick": result,
                "account": account is not None,
            }
            if connections > 1:
                welcome["connections"] = connections
            if issued is not None:
                welcome["token"] = issued
            self._reply(welcome, label)
            # A first connection is shown the default room it landed in; another of an
            # account's, every room the account is in.
            for room in hub.roomsOf(self):
                self._sendRoom(room, after if room is hub.defaultRoom else None, None)

        self._whenAnswered(
            Deferred.fromCoroutine(arrive()), answered, self._refusal(request), self._failed
        )

    # The account

    def handle_register(self, request: dict[str, Any], label: str | None) -> None:
        """C{register}: register the nickname in use; answered with a token for the page."""
        password, code = _text(request, "password"), _text(request, "code", optional=True)
        hub = self.factory.hub

        async def register() -> tuple[Account, str]:
            account = await hub.register(self, password, code)
            return account, await hub.accounts.issueToken(account)  # type: ignore[union-attr]

        def answered(result: tuple[Account, str]) -> None:
            account, token = result
            self._reply({"type": "registered", "nick": account.nick, "token": token}, label)

        self._whenAnswered(
            Deferred.fromCoroutine(register()), answered, self._refusal(request), self._failed
        )

    def handle_password(self, request: dict[str, Any], label: str | None) -> None:
        """
        C{password}: change the account's password; every token stops working, and the page
        is given a new one.
        """
        old, new = _text(request, "old"), _text(request, "new")
        hub = self.factory.hub

        async def change() -> str:
            account = await hub.changePassword(self, old, new)
            return await hub.accounts.issueToken(account)  # type: ignore[union-attr]

        self._whenAnswered(
            Deferred.fromCoroutine(change()),
            lambda token: self._reply({"type": "passwordChanged", "token": token}, label),
            self._refusal(request),
            self._failed,
        )

    def handle_logout(self, request: dict[str, Any], label: str | None) -> None:
        """C{logout}: the page's token logs in no more; then the member leaves."""
        token = _text(request, "token", optional=True)
        accounts = self.factory.hub.accounts
        revoked = (
            accounts.revokeToken(token)
            if accounts is not None and token is not None
            else succeed(None)
        )

        def answered(ignored: None) -> None:
            self._goodbye(f"Goodbye, {self.nick}! You are logged out.")
            self._leave(None, quitting=True)

        self._whenAnswered(revoked, answered, self._refusal(request), self._failed)

    # Rooms

    def _room(self, request: dict[str, Any]) -> Room:
        return self.factory.hub.room(_text(request, "room"))

    def _sendRoom(self, room: Room, after: int | None, label: str | None) -> None:
        # What a member is shown of a room on joining it: the core's view of it, with a page
        # of its history (the latest, or what came after the id the page saw last).
        view: RoomView = self.factory.hub.view(room, 0)
        page = self.factory.hub.history(room, None, after, HISTORY_PAGE)

        def answered(result: tuple[list[StoredMessage], bool]) -> None:
            history, more = result
            message: dict[str, Any] = {
                "type": "room",
                "room": view.room,
                "topic": view.topic,
                "count": view.members,
                "members": None if view.nicks is None else list(view.nicks),
                "roles": self.factory.hub.rolesIn(room),
                "away": {} if view.nicks is None else self.factory.away.among(view.nicks),
                "settings": self.factory.hub.roomSettings(room),
                "history": [_message(each) for each in history],
                "more": more,
            }
            self._reply(message, label)

        def refused(reason: str) -> None:
            # The room is joined all the same: shown without its history, which can be paged.
            self._sendError(reason, {"type": "join", "label": label})
            answered(([], True))

        self._whenAnswered(page, answered, refused, self._failed)

    def handle_join(self, request: dict[str, Any], label: str | None) -> None:
        """C{join}: join (or create) a room, and be shown it."""
        name = _text(request, "room")
        after = _id(request, "after")
        hub = self.factory.hub
        room = hub.join(self, name)
        _log.info("room_joined", nick=self.nick, room=room.name, members=len(room), door="web")
        self._sendRoom(room, after, label)

    def handle_part(self, request: dict[str, Any], label: str | None) -> None:
        """C{part}: leave a room."""
        room = self.factory.hub.part(
            self, _text(request, "room"), _text(request, "reason", optional=True)
        )
        self._reply({"type": "parted", "room": room.name}, label)

    def handle_say(self, request: dict[str, Any], label: str | None) -> None:
        """C{say}: say something in a room."""
        self._speak(request, label, self.factory.hub.say)

    def handle_act(self, request: dict[str, Any], label: str | None) -> None:
        """C{act}: a C{/me} action in a room."""
        self._speak(request, label, self.factory.hub.act)

    def _speak(
        self,
        request: dict[str, Any],
        label: str | None,
        speak: Callable[[IMember, Room, str], Said | Acted],
    ) -> None:
        room = self._room(request)
        text = _text(request, "text")
        if len(text.encode("utf-8")) > self.factory.limits.maxLineLength:
            raise _Refused(f"text too long (over {self.factory.limits.maxLineLength} bytes)")
        cid = _short(request, "cid")
        factory = self.factory
        if cid is not None:
            said = factory.saidBefore(self.nick, room.key, cid)
            if said is not None:
                self._sendOwn(said, cid, label)
                return
        event = speak(self, room, text)
        if cid is not None:
            factory.rememberSaid(self.nick, room.key, cid, event)
        self._sendOwn(event, cid, label)

    def _sendOwn(self, event: Said | Acted | Whispered, cid: str | None, label: str | None) -> None:
        message = eventMessage(event)
        if cid is not None:
            message["cid"] = cid
        self._reply(message, label)

    def handle_topic(self, request: dict[str, Any], label: str | None) -> None:
        """C{topic}: set or clear a room's topic."""
        if "topic" not in request:
            raise _Refused("'topic' must be a string, or null to clear it")
        self.factory.hub.setTopic(self, self._room(request), _text(request, "topic", optional=True))

    def handle_nick(self, request: dict[str, Any], label: str | None) -> None:
        """C{nick}: change nickname."""
        renamed = self.factory.hub.rename(self, _text(request, "nick"))

        def answered(result: str) -> None:
            old, self.nick = self.nick, result
            _log.info("member_renamed", old=old, nick=result, peer=self.peer, door="web")

        self._whenAnswered(renamed, answered, self._refusal(request), self._failed)

    def handle_msg(self, request: dict[str, Any], label: str | None) -> None:
        """C{msg}: a private message; with a C{cid}, sent once however often it is resent."""
        hub = self.factory.hub
        to, text, cid = _text(request, "to"), _text(request, "text"), _short(request, "cid")
        # Remembered under its recipient's key, as a room's lines are under the room's.
        where = "@" + nick_key(to)
        if cid is not None:
            sent = self.factory.saidBefore(self.nick, where, cid)
            if sent is not None:
                self._sendOwn(sent, cid, label)
                return
        event = hub.whisper(self, to, text)
        if cid is not None:
            self.factory.rememberSaid(self.nick, where, cid, event)
        self._sendOwn(event, cid, label)

    def handle_who(self, request: dict[str, Any], label: str | None) -> None:
        """C{who}: the members of a room."""
        room = self._room(request)
        hub = self.factory.hub
        members = hub.nicks(room)
        reply = {
            "type": "who",
            "room": room.name,
            "members": members,
            "roles": hub.rolesIn(room),
            "away": self.factory.away.among(members),
        }
        self._reply(reply, label)

    def handle_away(self, request: dict[str, Any], label: str | None) -> None:
        """
        C{away}: C{message} (a string; L{None}, absent or blank: back) marks the member away
        on every door, or back; answered with its C{away}, the message as kept. The pages
        sharing a room with the member, and its other pages, are told (L{WebFactory.awayChanged}).
        """
        hub = self.factory.hub
        kept = hub.setAway(self, _text(request, "message", optional=True))
        self._reply({"type": "away", "nick": hub.nickOf(self), "message": kept}, label)

    def handle_rooms(self, request: dict[str, Any], label: str | None) -> None:
        """C{rooms}: every room, with its member count and topic."""
        rooms = [
            {"room": room.name, "count": len(room), "topic": room.topic}
            for room in self.factory.hub.roomsFor(self)
        ]
        self._reply({"type": "rooms", "rooms": rooms}, label)

    def handle_history(self, request: dict[str, Any], label: str | None) -> None:
        """C{history}: a page of a room's messages, before or after an id, or the latest."""
        room = self._room(request)
        before, after = _id(request, "before"), _id(request, "after")
        if before is not None and after is not None:
            raise _Refused("give 'before' or 'after', not both")
        limit = request.get("limit", HISTORY_PAGE)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= HISTORY_PAGE:
            raise _Refused(f"'limit' must be a whole number from 1 to {HISTORY_PAGE}")
        page = self.factory.hub.history(room, before, after, limit)

        def answered(result: tuple[list[StoredMessage], bool]) -> None:
            messages, more = result
            reply: dict[str, Any] = {
                "type": "history",
                "room": room.name,
                "messages": [_message(each) for each in messages],
                "more": more,
            }
            if before is not None:
                reply["before"] = str(before)
            if after is not None:
                reply["after"] = str(after)
            self._reply(reply, label)

        self._whenAnswered(page, answered, self._refusal(request), self._failed)

    # Moderation: a room's, for its operators; the server's, for its admins

    def _moderated(self, event: Moderated, label: str | None) -> None:
        # The moderator is in the room and sees its event; an invitation is answered apart.
        if event.action == "invite":
            self._reply(eventMessage(event), label)

    def handle_kick(self, request: dict[str, Any], label: str | None) -> None:
        """C{kick}: C{room}, C{nick}, C{reason}?."""
        event = self.factory.hub.kick(
            self, _text(request, "room"), _text(request, "nick"), _text(request, "reason", optional=True)
        )
        self._moderated(event, label)

    def _sanction(self, kind: str, request: dict[str, Any], label: str | None) -> None:
        event = self.factory.hub.sanction(
            self,
            kind,
            _text(request, "room"),
            _text(request, "nick"),
            _text(request, "duration", optional=True),
            _text(request, "reason", optional=True),
        )
        self._moderated(event, label)

    def handle_ban(self, request: dict[str, Any], label: str | None) -> None:
        """C{ban}: C{room}, C{nick}, C{duration}? (C{10m}, C{2h}, C{7d}), C{reason}?."""
        self._sanction("ban", request, label)

    def handle_mute(self, request: dict[str, Any], label: str | None) -> None:
        """C{mute}: as C{ban}."""
        self._sanction("mute", request, label)

    def handle_unban(self, request: dict[str, Any], label: str | None) -> None:
        """C{unban}: C{room}, C{nick}."""
        self._moderated(self.factory.hub.lift(self, "ban", _text(request, "room"), _text(request, "nick")), label)

    def handle_unmute(self, request: dict[str, Any], label: str | None) -> None:
        """C{unmute}: C{room}, C{nick}."""
        self._moderated(self.factory.hub.lift(self, "mute", _text(request, "room"), _text(request, "nick")), label)

    def handle_sanctions(self, request: dict[str, Any], label: str | None) -> None:
        """C{sanctions}: C{room}, C{kind} (C{ban} or C{mute}): those in force."""
        kind = _text(request, "kind")
        if kind not in ("ban", "mute"):
            raise _Refused("'kind' must be 'ban' or 'mute'")
        room = _text(request, "room")
        found = self.factory.hub.sanctions(self, kind, room)
        listed = [
            {
                "nick": each.target,
                "by": each.by,
                "reason": each.reason,
                "until": None if each.until is None else formatTime(each.until),
            }
            for each in found
        ]
        self._reply({"type": "sanctions", "room": room, "kind": kind, "sanctions": listed}, label)

    def handle_role(self, request: dict[str, Any], label: str | None) -> None:
        """C{role}: C{room}, C{nick}, C{role} (C{op}, C{voice}, C{owner}), C{on} (a boolean)."""
        role, on = _text(request, "role"), request.get("on", True)
        if role not in ("op", "voice", "owner") or not isinstance(on, bool):
            raise _Refused("'role' must be 'op', 'voice' or 'owner', and 'on' true or false")
        event = self.factory.hub.setRole(self, _text(request, "room"), _text(request, "nick"), role, on)
        self._moderated(event, label)

    def handle_set(self, request: dict[str, Any], label: str | None) -> None:
        """C{set}: C{room}, C{setting}, C{on} (a boolean)."""
        on = request.get("on")
        if not isinstance(on, bool):
            raise _Refused("'on' must be true or false")
        event = self.factory.hub.setting(self, _text(request, "room"), _text(request, "setting"), on)
        self._moderated(event, label)

    def handle_invite(self, request: dict[str, Any], label: str | None) -> None:
        """C{invite}: C{room}, C{nick}."""
        self._moderated(self.factory.hub.invite(self, _text(request, "room"), _text(request, "nick")), label)

    def handle_announce(self, request: dict[str, Any], label: str | None) -> None:
        """C{announce}: C{text}, to everyone (admins)."""
        self._whenAnswered(
            self.factory.hub.announce(self, _text(request, "text")),
            lambda event: None,
            self._refusal(request),
            self._failed,
        )

    def handle_kill(self, request: dict[str, Any], label: str | None) -> None:
        """C{kill}: C{nick}, C{reason}? (admins)."""
        self._whenAnswered(
            self.factory.hub.kill(self, _text(request, "nick"), _text(request, "reason", optional=True)),
            lambda event: self._reply({"type": "killed", "nick": event.target}, label),
            self._refusal(request),
            self._failed,
        )

    def handle_suspend(self, request: dict[str, Any], label: str | None) -> None:
        """C{suspend}: C{nick}, C{duration}?, C{reason}?, C{on}? (false lifts it) (admins)."""
        on = request.get("on", True)
        if not isinstance(on, bool):
            raise _Refused("'on' must be true or false")
        self._whenAnswered(
            self.factory.hub.suspend(
                self,
                _text(request, "nick"),
                _text(request, "duration", optional=True),
                _text(request, "reason", optional=True),
                on,
            ),
            lambda event: None,
            self._refusal(request),
            self._failed,
        )

    def handle_lockdown(self, request: dict[str, Any], label: str | None) -> None:
        """C{lockdown}: C{on} (admins)."""
        on = request.get("on")
        if not isinstance(on, bool):
            raise _Refused("'on' must be true or false")
        self._whenAnswered(
            self.factory.hub.lockdown(self, on), lambda event: None, self._refusal(request), self._failed
        )

    def handle_remove(self, request: dict[str, Any], label: str | None) -> None:
        """C{remove}: C{room}, and C{id} (a message's) or C{nick} (whose latest): an operator removes it."""
        id = _id(request, "id")
        nick = _text(request, "nick", optional=True)
        if id is None and nick is None:
            raise _Refused("give the 'id' of a message, or the 'nick' whose latest it is")
        self._whenAnswered(
            self.factory.hub.removeMessage(self, _text(request, "room"), id, nick),
            lambda event: None,
            self._refusal(request),
            self._failed,
        )

    def handle_whois(self, request: dict[str, Any], label: str | None) -> None:
        """C{whois}: C{nick}."""
        who = self.factory.hub.whois(self, _text(request, "nick"))
        self._reply(
            {
                "type": "whois",
                "nick": who.nick,
                "online": who.online,
                "registered": None if who.registered is None else formatTime(who.registered),
                "admin": who.admin,
                "rooms": list(who.rooms),
                "roles": dict(who.roles),
                "idle": None if who.idle is None else round(who.idle),
                "connections": who.connections,
                "away": who.away,
            },
            label,
        )

    def deliverKill(self, event: Moderated) -> None:
        """Disconnected by an admin: told, and closed."""
        self._enqueue(renderEvent(event))
        self.disconnect(f"by {event.by}" + (f" ({event.reason})" if event.reason else ""))

    def handle_quit(self, request: dict[str, Any], label: str | None) -> None:
        """C{quit}: leave."""
        reason = _text(request, "reason", optional=True)
        self._goodbye(f"Goodbye, {self.nick}!")
        self._leave(reason or None, quitting=True)


class WebFactory:
    """
    Accepts the WebSockets opened at the site's C{/ws}, a L{WebSession} for each, and holds
    what they share: the hub, the limits, the clock, the sessions' admission and outbox, the
    keepalive, the origins allowed besides the page's own, and the proxies trusted to say who
    a client is.

    It watches the hub (an L{IPresenceWatcher}) for members going away and coming back: it
    keeps who is away for the member lists (L{away}), and tells the pages sharing a room with
    them.
    """

    def __init__(
        self,
        hub: Hub,
        limits: Limits,
        admission: Admission,
        outbox: Outbox,
        origins: Sequence[str] = (),
        trustedProxies: Sequence[str] = (),
        pingInterval: float = PING_INTERVAL,
    ) -> None:
        """
        @param origins: origins (C{https://chat.example.org}) allowed to connect besides the
            page's own.
        @param trustedProxies: addresses of reverse proxies whose C{X-Forwarded-For} says who
            the client is; from any other peer, that header is ignored.
        @param pingInterval: seconds of silence before a member is pinged (see L{KeepAlive});
            0 for no pings.
        """
        self.hub = hub
        self.clock: IReactorTime = hub.clock
        self.limits = limits
        self.admission = admission
        self.outbox = outbox
        self.origins = frozenset(origin.rstrip("/").lower() for origin in origins)
        self.trustedProxies = frozenset(trustedProxies)
        self.keepAlive = KeepAlive(self.clock, pingInterval)
        self._said: OrderedDict[tuple[str | None, str, str], Said | Acted | Whispered] = (
            OrderedDict()
        )
        self.away = AwayNicks(hub, self._awayChanged)
        """Who is away, for the member lists (L{Hub.awayOf} for one nickname)."""

    def _awayChanged(self, member: IMember, nick: str, message: str | None) -> None:
        """
        The member C{nick} went away, or came back (C{message} L{None}), from its connection
        C{member} (on any door): every page sharing a room with it, and its own other pages,
        get C{{"type": "away", "nick", "message"}}, rendered and framed once for them all.
        C{member} itself, a page that asked, gets the answer to its request instead.
        """
        hub = self.hub
        sessions = [
            connection
            for connection in hub.audienceOf(member)
            if isinstance(connection, WebSession) and connection.factory is self and connection is not member
        ]
        if not sessions:
            return
        data = frame(_encode({"type": "away", "nick": nick, "message": message}))
        for session in sessions:
            try:
                session._enqueue(data)
            except Exception as error:
                _log.error("away_delivery_failed", nick=session.nick, exc_info=error)

    def acceptWebSocket(self, request: Request) -> WebSession:
        """
        The session of a WebSocket opening (L{chatsvc.web.websocket.WebSocketAcceptor}):
        refused if the page it comes from is of another origin (cross-site WebSocket
        hijacking), and counted under the client's address (behind a trusted proxy, the one
        the proxy names).
        """
        headers = request.requestHeaders
        origin = headers.getRawHeaders(b"origin", [None])[-1]
        host = headers.getRawHeaders(b"host", [b""])[-1]
        peer = request.getClientAddress()
        if origin is not None and not self.originAllowed(
            origin.decode("latin-1"), host.decode("latin-1")
        ):
            _log.warning("web_origin_refused", peer=str(getattr(peer, "host", peer)), origin=origin.decode("latin-1"))
            raise HandshakeRefused(403, "A page of this origin may not connect to this chat.")
        forwarded = headers.getRawHeaders(b"x-forwarded-for")
        return WebSession(self, self.clientAddress(peer, forwarded[-1].decode("latin-1") if forwarded else None))

    def originAllowed(self, origin: str, host: str) -> bool:
        """Whether a page from C{origin} may connect to this server, reached as C{host}."""
        origin = origin.rstrip("/").lower()
        if origin in self.origins:
            return True
        scheme, _, rest = origin.partition("://")
        return scheme in ("http", "https") and rest == host.lower()

    def clientAddress(self, peer: IAddress, forwarded: str | None) -> IAddress:
        """
        Who the client is: the peer, unless the peer is a trusted proxy, in which case the
        last address in C{X-Forwarded-For} (C{forwarded}: the one that proxy saw).
        """
        host = getattr(peer, "host", None)
        if host not in self.trustedProxies or not forwarded:
            return peer
        client = forwarded.split(",")[-1].strip()
        try:
            parsed = ipaddress.ip_address(client)
        except ValueError:
            return peer
        if parsed.version == 6:
            return IPv6Address("TCP", client, 0)
        return IPv4Address("TCP", client, 0)

    def saidBefore(
        self, nick: str | None, roomKey: str, cid: str
    ) -> Said | Acted | Whispered | None:
        """
        What C{nick} said in a room (or, for C{@key}, to a member) with the client id C{cid},
        if it is remembered.
        """
        return self._said.get((nick, roomKey, cid))

    def rememberSaid(
        self, nick: str | None, roomKey: str, cid: str, event: Said | Acted | Whispered
    ) -> None:
        """Remember what was said with a client id, forgetting the oldest past the bound."""
        said = self._said
        said[(nick, roomKey, cid)] = event
        if len(said) > REMEMBERED_CIDS:
            said.popitem(last=False)
