"""
The line protocol: chatsvc over a plain TCP (or TLS, or UNIX) stream, one UTF-8 line at a time.

docs/protocol.md is the specification; in short:

    S: GET_NAME                      C: <nickname>
    S: <nick> connected to server!   S: *** Members (2): Alice, Bob
    C: hello                         others see  Alice: hello
    C: /me waves                     others see  * Alice waves
    C: /msg Bob psst                 Bob sees    *Alice* psst     Alice sees  -> *Bob* psst
    C: /nick Alicia                  all see     *** Alice is now known as Alicia
    C: /join games                   games sees  Alice joined!
    C: hi                            games sees  Alicia: hi    lobby, for whom games is not
                                                 the current room, sees  [games] Alicia: hi
    C: q | exit | close | disconnect | /quit [reason]
    S: *** Goodbye, Alice!           others see  Alice left!   (or  Alice left! (reason))

Every member lands in the default room. Plain text goes to the member's current room (the one
joined or switched to last); lines from the member's other rooms come marked C{[room] }.

Errors are one line, C{*** Error: <message>}, to the member who caused them; the connection stays.

This module only frames, decodes, parses and renders; every chat rule is in L{chatsvc.chat}.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar, assert_never, cast

import structlog
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IReactorTime,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.python.failure import Failure
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
    describeSpan,
    Renamed,
    Room,
    RoomView,
    Said,
    TopicChanged,
    StoredMessage,
    Whispered,
    deliverToEach,
)
from chatsvc.line.wire import (
    AWAY_MARK,
    GET_NAME,
    GET_PASSWORD,
    QUIT_WORDS,
    endsSession,
    removalReason,
)
from chatsvc.sessions.addresses import describeAddress
from chatsvc.sessions.admission import Admission
from chatsvc.sessions.away import AwayNicks
from chatsvc.sessions.interfaces import ISession
from chatsvc.sessions.limits import Limits
from chatsvc.sessions.lines import LineSession
from chatsvc.sessions.outbox import Outbox
from chatsvc.sessions.session import State, unsentBytes
from chatsvc.text import neutralize

__all__ = ["ChatFactory", "ChatProtocol", "renderEvent", "unsentBytes"]

NAMES_PER_LINE = 50
"""The most nicknames on one line of a summary of joins and leaves."""

MEMBERS_PER_LINE = 100
"""The most nicknames on one line of a member list; more go on continuation lines."""

ROOMS_PER_PAGE = 50
"""Rooms listed by one C{/rooms}; C{/rooms 2} shows the next ones."""

MAX_COUNT_DIGITS = 9
"""The most digits a number in a command may have (C{/history N}, C{/rooms PAGE})."""

_log = structlog.get_logger("chatsvc.protocol")

T = TypeVar("T")

HELP = [
    "Commands:",
    "  /join ROOM          join ROOM (created if needed) and talk there; or switch to it",
    "  /part [ROOM]        leave ROOM (the current room by default)",
    "  /rooms [PAGE]       list the rooms, with their members and topics, 50 at a time",
    "  /who [ROOM]         list the members of ROOM (the current room by default)",
    "  /topic [TEXT]       show, or set, the current room's topic (/topic - clears it)",
    "  /history [N]        show the last N messages of the current room",
    "  /nick NEWNAME       change your nickname",
    "  /register PASSWORD [CODE]  register your nickname: only you may use it from now on",
    "  /password OLD NEW   change your account's password",
    "Room operators (in the current room):",
    "  /kick NICK [REASON]                 put NICK out of the room",
    "  /ban NICK [DURATION] [REASON]       keep NICK out (10m, 2h, 7d; none: until /unban)",
    "  /unban NICK, /bans                  lift a ban; list the bans",
    "  /mute NICK [DURATION] [REASON]      keep NICK from speaking; /unmute NICK, /mutes",
    "  /op, /deop, /voice, /devoice NICK   give or take a role (registered members)",
    "  /invite NICK                        let NICK into a private room",
    "  /remove NICK                        remove NICK's latest message from the room's history",
    "  /set [private|moderated|topiclock|registered on|off]   show or change the room's settings",
    "Server admins:",
    "  /announce TEXT, /kill NICK [REASON], /owner NICK (of the current room)",
    "  /suspend NICK [DURATION] [REASON], /unsuspend NICK, /lockdown on|off",
    "Anyone:",
    "  /whois NICK         account or guest, rooms you share, roles, idle time, away",
    "  /away [MESSAGE]     mark yourself away, with MESSAGE; without one, back",
    "  /me ACTION          send an action: * you ACTION",
    "  /msg NICK TEXT      send TEXT to NICK alone",
    "  /say TEXT           send TEXT as it is, even if it starts with / or is a quit word",
    "  //TEXT              send /TEXT",
    "  /quit [REASON]      leave (q, exit, close and disconnect leave too)",
    "  /help               this list",
]


class _Renderer:
    """
    Turns events into lines for the wire, once per event. A broadcast hands the same event to
    every recipient in turn, so remembering the last event (by identity) is enough to render and
    encode it once per room, however many members it has, at the cost of one comparison per
    recipient; and nothing is kept beyond that one event.
    """

    def __init__(self) -> None:
        self._event: Event | None = None
        self._plain: bytes | None = None
        self._marked: bytes | None = None

    def __call__(self, event: Event, marked: bool = False) -> bytes:
        """
        The line (with its ending) that shows C{event} to a member; C{marked}, with the name
        of its room in front, for a member whose current room is another one.
        """
        if event is not self._event:
            self._event = event
            self._plain = self._marked = None
        if marked:
            if self._marked is None:
                self._marked = f"[{event.room}] {_eventText(event)}\r\n".encode("utf-8")
            return self._marked
        if self._plain is None:
            self._plain = f"{_eventText(event)}\r\n".encode("utf-8")
        return self._plain


renderEvent = _Renderer()
"""Renders an event for a member: C{renderEvent(event, marked)}."""


class _SummaryRenderer:
    """
    Turns summaries of joins and leaves (L{JoinsAndLeaves}) into lines of at most
    L{NAMES_PER_LINE} names.

    Every member of a crowded room is handed the same runs of names, those who joined in the
    interval with a later start (C{since}). The lines are cut at the same places for everyone
    (every L{NAMES_PER_LINE} names from the start of a run) and rendered once, so a late joiner
    shares all of them but its first, partial, line; the members who were there before share
    one string of all of them. Thousands joining in one interval cost thousands of references
    to the same lines, not thousands of copies of a long summary.
    """

    def __init__(self) -> None:
        self._runs: object = None
        self._lines: dict[bool, list[list[bytes]]] = {}
        self._whole: dict[bool, bytes] = {}

    def __call__(self, event: JoinsAndLeaves, marked: bool = False) -> list[bytes]:
        """The lines (with their endings) that show C{event} to a member; see L{_Renderer}."""
        if event.runs is not self._runs:
            self._runs = event.runs
            self._lines = {}
            self._whole = {}
        prefix = f"[{event.room}] " if marked else ""
        lines = self._lines.get(marked)
        if lines is None:
            lines = self._lines[marked] = [
                [
                    _summaryLine(prefix, joined, nicks[start : start + NAMES_PER_LINE])
                    for start in range(0, len(nicks), NAMES_PER_LINE)
                ]
                for joined, nicks in event.runs
            ]
        skip = event.since
        if not skip:
            whole = self._whole.get(marked)
            if whole is None:
                whole = self._whole[marked] = b"".join(line for run in lines for line in run)
            return [whole]
        shown: list[bytes] = []
        for (joined, nicks), runLines in zip(event.runs, lines):
            if skip >= len(nicks):
                skip -= len(nicks)
                continue
            first, within = divmod(skip, NAMES_PER_LINE)
            if within:
                end = (first + 1) * NAMES_PER_LINE
                shown.append(_summaryLine(prefix, joined, nicks[skip:end]))
                first += 1
            shown.extend(runLines[first:])
            skip = 0
        return shown


def _summaryLine(prefix: str, joined: bool, nicks: tuple[str, ...]) -> bytes:
    return f"{prefix}*** {'Joined' if joined else 'Left'}: {', '.join(nicks)}\r\n".encode("utf-8")


renderSummary = _SummaryRenderer()
"""Renders a summary of joins and leaves: C{renderSummary(event, marked)}, a list of lines."""


def _eventText(event: Event) -> str:
    # Every kind of event, each in its own case: a new kind makes mypy name this function
    # (assert_never) until the line door says how it looks.
    match event:
        case Said(nick=nick, text=text):
            return f"{nick}: {text}"
        case Joined(nick=nick):
            return f"{nick} joined!"
        case Left(nick=nick, reason=None):
            return f"{nick} left!"
        case Left(nick=nick, reason=reason):
            return f"{nick} left! ({reason})"
        case Acted(nick=nick, action=action):
            return f"* {nick} {action}"
        case Renamed(old=old, new=new):
            return f"*** {old} is now known as {new}"
        case TopicChanged(room=room, nick=nick, topic=None):
            return f"*** {nick} cleared the topic of {room}"
        case TopicChanged(room=room, nick=nick, topic=topic):
            return f"*** {nick} set the topic of {room}: {topic}"
        case Whispered(sender=sender, text=text):
            return f"*{sender}* {text}"
        case Moderated():
            return f"*** {event.describe()}"
        case JoinsAndLeaves():
            # Several lines, cut at the same places for every recipient: renderSummary.
            raise TypeError("a summary of joins and leaves is rendered by renderSummary")
        case _:
            assert_never(event)


def _notice(text: str) -> bytes:
    """A server notice as a line for the wire: C{*** text}."""
    return f"*** {text}\r\n".encode("utf-8")


def _notAQuitWord(nick: str) -> str:
    """
    C{nick}, unless it is one of the line door's quit words, in any case: a member called C{q}
    could never be told apart from a member leaving.

    @raise ChatError: if it is one.
    """
    if nick.strip().lower() in QUIT_WORDS:
        raise ChatError(f"{nick.strip()!r} is a quit word and cannot be a nickname")
    return nick


def _nickDurationReason(argument: str, command: str) -> tuple[str, str | None, str | None]:
    # "NICK [DURATION] [REASON]": a second word that looks like a duration is one.
    nick, _, rest = argument.partition(" ")
    if not nick:
        raise ChatError(f"usage: /{command} NICK [DURATION] [REASON]")
    first, _, after = rest.strip().partition(" ")
    duration = first if _DURATION.fullmatch(first) else None
    reason = (after if duration else rest).strip() or None
    return nick, duration, reason


def _passwordRequired(failure: Failure) -> PasswordRequired:
    # A registered nickname: not a refusal, but the question GET_PASSWORD.
    failure.trap(PasswordRequired)
    required: PasswordRequired = failure.value  # type: ignore[assignment]
    return required


def _notAQuitPassword(password: str) -> None:
    # A quit word answering GET_PASSWORD ends the session instead: it can never be typed as
    # a password on this door.
    if password in QUIT_WORDS:
        raise ChatError(f"{password!r} cannot be a password here: it ends the session")


def _count(argument: str, usage: str) -> int:
    """
    The positive number a member gave in a command: ASCII digits only (C{str.isdigit} also
    takes C{²} and C{①}, which C{int} refuses), and at most L{MAX_COUNT_DIGITS} of them.

    @raise ChatError: with C{usage}, if C{argument} is no such number.
    """
    if not (argument.isascii() and argument.isdigit() and len(argument) <= MAX_COUNT_DIGITS):
        raise ChatError(usage)
    number = int(argument)
    if number < 1:
        raise ChatError(usage)
    return number


def _roomListLines(total: int, rooms: Sequence[Room], page: int, pages: int) -> Iterator[bytes]:
    """The lines of one page of C{/rooms}: C{rooms}, of C{total}."""
    if pages == 1:
        yield _notice(f"Rooms ({total}):")
    else:
        yield _notice(f"Rooms ({total}), page {page} of {pages}:")
    for room in rooms:
        count = f"{len(room)} member{'' if len(room) == 1 else 's'}"
        topic = f": {room.topic}" if room.topic else ""
        yield _notice(f"  {room.name} ({count}){topic}")
    if page < pages:
        yield _notice(f"More: /rooms {page + 1}")


def _viewLines(
    view: RoomView, roles: Mapping[str, str], away: Mapping[str, str]
) -> Iterator[bytes]:
    """A room as a newcomer is shown it: the topic, the members (their number only in a crowded
    room: /who lists them), and what was said there lately."""
    yield from _topicLines(view.room, view.topic)
    if view.nicks is None:
        yield _notice(f"Members ({view.members}): too many to list here; /who shows them all")
    else:
        yield from _memberListLines(view.nicks, roles, away)
    yield from _historyBlock(view.room, view.recent)


def _topicLines(room: str, topic: str | None, always: bool = False) -> Iterator[bytes]:
    if topic is not None:
        yield _notice(f"Topic of {room}: {topic}")
    elif always:
        yield _notice(f"{room} has no topic")


_DURATION = re.compile(r"[0-9]{1,6}[smhdwSMHDW]")
"""What the word after a nickname must look like to be a ban's or mute's duration."""

_PREFIXES = {"admin": "@", "owner": "@", "op": "@", "voice": "+"}
"""How roles are shown in member lists, as IRC shows them: C{@alice} (an operator, the owner
or an admin), C{+bob} (voiced)."""


def _memberListLines(
    nicks: Sequence[str], roles: Mapping[str, str] = {}, away: Mapping[str, str] = {}
) -> Iterator[bytes]:
    # Each name with its role's prefix, and marked if its member is away (in away, by
    # nickname).
    if roles or away:
        nicks = [
            (_PREFIXES[roles[nick]] + nick if nick in roles else nick)
            + (AWAY_MARK if nick in away else "")
            for nick in nicks
        ]
    yield _notice(f"Members ({len(nicks)}): {', '.join(nicks[:MEMBERS_PER_LINE])}")
    for start in range(MEMBERS_PER_LINE, len(nicks), MEMBERS_PER_LINE):
        yield _notice(f"  {', '.join(nicks[start : start + MEMBERS_PER_LINE])}")


def _historyBlock(
    room: str, messages: Sequence[StoredMessage], always: bool = False
) -> Iterator[bytes]:
    if not messages:
        if always:
            yield _notice(f"No history in {room}")
        return
    plural = "" if len(messages) == 1 else "s"
    yield _notice(f"History of {room}, last {len(messages)} message{plural}:")
    for message in messages:
        yield f"{renderHistory(message)}\r\n".encode("utf-8")
    yield _notice(f"End of history of {room}")


def renderHistory(message: StoredMessage) -> str:
    """
    One stored message as shown in a history block: a server line (C{***}), with its date and
    time, so that it cannot be taken for live chat.
    """
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(message.time))
    shown = f"* {message.nick} {message.text}" if message.action else f"{message.nick}: {message.text}"
    return f"*** [{stamp} UTC] {shown}"


@implementer(IMember, ISession)
@provider(IBatchDelivery)
class ChatProtocol(LineSession):
    """
    One client connection of the line door: turns lines into calls on the hub, and the hub's
    events into lines. What every door's connections share is L{Session}'s.
    """

    delimiter = b"\n"
    factory: ChatFactory

    # Kept in slots rather than in the instance's dictionary (which still holds what Twisted's
    # classes set): a server holds thousands of these.
    __slots__ = ("current", "_loggingIn")

    def __init__(self) -> None:
        LineSession.__init__(self)
        self.current: Room | None = None
        """The room plain text goes to: the one joined, or switched to, last."""
        # The registered nickname whose password the next line is (after GET_PASSWORD).
        self._loggingIn: str | None = None

    # Connection life cycle

    def connectionMade(self) -> None:
        """Set the connection up and greet the newcomer with C{GET_NAME}."""
        transport = self.transport
        assert transport is not None
        factory = self.factory
        self.MAX_LENGTH = factory.limits.maxLineLength + 1  # room for a "\r" before the "\n"
        self._startSession(transport, factory.limits, factory.clock, factory.admission, factory.outbox)
        self.sendText(GET_NAME)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """A dropped connection is a leave too, announced once."""
        self._endSession()

    def _nameTimedOut(self) -> None:
        self._nameTimer = None
        timeout = self.factory.limits.nameTimeout
        self.disconnect(f"no nickname within {timeout:g} second{'' if timeout == 1 else 's'}")

    # What the session asks of the door

    def _tellDelayed(self) -> None:
        self.sendNotice("You are sending too fast; your lines are being delayed.")

    # Framing (LineReading's), decoding

    def _lineTooLong(self) -> None:
        self._refuse(
            f"line too long (over {self.factory.limits.maxLineLength} bytes); it was discarded"
        )

    def _refuse(self, message: str) -> None:
        # One place for every refused line: the error, and the question again if it was the
        # answer to GET_NAME.
        self.sendError(message)
        if self._state is State.AWAITING_NAME:
            self.sendText(GET_NAME)

    def lineReceived(self, line: bytes) -> None:
        """Take one line, when the flood limit allows, and act on it."""
        if self._state is State.CLOSING:
            return
        delay = self._takeToken()
        if delay:
            self._hold(line, delay)
        else:
            self._handleLine(line)

    def _handleLine(self, line: bytes | None) -> None:
        # Decode one line (None: one that was too long) and hand it to the current state.
        # Whatever happens, the connection goes on reading: a line the server fails to handle
        # is reported to its sender and logged, never left to stop the connection.
        try:
            self._dispatch(line)
        except Exception as error:
            self._lineFailed(error)

    def _lineFailed(self, error: BaseException) -> None:
        _log.error("line_failed", peer=self.peer, nick=self.nick, exc_info=error)
        if self._state is not State.CLOSING:
            self.sendError("the server failed to handle that line; it was dropped")

    def _dispatch(self, line: bytes | None) -> None:
        if line is None:
            self._lineTooLong()
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.factory.limits.maxLineLength:
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
            if self._state is State.AWAITING_NAME:
                self._nameReceived(text)
            else:
                self._chatLineReceived(text)
        except ChatError as error:
            self._refuse(str(error))

    # Flood control: past the burst, lines are delayed (by not reading), never dropped

    # Writing, and members that do not read

    def sendText(self, text: str) -> None:
        """
        Send one line of text to this member; after the rest of a long reply still being
        written, if there is one.
        """
        self._sendReplyLine(text.encode("utf-8") + b"\r\n")

    def sendNotice(self, text: str) -> None:
        """Send a server notice: C{*** text}."""
        self._sendReplyLine(_notice(text))

    def sendError(self, message: str) -> None:
        """Tell this member (only) that their last line was refused."""
        self.sendText("*** Error: " + message)

    def deliver(self, event: Event) -> None:
        """Write an event to this member, marked with its room if that is not the current one."""
        if isinstance(event, (Joined, Left)) and event.nick == self.nick:
            self._elsewhere(event)
            return
        if isinstance(event, Moderated) and event.target == self.nick and self._moderatedHere(event):
            return
        if isinstance(event, Whispered) and event.sender == self.nick:
            # Sent from another connection of this account: shown as this one's receipt is.
            self._enqueue(f"-> *{event.recipient}* {event.text}\r\n".encode("utf-8"))
            return
        room = event.room
        current = self.current
        marked = room is not None and current is not None and room != current.name
        if event.__class__ is JoinsAndLeaves:
            for line in renderSummary(event, marked):
                self._enqueue(line)
            return
        self._enqueue(renderEvent(event, marked))

    @staticmethod
    def deliverToMany(
        members: Sequence[IMember],
        event: Event,
        exclude: IMember | None,
        failed: DeliveryFailed,
    ) -> None:
        """
        L{deliver} to many members at once, as a room's broadcast does (L{IBatchDelivery}): the
        event is rendered once, and each member's line joins what is gathered for it with no
        call per member but for the first line of its round. Against 500 members this takes
        about a third of the time of a L{deliver} call each.
        """
        if event.__class__ is JoinsAndLeaves:
            deliverToEach(members, event, exclude, failed)
            return
        room = event.room
        plain = renderEvent(event)
        for member in cast("Sequence[ChatProtocol]", members):
            if member is exclude:
                continue
            try:
                current = member.current
                if room is None or current is None or room == current.name:
                    data = plain
                else:
                    data = renderEvent(event, marked=True)
                outbox = member._outbox
                if outbox:
                    outbox.append(data)
                else:
                    member._enqueue(data)
            except Exception as error:
                failed(member, event, error)

    def _moderatedHere(self, event: Moderated) -> bool:
        # A moderator acted on this member: out of a room (kick, ban), or off the server
        # (kill); True if this door took care of the event itself.
        if event.action in ("kill", "suspend"):
            self._enqueue(_notice(event.describe()))
            self.disconnect(removalReason(event.by, event.reason))
            return True
        if event.action in ("kick", "ban") and event.room is not None:
            # Out of the room: told so, as after /part, with the room talked in now.
            marked = self.current is not None and self.current.name != event.room
            self._enqueue(renderEvent(event, marked))
            self._outOf(event.room)
            where = "you are in no room now (/join one)" if self.current is None else f"now talking in {self.current.name}"
            self._enqueue(_notice(f"You are out of {event.room}; {where}"))
            return True
        return False

    def _outOf(self, name: str) -> None:
        # Out of the room called name (the hub has taken this member out already): if it was
        # the one talked in, the one joined last of those left is.
        if self.current is not None and self.current.name == name:
            rooms = self.factory.hub.roomsOf(self)
            self.current = rooms[-1] if rooms else None

    def _elsewhere(self, event: Joined | Left) -> None:
        # This account joined or left a room from another of its connections: so did this one.
        if isinstance(event, Joined):
            if self.current is None:
                self.current = self.factory.hub.room(event.room)
                self._enqueue(_notice(f"You joined {event.room} from another connection; now talking there"))
            else:
                self._enqueue(_notice(f"You joined {event.room} from another connection"))
            return
        self._outOf(event.room)
        where = "you are in no room now" if self.current is None else f"now talking in {self.current.name}"
        self._enqueue(_notice(f"You left {event.room} from another connection; {where}"))

    # The nickname

    def _nameReceived(self, text: str) -> None:
        if endsSession(text):
            self._goodbye("Goodbye!")
            return
        hub = self.factory.hub
        nick, self._loggingIn = self._loggingIn, None
        claimed: Deferred[str | PasswordRequired]
        if nick is not None:
            # The answer to GET_PASSWORD (a password has no spaces: any around it are the
            # terminal's).
            claimed = hub.arrive(self, nick, password=text.strip())  # type: ignore[assignment]
        else:
            claimed = hub.arrive(self, _notAQuitWord(text)).addErrback(_passwordRequired)
        self._whenAnswered(claimed, self._nameAnswered, self._refuse, self._lineFailed)

    def _nameAnswered(self, result: str | PasswordRequired) -> None:
        if isinstance(result, PasswordRequired):
            self._loggingIn = result.nick
            self.sendText(GET_PASSWORD)
            return
        hub = self.factory.hub
        self.nick = result
        # A first connection lands in the default room; another of an account's, in the
        # account's rooms.
        rooms = hub.roomsOf(self)
        self.current = hub.defaultRoom if hub.defaultRoom in rooms else (rooms[-1] if rooms else None)
        self._named()
        _log.info(
            "member_joined",
            nick=self.nick,
            peer=self.peer,
            room=None if self.current is None else self.current.name,
            members=len(hub),
            connections=self.factory.connectionCount,
            account=hub.accountOf(self) is not None,
        )
        # Any write may find the member's send queue full and cut it: nothing after these
        # may count on the member being here still.
        self.sendText(f"{self.nick} connected to server!")
        connections = len(hub.connectionsOf(self))
        if connections > 1:
            names = ", ".join(room.name for room in rooms) or "none"
            self.sendNotice(
                f"You are logged in from {connections} connections; your rooms: {names}"
            )
        if self.current is not None:
            self.reply(self._roomLines(self.current))
        where = (
            "you are in no room (/join one)"
            if self.current is None
            else f"you are talking in {self.current.name}"
        )
        self.sendNotice(f"Type /help for commands, /quit to leave; {where}.")

    # Chat lines and commands

    def _chatLineReceived(self, text: str) -> None:
        if endsSession(text):
            # The rule both ends share (chatsvc.line.wire): a quit word, or /quit [REASON].
            reason = text[1:].partition(" ")[2].strip() if text.startswith("/") else ""
            self._quit(reason or None)
        elif text.startswith("//"):
            self._say(text[1:])
        elif text.startswith("/"):
            name, _, argument = text[1:].partition(" ")
            command = getattr(self, "command_" + name.lower(), None)
            if command is None:
                raise ChatError(f"unknown command /{neutralize(name)} (try /help)")
            command(argument.strip())
        else:
            self._say(text)

    def _currentRoom(self) -> Room:
        if self.current is None:
            raise ChatError("you are in no room; /join one (/rooms lists them)")
        return self.current

    def _say(self, text: str) -> None:
        self.factory.hub.say(self, self._currentRoom(), text)

    def command_help(self, argument: str) -> None:
        """C{/help}: list the commands."""
        self.reply(_notice(line) for line in HELP)

    def command_who(self, argument: str) -> None:
        """C{/who [ROOM]}: list the members of a room (the current one by default)."""
        room = self.factory.hub.room(argument) if argument else self._currentRoom()
        self.reply(self._memberLines(room))

    def command_join(self, argument: str) -> None:
        """C{/join ROOM}: join a room, creating it if needed, or switch to it."""
        if not argument or " " in argument:
            raise ChatError("usage: /join ROOM")
        hub = self.factory.hub
        already = {room.key for room in hub.roomsOf(self)}
        room = hub.join(self, argument)
        self.current = room
        if room.key in already:
            self.sendNotice(f"Now talking in {room.name}")
            return
        self.sendNotice(f"You joined {room.name}; now talking there")
        self.reply(self._roomLines(room))
        _log.info("room_joined", nick=self.nick, room=room.name, members=len(room))

    def command_part(self, argument: str) -> None:
        """C{/part [ROOM]}: leave a room (the current one by default)."""
        hub = self.factory.hub
        room = hub.part(self, argument or self._currentRoom().name)
        _log.info("room_left", nick=self.nick, room=room.name, members=len(room))
        self._outOf(room.name)
        if self.current is None:
            self.sendNotice(f"You left {room.name}; you are in no room now (/join one)")
        else:
            self.sendNotice(f"You left {room.name}; now talking in {self.current.name}")

    def command_rooms(self, argument: str) -> None:
        """
        C{/rooms [PAGE]}: list the rooms, with member counts and topics, L{ROOMS_PER_PAGE} at
        a time.
        """
        rooms = self.factory.hub.roomsFor(self)
        pages = max(1, -(-len(rooms) // ROOMS_PER_PAGE))
        page = _count(argument, "usage: /rooms [PAGE]") if argument else 1
        if page > pages:
            one = pages == 1
            raise ChatError(f"there {'is' if one else 'are'} only {pages} page{'' if one else 's'} of rooms")
        shown = rooms[(page - 1) * ROOMS_PER_PAGE : page * ROOMS_PER_PAGE]
        self.reply(_roomListLines(len(rooms), shown, page, pages))

    def command_topic(self, argument: str) -> None:
        """C{/topic [TEXT]}: show or set the current room's topic; C{/topic -} clears it."""
        room = self._currentRoom()
        if not argument:
            self.reply(self._topicLines(room, always=True))
        else:
            self.factory.hub.setTopic(self, room, None if argument == "-" else argument)

    def command_history(self, argument: str) -> None:
        """C{/history [N]}: the last N messages of the current room."""
        room = self._currentRoom()
        most = self.factory.hub.historyKept
        if argument:
            count = min(_count(argument, f"usage: /history [N], N from 1 to {most}"), most)
        else:
            count = self.factory.historyLines
        self.reply(self._historyLines(room, count, always=True))

    def command_nick(self, argument: str) -> None:
        """C{/nick NEWNAME}: change nickname."""
        if not argument:
            raise ChatError("usage: /nick NEWNAME")
        renamed = self.factory.hub.rename(self, _notAQuitWord(argument))
        self._whenAnswered(renamed, self._renameAnswered, self._refuse, self._lineFailed)

    def _renameAnswered(self, result: str) -> None:
        old, self.nick = self.nick, result
        _log.info(
            "member_renamed",
            old=old,
            nick=self.nick,
            peer=self.peer,
            members=len(self.factory.hub),
            connections=self.factory.connectionCount,
        )

    def command_register(self, argument: str) -> None:
        """C{/register PASSWORD [CODE]}: register the nickname in use."""
        words = argument.split()
        if not 1 <= len(words) <= 2:
            raise ChatError("usage: /register PASSWORD [INVITE-CODE]")
        _notAQuitPassword(words[0])
        registered = self.factory.hub.register(self, *words)
        self._command(registered, self._registered)

    def _registered(self, account: Account) -> None:
        self.sendNotice(
            f"{account.nick} is registered: nobody else may use it, and you log in with "
            "your password from now on."
        )

    def command_password(self, argument: str) -> None:
        """C{/password OLD NEW}: change the account's password."""
        words = argument.split()
        if len(words) != 2:
            raise ChatError("usage: /password OLD NEW")
        _notAQuitPassword(words[1])
        changed = self.factory.hub.changePassword(self, *words)
        self._command(changed, lambda account: self.sendNotice("Your password is changed."))

    def _command(self, answer: Deferred[T], done: Callable[[T], object] = lambda result: None) -> None:
        # A command the core answers later (a hash, a database, the admins' list): done with
        # what it answers, or its refusal shown as an error; reading waits meanwhile.
        self._whenAnswered(answer, done, self.sendError, self._lineFailed)  # type: ignore[arg-type]

    # Moderation: the current room's, for its operators; the server's, for its admins

    def _moderationDone(self, event: Moderated) -> None:
        # The moderator sees what the room sees (it is in the room; invitations, to it alone).
        if event.action == "invite":
            self.sendNotice(f"You invited {event.target} to {event.room}")

    def command_kick(self, argument: str) -> None:
        """C{/kick NICK [REASON]}."""
        nick, _, reason = argument.partition(" ")
        if not nick:
            raise ChatError("usage: /kick NICK [REASON]")
        self._moderationDone(self.factory.hub.kick(self, self._currentRoom().name, nick, reason.strip() or None))

    def _sanction(self, kind: str, argument: str) -> None:
        nick, duration, reason = _nickDurationReason(argument, kind)
        self._moderationDone(
            self.factory.hub.sanction(self, kind, self._currentRoom().name, nick, duration, reason)
        )

    def command_ban(self, argument: str) -> None:
        """C{/ban NICK [DURATION] [REASON]}."""
        self._sanction("ban", argument)

    def command_mute(self, argument: str) -> None:
        """C{/mute NICK [DURATION] [REASON]}."""
        self._sanction("mute", argument)

    def _lift(self, kind: str, argument: str) -> None:
        if not argument or " " in argument:
            raise ChatError(f"usage: /un{kind} NICK")
        self._moderationDone(self.factory.hub.lift(self, kind, self._currentRoom().name, argument))

    def command_unban(self, argument: str) -> None:
        """C{/unban NICK}."""
        self._lift("ban", argument)

    def command_unmute(self, argument: str) -> None:
        """C{/unmute NICK}."""
        self._lift("mute", argument)

    def _listSanctions(self, kind: str) -> None:
        room = self._currentRoom()
        now = self.factory.clock.seconds()
        found = self.factory.hub.sanctions(self, kind, room.name)
        what = "Bans in" if kind == "ban" else "Mutes in"
        lines = [_notice(f"{what} {room.name}: {len(found) or 'none'}")]
        for each in found:
            span = "until lifted" if each.until is None else f"{describeSpan(each.until - now)} more"
            why = f": {each.reason}" if each.reason else ""
            lines.append(_notice(f"  {each.target} ({span}, by {each.by}){why}"))
        self.reply(iter(lines))

    def command_bans(self, argument: str) -> None:
        """C{/bans}: the current room's bans."""
        self._listSanctions("ban")

    def command_mutes(self, argument: str) -> None:
        """C{/mutes}: the current room's mutes."""
        self._listSanctions("mute")

    def _role(self, role: str, on: bool, argument: str, name: str) -> None:
        if not argument or " " in argument:
            raise ChatError(f"usage: /{name} NICK")
        self._moderationDone(self.factory.hub.setRole(self, self._currentRoom().name, argument, role, on))

    def command_op(self, argument: str) -> None:
        """C{/op NICK}."""
        self._role("op", True, argument, "op")

    def command_deop(self, argument: str) -> None:
        """C{/deop NICK}."""
        self._role("op", False, argument, "deop")

    def command_voice(self, argument: str) -> None:
        """C{/voice NICK}."""
        self._role("voice", True, argument, "voice")

    def command_devoice(self, argument: str) -> None:
        """C{/devoice NICK}."""
        self._role("voice", False, argument, "devoice")

    def command_owner(self, argument: str) -> None:
        """C{/owner NICK}: an admin names the current room's owner."""
        self._role("owner", True, argument, "owner")

    def command_invite(self, argument: str) -> None:
        """C{/invite NICK}."""
        if not argument or " " in argument:
            raise ChatError("usage: /invite NICK")
        self._moderationDone(self.factory.hub.invite(self, self._currentRoom().name, argument))

    def command_set(self, argument: str) -> None:
        """C{/set [SETTING on|off]}: show or change the current room's settings."""
        hub = self.factory.hub
        room = self._currentRoom()
        if not argument:
            shown = ", ".join(f"{name} {'on' if on else 'off'}" for name, on in hub.roomSettings(room).items())
            self.sendNotice(f"Settings of {room.name}: {shown}")
            return
        words = argument.split()
        if len(words) != 2 or words[1].lower() not in ("on", "off"):
            raise ChatError("usage: /set private|moderated|topiclock|registered on|off")
        self._moderationDone(hub.setting(self, room.name, words[0].lower(), words[1].lower() == "on"))

    def command_announce(self, argument: str) -> None:
        """C{/announce TEXT}: an admin, to everyone."""
        if not argument:
            raise ChatError("usage: /announce TEXT")
        self._command(self.factory.hub.announce(self, argument))

    def command_kill(self, argument: str) -> None:
        """C{/kill NICK [REASON]}: an admin disconnects a member."""
        nick, _, reason = argument.partition(" ")
        if not nick:
            raise ChatError("usage: /kill NICK [REASON]")
        self._command(
            self.factory.hub.kill(self, nick, reason.strip() or None),
            lambda event: self.sendNotice(f"{event.target} is disconnected"),
        )

    def command_suspend(self, argument: str) -> None:
        """C{/suspend NICK [DURATION] [REASON]}: an admin suspends an account."""
        nick, duration, reason = _nickDurationReason(argument, "suspend")
        self._command(self.factory.hub.suspend(self, nick, duration, reason))

    def command_unsuspend(self, argument: str) -> None:
        """C{/unsuspend NICK}."""
        if not argument or " " in argument:
            raise ChatError("usage: /unsuspend NICK")
        self._command(self.factory.hub.suspend(self, argument, on=False))

    def command_lockdown(self, argument: str) -> None:
        """C{/lockdown on|off}."""
        if argument.lower() not in ("on", "off"):
            raise ChatError("usage: /lockdown on|off")
        self._command(self.factory.hub.lockdown(self, argument.lower() == "on"))

    def command_remove(self, argument: str) -> None:
        """C{/remove NICK}: an operator removes NICK's latest message in the current room."""
        if not argument or " " in argument:
            raise ChatError("usage: /remove NICK")
        self._command(self.factory.hub.removeMessage(self, self._currentRoom().name, nick=argument))

    def command_whois(self, argument: str) -> None:
        """C{/whois NICK}."""
        if not argument or " " in argument:
            raise ChatError("usage: /whois NICK")
        who = self.factory.hub.whois(self, argument)
        if who.registered is None:
            kind = "a guest"
        else:
            since = time.strftime("%Y-%m-%d", time.gmtime(who.registered))
            kind = f"registered since {since}" + (", a server admin" if who.admin else "")
        lines = [_notice(f"{who.nick}: {kind}")]
        if not who.online:
            lines.append(_notice("  not connected now"))
        else:
            idle = "active now" if (who.idle or 0) < 60 else f"idle for {describeSpan(who.idle or 0)}"
            connections = f", on {who.connections} connections" if who.connections > 1 else ""
            lines.append(_notice(f"  {idle}{connections}"))
            if who.away is not None:
                lines.append(_notice(f"  away: {who.away}"))
            lines.append(_notice(f"  rooms you share: {', '.join(who.rooms) or 'none'}"))
        if who.roles:
            roles = ", ".join(f"{role} of {room}" for room, role in who.roles)
            lines.append(_notice(f"  {roles}"))
        self.reply(iter(lines))

    def command_me(self, argument: str) -> None:
        """C{/me ACTION}: an action."""
        if not argument:
            raise ChatError("usage: /me ACTION")
        self.factory.hub.act(self, self._currentRoom(), argument)

    def command_msg(self, argument: str) -> None:
        """C{/msg NICK TEXT}: a private message."""
        recipient, _, text = argument.partition(" ")
        text = text.lstrip()
        if not recipient or not text:
            raise ChatError("usage: /msg NICK TEXT")
        hub = self.factory.hub
        sent = hub.whisper(self, recipient, text)
        self.sendText(f"-> *{sent.recipient}* {sent.text}")
        away = hub.awayOf(sent.recipient)
        if away is not None:
            self.sendNotice(f"{sent.recipient} is away: {away}")

    def command_away(self, argument: str) -> None:
        """
        C{/away [MESSAGE]}: mark the member away with MESSAGE (on every door, and on all of its
        connections); without one, back.
        """
        hub = self.factory.hub
        if not argument and hub.awayOf(hub.nickOf(self)) is None:
            self.sendNotice("You are not marked as away")
            return
        kept = hub.setAway(self, argument or None)
        if kept is None:
            self.sendNotice("You are no longer marked as away")
        else:
            self.sendNotice(f"You are marked as away: {kept}")

    def command_say(self, argument: str) -> None:
        """C{/say TEXT}: send TEXT as chat, whatever it looks like."""
        if not argument:
            raise ChatError("usage: /say TEXT")
        self._say(argument)

    # What a member is shown of a room: replies, written at the pace the member reads

    def _roomLines(self, room: Room) -> Iterator[bytes]:
        # On arriving in a room: what the core says a newcomer is shown of it, as lines.
        hub = self.factory.hub
        view = hub.view(room, self.factory.historyLines)
        return _viewLines(view, hub.rolesIn(room), self.factory.away.messages)

    def _topicLines(self, room: Room, always: bool = False) -> Iterator[bytes]:
        return _topicLines(room.name, room.topic, always)

    def _memberLines(self, room: Room) -> Iterator[bytes]:
        # The names are taken when the reply's turn comes, the lines made as they are written.
        hub = self.factory.hub
        yield from _memberListLines(hub.nicks(room), hub.rolesIn(room), self.factory.away.messages)

    def _historyLines(self, room: Room, count: int, always: bool = False) -> Iterator[bytes]:
        return _historyBlock(room.name, room.history(count), always)

    # Leaving

    def _quit(self, reason: str | None) -> None:
        self._goodbye(f"Goodbye, {self.nick}!")
        self._leave(reason, quitting=True)

    def _goodbye(self, notice: str) -> None:
        self._closeWith(_notice(notice))

    def disconnect(self, reason: str) -> None:
        """Close this connection for the server's own C{reason}, telling the member why."""
        if self._state is State.CLOSING:
            return
        self._goodbye(f"Disconnected: {reason}")
        self._leave(reason)

    def _leave(self, reason: str | None, quitting: bool = False) -> None:
        hub = self.factory.hub
        if hub.depart(self, reason):
            self.current = None
            _log.info(
                "member_left",
                nick=self.nick,
                peer=self.peer,
                reason=reason,
                quit=quitting,
                members=len(hub),
                connections=self.factory.connectionCount,
            )


class Refusal(Protocol):
    """What a connection over a limit gets: one line saying why, then the connection closes."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(f"*** Disconnected: {self.reason}\r\n".encode("utf-8"))
        self.transport.loseConnection()


class ChatFactory(ServerFactory):
    """
    The line door's factory: builds a L{ChatProtocol} for each connection the sessions'
    L{Admission} takes, and holds what they share: the hub (members and rooms), the limits, the
    clock, the admission (with every door's open connections) and the process's L{Outbox}.

    It watches the hub (an L{IPresenceWatcher}) for members going away and coming back: it
    keeps who is away for the member lists (L{away}), and tells the member's other line
    connections.
    """

    protocol = ChatProtocol  # type: ignore[assignment]
    noisy = False  # connections and members are logged by chatsvc's own events

    def __init__(
        self,
        hub: Hub,
        limits: Limits = Limits(),
        historyLines: int = 20,
        admission: Admission | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        """
        @param hub: the members and rooms every connection joins; its clock is the source of
            time for every timeout and rate limit too.
        @param limits: the limits each connection, and the server, are held to.
        @param historyLines: how many recent messages a member is shown on joining a room (and
            by C{/history} without a number).
        @param admission: the connections of every door, counted together (a new one by
            default: this door alone).
        @param outbox: the process's outbox, which every door's connections share (a new one by
            default).
        """
        self.hub = hub
        self.clock: IReactorTime = hub.clock
        self.limits = limits
        self.historyLines = historyLines
        self.admission = admission if admission is not None else Admission(hub.clock, limits)
        self.outbox = outbox if outbox is not None else Outbox(hub.clock)
        self.away = AwayNicks(hub, self._awayChanged)
        """Who is away, for the member lists (L{Hub.awayOf} for one nickname)."""

    def _awayChanged(self, member: IMember, nick: str, message: str | None) -> None:
        """
        C{member} (one of its connections, on any door) went away or came back: its other line
        connections are told, as they are of rooms it joins from elsewhere. The others see it
        in member lists and C{/whois}, and on messaging it.
        """
        if message is None:
            notice = "You are no longer marked as away (from another connection)"
        else:
            notice = f"You are marked as away from another connection: {message}"
        for connection in self.hub.connectionsOf(member):
            if (
                connection is not member
                and isinstance(connection, ChatProtocol)
                and connection.factory is self
            ):
                connection.sendNotice(notice)

    @property
    def connections(self) -> set[ChatProtocol]:
        """This door's open connections (of those L{Admission.connections} counts)."""
        return {c for c in self.admission.connections if isinstance(c, ChatProtocol)}

    @property
    def connectionCount(self) -> int:
        """The number of open connections, named or not, of every door."""
        return self.admission.connectionCount

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        """A L{ChatProtocol}, or a L{Refusal} when a connection limit is reached."""
        reason = self.admission.refusal(addr)
        if reason is None:
            return super().buildProtocol(addr)  # type: ignore[return-value]
        _log.warning(
            "connection_refused",
            peer=describeAddress(addr) if addr is not None else "-",
            reason=reason,
            connections=self.connectionCount,
        )
        return Refusal(reason)

    def closeAll(self, reason: str) -> Deferred[None]:
        """Tell every connection C{reason} and close it (see L{Admission.closeAll})."""
        return self.admission.closeAll(reason)
