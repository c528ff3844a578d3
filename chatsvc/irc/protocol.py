"""
The IRC door: chatsvc for every IRC client, on the same core as the other doors. docs/irc.md is
the specification; in short, a room C{games} is the channel C{#games}, the accounts are the same
(logged in with SASL C{PLAIN} or C{PASS account:password}), and every event of the core is told
as the IRC message a client understands (C{PRIVMSG}, C{JOIN}, C{PART}, C{KICK}, C{MODE},
C{TOPIC}, C{NICK}), or as a C{NOTICE} where IRC has none.

An L{IrcProtocol} is a L{LineSession}: a L{Session} (the name timeout, here the registration
timeout; the flood gate, the send-queue guard, gathered writes, closing within the grace) that
reads lines, as the line door's connections do;
what it writes goes through the session as on the other doors. Events are rendered once for
every member that negotiated the same capabilities (L{IrcProtocol.deliverToMany}).

This module only parses, maps and renders; every chat rule is in L{chatsvc.chat}.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar, assert_never, cast

import structlog
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer, provider

from chatsvc.chat.ids import ID_SEQUENCE_BITS
from chatsvc.chat import (
    MAX_AWAY_LENGTH,
    MAX_NICK_LENGTH,
    MAX_ROOM_NAME_LENGTH,
    MAX_TOPIC_LENGTH,
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
    LoginRefused,
    Moderated,
    NameInUse,
    PasswordRequired,
    Renamed,
    Room,
    Said,
    StoredMessage,
    TopicChanged,
    Whispered,
    nick_key,
    validate_nick,
)
from chatsvc.irc.message import (
    MAX_LINE_BYTES,
    MAX_TAGS_BYTES,
    BadMessage,
    escapeTag,
    formatMessage,
    isupportTokens,
    parse,
    serverTime,
    splitText,
)
from chatsvc.sessions.addresses import describeAddress
from chatsvc.sessions.admission import Admission
from chatsvc.sessions.away import AwayNicks
from chatsvc.sessions.interfaces import ISession
from chatsvc.sessions.keepalive import KeepAlive
from chatsvc.sessions.limits import Limits
from chatsvc.sessions.lines import LineSession
from chatsvc.sessions.outbox import Outbox
from chatsvc.sessions.session import State

__all__ = ["CAPABILITIES", "IrcFactory", "IrcProtocol", "stripFormatting"]

_log = structlog.get_logger("chatsvc.irc")

T = TypeVar("T")

USER_HOST = "chat@chatsvc"
"""What follows a nickname in every member's source (C{Alice!chat@chatsvc}): the same for all,
so that nobody's address is shown to anyone."""

CAPABILITIES = (
    "account-notify",
    "account-tag",
    "away-notify",
    "batch",
    "cap-notify",
    "chghost",
    "draft/chathistory",
    "labeled-response",
    "echo-message",
    "extended-join",
    "invite-notify",
    "message-tags",
    "multi-prefix",
    "sasl",
    "server-time",
    "setname",
    "userhost-in-names",
)
"""
The IRCv3 capabilities this door offers (C{sasl} only where the server has accounts).
C{chghost} is offered and never used: nobody's user or host ever changes here.
"""

CHATHISTORY_CAP = "draft/chathistory"
"""The chathistory capability, still a draft of IRCv3's (as clients ask for it)."""
CHATHISTORY_LIMIT = 100
"""The most messages one CHATHISTORY request is answered with."""

MONITOR_LIMIT = 100
"""The most nicknames one client may MONITOR."""

# What a member's rendering depends on: one bit per capability that changes how an event of
# someone else's is written.
_TIME, _TAGS, _ACCOUNT, _EXTENDED, _AWAY, _INVITE = 1, 2, 4, 8, 16, 32

_FORMATTING = re.compile(
    "\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)

_PREFIXES = {"admin": "@", "owner": "@", "op": "@", "voice": "+"}
"""Roles as IRC's membership prefixes: C{@} for an operator, the owner or an admin, C{+}."""

_MODES = {"private": "i", "moderated": "m", "topiclock": "t", "registered": "R"}
"""The room settings as channel modes."""
_SETTINGS = {mode: setting for setting, mode in _MODES.items()}

_PRE_REGISTRATION = frozenset({"CAP", "NICK", "USER", "PASS", "AUTHENTICATE", "PING", "PONG", "QUIT"})

_NAMES_PER_LINE = 400
"""Bytes of nicknames on one C{RPL_NAMREPLY} line, within IRC's 512."""


def stripFormatting(text: str) -> str:
    """
    C{text} without IRC's formatting codes (bold, colours, italics, underline, reverse,
    monospace, reset): members of other doors would see them as C{^B} and C{^C}.
    """
    # Searched first: most text has no formatting, and is then kept as it is.
    return _FORMATTING.sub("", text) if _FORMATTING.search(text) is not None else text


def source(nick: str) -> str:
    """A member's source, as every message from it is written."""
    return f"{nick}!{USER_HOST}"


def channel(room: str) -> str:
    """The channel a room is on IRC."""
    return "#" + room


class _Refused(Exception):
    """A command refused with a numeric: C{numeric} and its parameters after the nickname."""

    def __init__(self, numeric: str, *params: str) -> None:
        super().__init__(numeric, params)
        self.numeric = numeric
        self.params = params


def _renderLines(command: str, target: str, text: str, head: str, tags: dict[str, str] | None, ctcp: bool = False) -> list[bytes]:
    # One or more messages carrying text, each within IRC's 512 bytes with its source.
    if not ctcp and "\r" not in text and "\n" not in text:
        # Most text fits in one message: written at once, without cutting.
        start = f":{head} {command} {target} :"
        whole = (start + text + "\r\n").encode("utf-8")
        if len(whole) <= MAX_LINE_BYTES:
            if tags:
                prefix = "@" + ";".join(key if value == "" else f"{key}={escapeTag(value)}" for key, value in tags.items())
                return [prefix.encode("utf-8") + b" " + whole]
            return [whole]
    room = MAX_LINE_BYTES - len(f":{head} {command} {target} :".encode("utf-8")) - 2
    if ctcp:
        room -= len("\x01ACTION \x01")
    lines = []
    for piece in splitText(text, room):
        body = f"\x01ACTION {piece}\x01" if ctcp else piece
        lines.append((formatMessage(command, target, body, source=head, tags=tags, trailing=True) + "\r\n").encode("utf-8"))
    return lines


@implementer(IMember, ISession)
@provider(IBatchDelivery)
class IrcProtocol(LineSession):
    """One IRC client's connection: commands into calls on the hub, events into IRC messages."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_TAGS_BYTES + MAX_LINE_BYTES
    factory: IrcFactory

    # Kept in slots rather than in the instance's dictionary (which still holds what Twisted's
    # classes set, and the labelled answer's gathering _enqueue while one is gathered): a
    # server holds thousands of these.
    __slots__ = (
        "caps", "profile", "_negotiating", "_wantedNick", "username", "realname", "_password",
        "_sasl", "_saslBuffer", "account", "_arriving", "_heard",
        "_pinged", "_batches", "_talkingIn", "_capture", "_pendingLabel", "monitoring",
    )

    def __init__(self) -> None:
        LineSession.__init__(self)
        self.caps: set[str] = set()
        self.profile = 0
        """The bits of the capabilities that change how events are written to this client."""
        self._negotiating = False
        self._wantedNick: str | None = None
        self.username: str | None = None
        self.realname = ""
        self._password: str | None = None
        self._sasl: str | None = None
        self._saslBuffer = ""
        self.account: Account | None = None
        """The account logged in to with SASL, before registration."""
        self._arriving = False
        self._heard = True
        self._pinged = False
        self._batches = 0
        # The rooms this client talked in, by the channel name as it wrote it: a room's name
        # is looked up (its key computed) once, not for every message.
        self._talkingIn: dict[str, Room] = {}
        self._capture: list[bytes] | None = None
        self._pendingLabel: tuple[str, list[bytes]] | None = None
        self.monitoring: dict[str, str] = {}
        """The nicknames this client MONITORs, by key, as it gave them."""

    # Connection life cycle

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        factory = self.factory
        self._startSession(transport, factory.limits, factory.clock, factory.admission, factory.outbox)
        factory.keepAlive.opened(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.keepAlive.closed(self)
        for nick in list(self.monitoring.values()):
            self.factory.unmonitor(self, nick)
        self._endSession()

    def _nameTimedOut(self) -> None:
        self._nameTimer = None
        self.disconnect("Registration timed out")

    def ping(self) -> None:
        self._enqueue(self._server("PING", self.factory.serverName))

    def pingTimedOut(self) -> None:
        interval = self.factory.keepAlive.interval
        self._leave(f"Ping timeout: {2 * interval:g} seconds")
        self.disconnect(f"Ping timeout: {2 * interval:g} seconds")

    # What the session asks of the door

    def _tellDelayed(self) -> None:
        self._notice("You are sending too fast; your lines are being delayed.")

    def _leave(self, reason: str | None, quitting: bool = False) -> None:
        hub = self.factory.hub
        if hub.depart(self, reason):
            _log.info("member_left", nick=self.nick, peer=self.peer, reason=reason, quit=quitting, door="irc")

    def disconnect(self, reason: str) -> None:
        """Close the connection for the server's own C{reason}, telling the client (C{ERROR})."""
        if self._state is State.CLOSING:
            return
        self._closeWith(f"ERROR :Closing link: {reason}\r\n".encode("utf-8"))
        self._leave(reason)

    # Reading

    def dataReceived(self, data: bytes) -> None:
        """Heard from (see the keepalive); then read as every line door reads (LineReading)."""
        self._heard = True
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._state is State.CLOSING:
            return
        delay = self._takeToken()
        if delay:
            self._hold(line, delay)
        else:
            self._handleLine(line)

    def _handleLine(self, line: bytes | None) -> None:
        if line is None:
            self._numeric("417", "Input line was too long")
            return
        try:
            self._dispatch(line.removesuffix(b"\r"))
        except Exception as error:
            self._failed(error)

    def _dispatch(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._enqueue(self._server("FAIL", "*", "INVALID_UTF8", "Message rejected: it is not UTF-8"))
            return
        try:
            message = parse(text)
        except BadMessage:
            return
        command = message.command
        handler = getattr(self, "irc_" + command, None)
        if self._state is State.AWAITING_NAME and command not in _PRE_REGISTRATION:
            if handler is not None or command.isalpha():
                self._numeric("451", "You have not registered")
            return
        label = message.tags.get("label") if "labeled-response" in self.caps else None
        if label is not None:
            self._labelled(label, lambda: self._run(command, handler, message.params))
        else:
            self._run(command, handler, message.params)

    def _run(self, command: str, handler: Callable[[Sequence[str]], None] | None, params: Sequence[str]) -> None:
        if handler is None:
            self._numeric("421", command, "Unknown command")
            return
        try:
            handler(params)
        except _Refused as refused:
            self._numeric(refused.numeric, *refused.params)
        except ChatError as error:
            # A refusal the command did not map: told as a notice, with the core's words.
            self._enqueue(self._server("FAIL", command, "REFUSED", str(error)))

    # labeled-response: what a command's answer is, marked with the label the client gave it

    def _labelled(self, label: str, run: Callable[[], None]) -> None:
        self._gather(label, [], run)

    def _gather(self, label: str, captured: list[bytes], run: Callable[[], None]) -> None:
        # Everything written to this client while the command runs is its answer: gathered
        # (the session's _enqueue shadowed on the instance), then sent with the label. An
        # answer that comes later (the command waits for the core) is gathered when it comes,
        # after what was gathered before.
        self._capture = captured
        self._enqueue = captured.append  # type: ignore[method-assign, assignment]
        try:
            run()
        finally:
            del self._enqueue
            self._capture = None
        if self._waiting:
            self._pendingLabel = (label, captured)
        else:
            self._sendLabelled(label, captured)

    def _answerLabelled(self, answer: Callable[[], None]) -> None:
        # The later answer of a command: gathered with the rest of its answer if labelled.
        pending, self._pendingLabel = self._pendingLabel, None
        if pending is None:
            answer()
        else:
            self._gather(pending[0], pending[1], answer)

    def _sendLabelled(self, label: str, lines: list[bytes]) -> None:
        data = [line for chunk in lines for line in chunk.split(b"\r\n") if line]
        tag = ("label=" + escapeTag(label)).encode("utf-8")
        if not data:
            self._enqueue(b"@" + tag + b" " + self._server("ACK"))
        elif len(data) == 1:
            self._enqueue(_tagged(data[0], tag) + b"\r\n")
        else:
            self._batches += 1
            batch = f"l{self._batches}"
            inner = b"batch=" + batch.encode("ascii")
            out = [b"@" + tag + b" " + self._server("BATCH", f"+{batch}", "labeled-response")]
            out += [_tagged(line, inner) + b"\r\n" for line in data]
            out.append(self._server("BATCH", f"-{batch}"))
            self._enqueue(b"".join(out))

    def reply(self, lines: Iterable[bytes]) -> None:
        """The session's paced reply; all of it at once while a labelled answer is gathered."""
        if self._capture is not None:
            self._capture.extend(lines)
        else:
            super().reply(lines)

    # Writing

    def _server(self, command: str, *params: str, tags: dict[str, str] | None = None) -> bytes:
        return (formatMessage(command, *params, source=self.factory.serverName, tags=tags) + "\r\n").encode("utf-8")

    def _numeric(self, numeric: str, *params: str) -> None:
        self._sendReplyLine(self._server(numeric, self.nick or "*", *params))

    def _numerics(self, lines: Iterable[tuple[str, ...]]) -> None:
        nick = self.nick or "*"
        self.reply(self._server(numeric, nick, *params) for numeric, *params in lines)

    def _notice(self, text: str) -> None:
        self._sendReplyLine(self._server("NOTICE", self.nick or "*", text))

    def _own(self, command: str, *params: str) -> None:
        # A message with this member as its source (its JOIN, PART, NICK as it sees them).
        assert self.nick is not None
        self._sendReplyLine((formatMessage(command, *params, source=source(self.nick)) + "\r\n").encode("utf-8"))

    # Registration

    def irc_CAP(self, params: Sequence[str]) -> None:
        if not params:
            raise _Refused("461", "CAP", "Not enough parameters")
        sub = params[0].upper()
        capabilities = self.factory.capabilities
        if sub == "LS":
            if self._state is State.AWAITING_NAME:
                self._negotiating = True
            version = params[1] if len(params) > 1 else ""
            shown = [
                "sasl=PLAIN" if name == "sasl" and version.isdigit() and int(version) >= 302 else name
                for name in capabilities
            ]
            if version.isdigit() and int(version) >= 302:
                self.caps.add("cap-notify")
            self._enqueue(self._server("CAP", self.nick or "*", "LS", " ".join(shown)))
        elif sub == "LIST":
            self._enqueue(self._server("CAP", self.nick or "*", "LIST", " ".join(sorted(self.caps))))
        elif sub == "REQ":
            if self._state is State.AWAITING_NAME:
                self._negotiating = True
            asked = params[1].split() if len(params) > 1 else []
            wanted = {name.removeprefix("-") for name in asked}
            if not wanted or not wanted <= set(capabilities):
                self._enqueue(self._server("CAP", self.nick or "*", "NAK", " ".join(asked)))
                return
            for name in asked:
                if name.startswith("-"):
                    self.caps.discard(name[1:])
                else:
                    self.caps.add(name)
            self.profile = (
                (_TIME if "server-time" in self.caps else 0)
                | (_TAGS if "message-tags" in self.caps else 0)
                | (_ACCOUNT if "account-tag" in self.caps else 0)
                | (_EXTENDED if "extended-join" in self.caps else 0)
                | (_AWAY if "away-notify" in self.caps else 0)
                | (_INVITE if "invite-notify" in self.caps else 0)
            )
            self._enqueue(self._server("CAP", self.nick or "*", "ACK", " ".join(asked)))
        elif sub == "END":
            if self._state is State.AWAITING_NAME:
                self._negotiating = False
                self._register()
        else:
            raise _Refused("410", sub, "Invalid CAP command")

    def irc_PASS(self, params: Sequence[str]) -> None:
        if self._state is not State.AWAITING_NAME:
            raise _Refused("462", "You may not reregister")
        if not params:
            raise _Refused("461", "PASS", "Not enough parameters")
        self._password = params[0]

    def irc_NICK(self, params: Sequence[str]) -> None:
        if not params or not params[0]:
            raise _Refused("431", "No nickname given")
        wanted = params[0]
        if self._state is State.AWAITING_NAME:
            try:
                validate_nick(wanted)
            except ChatError as error:
                raise _Refused("432", wanted, str(error))
            self._wantedNick = wanted
            self._register()
            return
        renamed = self.factory.hub.rename(self, wanted)

        def refused(error: ChatError) -> None:
            self._numeric("433" if isinstance(error, NameInUse) else "432", wanted, str(error))

        self._answered(renamed, self._renamed, refused)

    def _renamed(self, nick: str) -> None:
        self.nick = nick

    def irc_USER(self, params: Sequence[str]) -> None:
        if self._state is not State.AWAITING_NAME:
            raise _Refused("462", "You may not reregister")
        if len(params) < 4:
            raise _Refused("461", "USER", "Not enough parameters")
        self.username = params[0]
        self.realname = stripFormatting(params[3])
        self._register()

    def irc_AUTHENTICATE(self, params: Sequence[str]) -> None:
        accounts = self.factory.hub.accounts
        if accounts is None or self._state is not State.AWAITING_NAME:
            raise _Refused("904", "SASL authentication failed")
        if not params:
            raise _Refused("461", "AUTHENTICATE", "Not enough parameters")
        argument = params[0]
        if self.account is not None:
            raise _Refused("907", "You have already authenticated using SASL")
        if argument == "*":
            self._sasl, self._saslBuffer = None, ""
            raise _Refused("906", "SASL authentication aborted")
        if self._sasl is None:
            if argument.upper() != "PLAIN":
                self._numeric("908", "PLAIN", "are available SASL mechanisms")
                raise _Refused("904", "SASL authentication failed")
            self._sasl = "PLAIN"
            self._enqueue(b"AUTHENTICATE +\r\n")
            return
        if len(argument) > 400:
            self._sasl, self._saslBuffer = None, ""
            raise _Refused("905", "SASL message too long")
        if argument != "+":
            self._saslBuffer += argument
        if len(argument) == 400:
            return  # more to come
        data, self._saslBuffer, self._sasl = self._saslBuffer, "", None
        try:
            _, authcid, password = base64.b64decode(data, validate=True).decode("utf-8").split("\0")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise _Refused("904", "SASL authentication failed: the PLAIN message is malformed")
        login = accounts.login(authcid, password, self.host)

        def loggedIn(account: Account) -> None:
            self.account = account
            self._numeric("900", f"{self._wantedNick or account.nick}!{USER_HOST}", account.nick,
                          f"You are now logged in as {account.nick}")
            self._numeric("903", "SASL authentication successful")

        def refused(error: ChatError) -> None:
            self._numeric("904", f"SASL authentication failed: {error}")

        self._answered(login, loggedIn, refused)

    def _register(self) -> None:
        # Once the nickname and the user are known, and capability negotiation is over: in.
        if (
            self._wantedNick is None
            or self.username is None
            or self._negotiating
            or self._arriving
            or self._state is not State.AWAITING_NAME
        ):
            return
        hub = self.factory.hub
        nick = self._wantedNick
        password = self._password
        if self.account is not None:
            # The nickname asked for, if it is the account's (in any spelling); else the
            # account's own.
            same = nick_key(nick) == self.account.key
            arrived = hub.arrive(self, nick if same else self.account.nick, loggedIn=self.account)
        elif password is not None:
            # PASS account:password, or the password of the nickname asked for.
            account, colon, secret = password.partition(":")
            if colon and hub.accounts is not None and hub.accounts.registered(account) is not None:
                nick, password = account, secret
            arrived = hub.arrive(self, nick, password=password)
        else:
            arrived = hub.arrive(self, nick)
        self._arriving = True
        self._answered(arrived, self._arrived, self._notArrived)

    def _answered(
        self,
        answer: Deferred[T],
        handle: Callable[[T], None],
        refused: Callable[[ChatError], None],
    ) -> None:
        # The session's _whenAnswered, with the core's refusal itself for refused: its class
        # says which numeric tells it (a nickname in use, a failed login).
        errors: list[ChatError] = []

        def keep(failure: Failure) -> Failure:
            if isinstance(failure.value, ChatError):
                errors.append(failure.value)
            return failure

        self._whenAnswered(
            answer.addErrback(keep),
            lambda result: self._answerLabelled(lambda: handle(result)),
            lambda message: self._answerLabelled(lambda: refused(errors[-1])),
            self._failed,
        )

    def _notArrived(self, error: ChatError) -> None:
        self._arriving = False
        nick = self._wantedNick or "*"
        if isinstance(error, PasswordRequired):
            self._wantedNick = None
            self._numeric(
                "433", nick,
                f"{error.nick} is registered: log in with SASL, or PASS {error.nick}:PASSWORD",
            )
        elif isinstance(error, NameInUse):
            self._wantedNick = None
            self._numeric("433", nick, str(error))
        elif isinstance(error, LoginRefused):
            self._numeric("464", str(error))
            self.disconnect(str(error))
        else:
            # Kept out for the server's own reasons (lockdown, guests not admitted).
            self._numeric("465", str(error))
            self.disconnect(str(error))

    def _failed(self, error: BaseException) -> None:
        # A line (or the core's later answer to one) the server failed to handle: logged, the
        # client told, and the connection goes on.
        _log.error("line_failed", peer=self.peer, nick=self.nick, door="irc", exc_info=error)
        if self._state is not State.CLOSING:
            self._notice("The server failed to handle that line; it was dropped.")

    def _arrived(self, nick: str) -> None:
        hub = self.factory.hub
        self.nick = nick
        self._arriving = False
        self._named()
        account = hub.accountOf(self)
        _log.info(
            "member_joined", nick=nick, peer=self.peer, members=len(hub), door="irc",
            account=account is not None,
        )
        if account is not None and self.account is None and self._password is not None:
            self._numeric("900", f"{nick}!{USER_HOST}", account.nick, f"You are now logged in as {account.nick}")
        self._numerics(self._welcome())
        self._numerics(self._lusers())
        self._numerics(self._motd())
        self._numeric("221", "+r" if account is not None else "+")
        for room in hub.roomsOf(self):
            self._joined(room)

    def _welcome(self) -> Iterator[tuple[str, ...]]:
        factory = self.factory
        nick = self.nick
        assert nick is not None
        yield ("001", f"Welcome to {factory.network}, {nick}!{USER_HOST}")
        yield ("002", f"Your host is {factory.serverName}, running chatsvc")
        yield ("003", f"This server was created {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(factory.started))}")
        yield ("004", factory.serverName, "chatsvc", "r", "bimntRov", "bov")
        for tokens in isupportTokens(factory.isupport()):
            yield ("005", *tokens, "are supported by this server")

    def _lusers(self) -> Iterator[tuple[str, ...]]:
        hub = self.factory.hub
        members = len(hub)
        rooms = len(hub.rooms())
        yield ("251", f"There are {members} users and 0 invisible on 1 servers")
        yield ("254", str(rooms), "channels formed")
        yield ("255", f"I have {members} clients and 0 servers")
        yield ("265", str(members), str(members), f"Current local users {members}, max {members}")
        yield ("266", str(members), str(members), f"Current global users {members}, max {members}")

    def _motd(self) -> Iterator[tuple[str, ...]]:
        motd = self.factory.motd
        if motd is None:
            yield ("422", "MOTD File is missing")
            return
        yield ("375", f"- {self.factory.serverName} Message of the day - ")
        for line in motd:
            yield ("372", f"- {line}")
        yield ("376", "End of /MOTD command.")

    def irc_PING(self, params: Sequence[str]) -> None:
        if not params:
            raise _Refused("409", "No origin specified")
        self._enqueue(self._server("PONG", self.factory.serverName, params[0]))

    def irc_PONG(self, params: Sequence[str]) -> None:
        """Heard (as every line is): nothing more to do."""

    def irc_QUIT(self, params: Sequence[str]) -> None:
        reason = stripFormatting(params[0]) if params and params[0] else None
        self._leave(f"Quit: {reason}" if reason else "Quit", quitting=True)
        self._closeWith(f"ERROR :Closing link: {'Quit: ' + reason if reason else 'Quit'}\r\n".encode("utf-8"))

    def irc_MOTD(self, params: Sequence[str]) -> None:
        self._numerics(self._motd())

    def irc_LUSERS(self, params: Sequence[str]) -> None:
        self._numerics(self._lusers())

    # Rooms

    def _room(self, name: str, numeric: str = "403") -> Room:
        if not name.startswith("#"):
            raise _Refused(numeric, name, "No such channel")
        try:
            return self.factory.hub.room(name[1:])
        except ChatError:
            raise _Refused(numeric, name, "No such channel")

    def _myRoom(self, name: str) -> Room:
        room = self._room(name)
        if self not in room:
            raise _Refused("442", name, "You're not on that channel")
        return room

    def irc_JOIN(self, params: Sequence[str]) -> None:
        if not params:
            raise _Refused("461", "JOIN", "Not enough parameters")
        if params[0] == "0":
            for room in self.factory.hub.roomsOf(self):
                self._part(room, None)
            return
        hub = self.factory.hub
        for name in params[0].split(","):
            if not name.startswith("#"):
                self._numeric("403", name, "No such channel")
                continue
            already = any(room.name.casefold() == name[1:].casefold() for room in hub.roomsOf(self))
            if already:
                continue
            try:
                room = hub.join(self, name[1:])
            except ChatError as error:
                self._numeric(_joinRefusal(str(error)), name, str(error))
                continue
            self._joined(room)

    def _joined(self, room: Room) -> None:
        # What a client is sent on joining: its own JOIN, the topic, the names, and (unless
        # it asks for history itself) the latest messages.
        assert self.nick is not None
        if "extended-join" in self.caps:
            account = self.factory.hub.accountOf(self)
            self._own("JOIN", channel(room.name), account.nick if account else "*", self.realname or self.nick)
        else:
            self._own("JOIN", channel(room.name))
        if room.topic is not None:
            self._numeric("332", channel(room.name), room.topic)
        self._names(room, whole=not self.factory.hub.crowded(room))
        self._history(room)

    def _history(self, room: Room) -> None:
        # A client that asks for history itself (CHATHISTORY) is sent none unasked.
        count = self.factory.historyLines
        if not count or CHATHISTORY_CAP in self.caps:
            return
        messages = room.history(count)
        if messages:
            self._sendHistory(channel(room.name), messages)

    def _sendHistory(self, target: str, messages: Sequence[StoredMessage], always: bool = False) -> None:
        # Stored messages, in a chathistory batch where the client has batch; an empty batch
        # only when asked for (CHATHISTORY answers, even with nothing).
        if not messages and not always:
            return
        self._batches += 1
        lines: list[bytes] = []
        batch = None
        if "batch" in self.caps:
            batch = f"h{self._batches}"
            lines.append(self._server("BATCH", f"+{batch}", "chathistory", target))
        for message in messages:
            lines.extend(self._stored(message, target, batch))
        if batch is not None:
            lines.append(self._server("BATCH", f"-{batch}"))
        self.reply(lines)

    def irc_CHATHISTORY(self, params: Sequence[str]) -> None:
        """
        CHATHISTORY LATEST|BEFORE|AFTER|AROUND|BETWEEN <target> <reference>... <limit>, and
        TARGETS <from> <to> <limit>: a page of a room's stored history (IRCv3 chathistory).
        """
        if len(params) < 3:
            self._fail("CHATHISTORY", "NEED_MORE_PARAMS", "Missing parameters")
            return
        sub = params[0].upper()
        if sub == "TARGETS":
            self._historyTargets(params)
            return
        if sub not in ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN") or len(params) < (5 if sub == "BETWEEN" else 4):
            self._fail("CHATHISTORY", "INVALID_PARAMS", sub, "Unknown or incomplete subcommand")
            return
        target = params[1]
        limit = _historyLimit(params[-1])
        if limit is None:
            self._fail("CHATHISTORY", "INVALID_PARAMS", sub, "Invalid limit")
            return
        if not target.startswith("#"):
            # Private messages are not kept: there is nothing to give.
            self._sendHistory(target, [], always=True)
            return
        try:
            room = self._myRoom(target)
        except _Refused:
            self._fail("CHATHISTORY", "INVALID_TARGET", sub, target, "You are not on that channel")
            return
        references = [None if text == "*" and sub == "LATEST" else _reference(text) for text in params[2:-1]]
        if None in references and not (sub == "LATEST" and params[2] == "*"):
            self._fail("CHATHISTORY", "INVALID_PARAMS", sub, "Invalid message reference")
            return
        hub = self.factory.hub
        first = references[0]
        page: Deferred[list[StoredMessage]]
        if sub == "LATEST":
            page = hub.history(room, None, None, limit).addCallback(
                lambda found: [m for m in found[0] if first is None or m.id > first])
        elif sub == "BEFORE":
            page = hub.history(room, first, None, limit).addCallback(lambda found: found[0])
        elif sub == "AFTER":
            assert first is not None
            page = hub.history(room, None, first, limit).addCallback(lambda found: found[0])
        elif sub == "AROUND":
            assert first is not None
            # The reference in the middle: fewer before it than from it on, if one must go.
            before = hub.history(room, first, None, (limit - 1) // 2) if limit > 1 else succeed(([], False))
            page = before.addCallback(lambda found: self._andAfter(room, found[0], first, limit - len(found[0])))
        else:
            second = references[1]
            assert first is not None and second is not None
            low, high = min(first, second), max(first, second)
            page = hub.history(room, None, low, limit).addCallback(
                lambda found: [m for m in found[0] if m.id < high])
        self._answered(page, lambda messages: self._sendHistory(target, messages, always=True),
                       lambda error: self._fail("CHATHISTORY", "MESSAGE_ERROR", sub, str(error)))

    def _andAfter(self, room: Room, before: list[StoredMessage], around: int, limit: int) -> Deferred[list[StoredMessage]]:
        # The messages from the id around on (it included), after those before it.
        after = self.factory.hub.history(room, None, around - 1, limit)
        return after.addCallback(lambda found: before + found[0])

    def _historyTargets(self, params: Sequence[str]) -> None:
        # The rooms this member is in that have messages between the two times, the latest first.
        first, second = _reference(params[1]), _reference(params[2])
        limit = _historyLimit(params[3]) if len(params) > 3 else None
        if first is None or second is None or limit is None:
            self._fail("CHATHISTORY", "INVALID_PARAMS", "TARGETS", "Invalid parameters")
            return
        low, high = min(first, second), max(first, second)
        latest = []
        for room in self.factory.hub.roomsOf(self):
            recent = [message for message in room.history(self.factory.hub.historyKept) if low < message.id < high]
            if recent:
                latest.append((recent[-1].time, room.name))
        latest.sort(reverse=True)
        self._batches += 1
        batch = f"h{self._batches}"
        lines = [self._server("BATCH", f"+{batch}", "draft/chathistory-targets")]
        lines += [
            self._server("CHATHISTORY", "TARGETS", channel(name), serverTime(when), tags={"batch": batch})
            for when, name in latest[:limit]
        ]
        lines.append(self._server("BATCH", f"-{batch}"))
        self.reply(lines)

    def _fail(self, command: str, code: str, *context: str) -> None:
        self._sendReplyLine(self._server("FAIL", command, code, *context))

    def _stored(self, message: StoredMessage, target: str, batch: str | None) -> list[bytes]:
        if "server-time" not in self.caps:
            # Without times of their own, old lines would pass for new: told as notices, dated.
            stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(message.time))
            shown = f"* {message.nick} {message.text}" if message.action else f"<{message.nick}> {message.text}"
            return _renderLines("NOTICE", target, f"[{stamp} UTC] {shown}", self.factory.serverName, None)
        tags = {"time": serverTime(message.time)}
        if "message-tags" in self.caps:
            tags["msgid"] = str(message.id)
        if batch is not None:
            tags["batch"] = batch
        return _renderLines("PRIVMSG", target, message.text, source(message.nick), tags, ctcp=message.action)

    def _names(self, room: Room, whole: bool = True) -> None:
        # RPL_NAMREPLY: every member; or, on joining a crowded room (see docs/irc.md), only
        # those with a role and the newcomer, with a notice of how many there are.
        hub = self.factory.hub
        roles = hub.rolesIn(room)
        withHost = "userhost-in-names" in self.caps
        names = []
        listed = hub.nicks(room) if whole else sorted({*roles, self.nick or ""} - {""}, key=str.casefold)
        for nick in listed:
            shown = f"{nick}!{USER_HOST}" if withHost else nick
            role = roles.get(nick)
            names.append(_PREFIXES[role] + shown if role else shown)
        target = channel(room.name)
        lines: list[tuple[str, ...]] = []
        chunk: list[str] = []
        used = 0
        for name in names:
            size = len(name.encode("utf-8")) + 1
            if chunk and used + size > _NAMES_PER_LINE:
                lines.append(("353", "=", target, " ".join(chunk)))
                chunk, used = [], 0
            chunk.append(name)
            used += size
        if chunk:
            lines.append(("353", "=", target, " ".join(chunk)))
        lines.append(("366", target, "End of /NAMES list"))
        self._numerics(lines)
        if not whole:
            self._sendReplyLine(self._server(
                "NOTICE", target,
                f"*** {target} has {len(room)} members, too many to list on joining: NAMES {target} lists them all",
            ))

    def irc_NAMES(self, params: Sequence[str]) -> None:
        if not params:
            raise _Refused("461", "NAMES", "Not enough parameters")
        for name in params[0].split(","):
            try:
                room = self._room(name)
            except _Refused:
                self._numeric("366", name, "End of /NAMES list")
                continue
            self._names(room)

    def irc_PART(self, params: Sequence[str]) -> None:
        if not params:
            raise _Refused("461", "PART", "Not enough parameters")
        reason = stripFormatting(params[1]) if len(params) > 1 and params[1] else None
        for name in params[0].split(","):
            try:
                room = self._myRoom(name)
            except _Refused as refused:
                self._numeric(refused.numeric, *refused.params)
                continue
            self._part(room, reason)

    def _part(self, room: Room, reason: str | None) -> None:
        self.factory.hub.part(self, room.name, reason)
        if reason:
            self._own("PART", channel(room.name), reason)
        else:
            self._own("PART", channel(room.name))

    def irc_TOPIC(self, params: Sequence[str]) -> None:
        if not params:
            raise _Refused("461", "TOPIC", "Not enough parameters")
        room = self._room(params[0])
        if len(params) == 1:
            if room.topic is None:
                self._numeric("331", params[0], "No topic is set")
            else:
                self._numeric("332", params[0], room.topic)
            return
        if self not in room:
            raise _Refused("442", params[0], "You're not on that channel")
        topic = stripFormatting(params[1]).strip()
        try:
            self.factory.hub.setTopic(self, room, topic or None)
        except ChatError as error:
            raise _Refused("482", params[0], str(error))

    def irc_LIST(self, params: Sequence[str]) -> None:
        hub = self.factory.hub
        rooms = hub.roomsFor(self)
        if params and params[0]:
            wanted = {name.removeprefix("#").casefold() for name in params[0].split(",")}
            rooms = [room for room in rooms if room.name.casefold() in wanted]
        lines: list[tuple[str, ...]] = [("321", "Channel", "Users  Name")]
        lines += [("322", channel(room.name), str(len(room)), room.topic or "") for room in rooms]
        lines.append(("323", "End of /LIST"))
        self._numerics(lines)

    # Talking

    def irc_PRIVMSG(self, params: Sequence[str]) -> None:
        self._message("PRIVMSG", params, self._numeric)

    def irc_NOTICE(self, params: Sequence[str]) -> None:
        # A NOTICE is never answered automatically, even with an error (RFC 1459).
        try:
            self._message("NOTICE", params, lambda *refusal: None)
        except (_Refused, ChatError):
            pass

    def irc_TAGMSG(self, params: Sequence[str]) -> None:
        """Client-only tags (typing notifications): the other doors have nothing to show."""

    def _message(self, command: str, params: Sequence[str], refuse: Callable[..., None]) -> None:
        if not params:
            raise _Refused("411", f"No recipient given ({command})")
        if len(params) < 2 or not params[1]:
            raise _Refused("412", "No text to send")
        text = params[1]
        action = text.startswith("\x01ACTION ") or text == "\x01ACTION\x01"
        if text.startswith("\x01") and not action:
            return  # CTCP requests other than ACTION: nobody on the other doors answers them
        if action:
            text = text.removeprefix("\x01ACTION").removesuffix("\x01").strip()
            if not text:
                return
        text = stripFormatting(text)
        hub = self.factory.hub
        for target in params[0].split(",")[:4]:
            if target.startswith("#"):
                room = self._talkingIn.get(target)
                if room is None or self not in room:
                    try:
                        room = self._room(target, "403")
                    except _Refused:
                        refuse("403", target, "No such channel")
                        continue
                    if self in room and len(self._talkingIn) < 64:
                        self._talkingIn[target] = room
                if self not in room:
                    refuse("404", target, "Cannot send to channel (you are not on it)")
                    continue
                try:
                    event: Said | Acted = hub.act(self, room, text) if action else hub.say(self, room, text)
                except ChatError as error:
                    refuse("404", target, str(error))
                    continue
                if "echo-message" in self.caps:
                    shown = event.text if isinstance(event, Said) else event.action
                    self._echo(command, target, shown, event, action)
            else:
                try:
                    sent = hub.whisper(self, target, f"* {text}" if action else text)
                except ChatError as error:
                    refuse("401", target, str(error))
                    continue
                away = hub.awayOf(sent.recipient)
                if away is not None and command == "PRIVMSG":
                    self._numeric("301", sent.recipient, away)
                if "echo-message" in self.caps:
                    self._echo(command, sent.recipient, sent.text, sent, False)

    def _echo(self, command: str, target: str, text: str, event: Said | Acted | Whispered, action: bool) -> None:
        assert self.nick is not None
        tags = self._tagsFor(event)
        for line in _renderLines(command, target, text, source(self.nick), tags, ctcp=action):
            self._enqueue(line)

    def _tagsFor(self, event: Event) -> dict[str, str] | None:
        tags = {}
        if "server-time" in self.caps:
            tags["time"] = serverTime(event.time)
        if "message-tags" in self.caps:
            tags["msgid"] = str(event.id)
        return tags or None

    # Who is who

    def irc_WHO(self, params: Sequence[str]) -> None:
        hub = self.factory.hub
        mask = params[0] if params else "*"
        # WHOX: "WHO <mask> %<fields>[,<token>]" asks for a 354 with those fields.
        fields = token = None
        if len(params) > 1 and params[1].startswith("%"):
            fields, _, token = params[1][1:].partition(",")
        found: list[tuple[str, str, str | None]] = []  # channel, nickname, role
        if mask.startswith("#"):
            try:
                room = self._room(mask)
            except _Refused:
                room = None
            if room is not None:
                roles = hub.rolesIn(room)
                found = [(mask, nick, roles.get(nick)) for nick in hub.nicks(room)]
        else:
            member = hub.memberNamed(mask)
            if member is not None:
                found = [("*", hub.nickOf(member), None)]
        lines = [
            self._whoxLine(where, nick, role, fields, token or "0") if fields is not None
            else self._whoLine(where, nick, role)
            for where, nick, role in found
        ]
        lines.append(("315", mask, "End of /WHO list"))
        self._numerics(lines)

    def _whoFlags(self, nick: str, role: str | None) -> str:
        away = nick in self.factory.away.messages
        return ("G" if away else "H") + (_PREFIXES[role] if role else "")

    def _whoLine(self, target: str, nick: str, role: str | None) -> tuple[str, ...]:
        user, _, host = USER_HOST.partition("@")
        realname = self.factory.realname(nick)
        return ("352", target, user, host, self.factory.serverName, nick, self._whoFlags(nick, role),
                f"0 {realname}")

    def _whoxLine(self, target: str, nick: str, role: str | None, fields: str, token: str) -> tuple[str, ...]:
        # The fields asked for, in WHOX's own order (t c u i h s n f d l a o r), not the asker's.
        hub = self.factory.hub
        user, _, host = USER_HOST.partition("@")
        member = hub.memberNamed(nick)
        account = None if member is None else hub.accountOf(member)
        values = {
            "t": token,
            "c": target,
            "u": user,
            "i": "255.255.255.255",
            "h": host,
            "s": self.factory.serverName,
            "n": nick,
            "f": self._whoFlags(nick, role),
            "d": "0",
            "l": "0",
            "a": account.nick if account is not None else "0",
            "o": "n/a",
            "r": self.factory.realname(nick),
        }
        return ("354", *(values[letter] for letter in "tcuihsnfdlaor" if letter in fields))

    def irc_WHOIS(self, params: Sequence[str]) -> None:
        if not params:
            raise _Refused("431", "No nickname given")
        nick = params[-1]
        try:
            who = self.factory.hub.whois(self, nick)
        except ChatError:
            self._numerics([("401", nick, "No such nick/channel"), ("318", nick, "End of /WHOIS list")])
            return
        if not who.online:
            self._numerics([("401", who.nick, "No such nick/channel"), ("318", who.nick, "End of /WHOIS list")])
            return
        user, _, host = USER_HOST.partition("@")
        lines: list[tuple[str, ...]] = [("311", who.nick, user, host, "*", self.factory.realname(who.nick))]
        roles = dict(who.roles)
        if who.rooms:
            shown = " ".join(
                (_PREFIXES[roles[room]] if room in roles else "") + channel(room) for room in who.rooms
            )
            lines.append(("319", who.nick, shown))
        lines.append(("312", who.nick, self.factory.serverName, "chatsvc"))
        if who.admin:
            lines.append(("313", who.nick, "is a server admin"))
        if who.registered is not None:
            lines.append(("330", who.nick, who.nick, "is logged in as"))
        if who.away is not None:
            lines.append(("301", who.nick, who.away))
        if who.idle is not None:
            lines.append(("317", who.nick, str(int(who.idle)), "seconds idle"))
        lines.append(("318", who.nick, "End of /WHOIS list"))
        self._numerics(lines)

    def irc_ISON(self, params: Sequence[str]) -> None:
        hub = self.factory.hub
        found = []
        for nick in " ".join(params).split():
            member = hub.memberNamed(nick)
            if member is not None:
                found.append(hub.nickOf(member))
        self._numeric("303", " ".join(found))

    def irc_USERHOST(self, params: Sequence[str]) -> None:
        hub = self.factory.hub
        found = []
        for nick in params[:5]:
            member = hub.memberNamed(nick)
            if member is not None:
                found.append(f"{hub.nickOf(member)}=+{USER_HOST}")
        self._numeric("302", " ".join(found))

    def irc_AWAY(self, params: Sequence[str]) -> None:
        message = stripFormatting(params[0]) if params and params[0] else None
        kept = self.factory.hub.setAway(self, message)
        if kept is None:
            self._numeric("305", "You are no longer marked as being away")
        else:
            self._numeric("306", "You have been marked as being away")

    def irc_SETNAME(self, params: Sequence[str]) -> None:
        if not params or not params[0].strip():
            self._enqueue(self._server("FAIL", "SETNAME", "INVALID_REALNAME", "A real name may not be empty"))
            return
        realname = stripFormatting(params[0]).strip()[:100]
        self.realname = realname
        assert self.nick is not None
        line = (formatMessage("SETNAME", realname, source=source(self.nick), trailing=True) + "\r\n").encode("utf-8")
        for member in self.factory.sharing(self, "setname"):
            member._enqueue(line)

    def irc_MONITOR(self, params: Sequence[str]) -> None:
        if not params:
            raise _Refused("461", "MONITOR", "Not enough parameters")
        sub = params[0]
        factory = self.factory
        if sub == "+" and len(params) > 1:
            wanted = [nick for nick in params[1].split(",") if nick]
            room = MONITOR_LIMIT - len(self.monitoring)
            if len(wanted) > room:
                self._numeric("734", str(MONITOR_LIMIT), ",".join(wanted[room:]), "Monitor list is full")
                wanted = wanted[:max(room, 0)]
            for nick in wanted:
                factory.monitor(self, nick)
            self._monitorStatus(wanted)
        elif sub == "-" and len(params) > 1:
            for nick in params[1].split(","):
                factory.unmonitor(self, nick)
        elif sub.upper() == "C":
            for nick in list(self.monitoring.values()):
                factory.unmonitor(self, nick)
        elif sub.upper() == "L":
            names = list(self.monitoring.values())
            lines: list[tuple[str, ...]] = [("732", ",".join(names[start : start + 20])) for start in range(0, len(names), 20)]
            lines.append(("733", "End of MONITOR list"))
            self._numerics(lines)
        elif sub.upper() == "S":
            self._monitorStatus(list(self.monitoring.values()))
        else:
            raise _Refused("461", "MONITOR", "Not enough parameters")

    def _monitorStatus(self, nicks: Sequence[str]) -> None:
        hub = self.factory.hub
        online, offline = [], []
        for nick in nicks:
            member = hub.memberNamed(nick)
            if member is None:
                offline.append(nick)
            else:
                online.append(f"{hub.nickOf(member)}!{USER_HOST}")
        if online:
            self._numeric("730", ",".join(online))
        if offline:
            self._numeric("731", ",".join(offline))

    # Moderation

    def irc_MODE(self, params: Sequence[str]) -> None:
        if not params:
            raise _Refused("461", "MODE", "Not enough parameters")
        target = params[0]
        hub = self.factory.hub
        if not target.startswith("#"):
            if self.nick is None or target.casefold() != self.nick.casefold():
                raise _Refused("502", "Can't change mode for other users")
            self._numeric("221", "+r" if hub.accountOf(self) is not None else "+")
            return
        room = self._room(target)
        if len(params) == 1:
            settings = hub.roomSettings(room)
            modes = "+n" + "".join(_MODES[name] for name, on in settings.items() if on and name in _MODES)
            self._numeric("324", target, modes)
            return
        changes = params[1]
        arguments = list(params[2:])
        on = True
        for letter in changes:
            if letter in "+-":
                on = letter == "+"
                continue
            if letter == "b" and not arguments:
                self._banList(room, target)
                continue
            try:
                if letter in "ov":
                    nick = arguments.pop(0) if arguments else ""
                    if not nick:
                        raise _Refused("461", "MODE", "Not enough parameters")
                    hub.setRole(self, room.name, nick, "op" if letter == "o" else "voice", on)
                elif letter == "b":
                    nick = arguments.pop(0).split("!")[0]
                    if on:
                        hub.sanction(self, "ban", room.name, nick, None, None)
                    else:
                        hub.lift(self, "ban", room.name, nick)
                elif letter in _SETTINGS:
                    hub.setting(self, room.name, _SETTINGS[letter], on)
                elif letter == "n":
                    continue
                else:
                    raise _Refused("472", letter, "is unknown mode char to me")
            except ChatError as error:
                self._numeric(_moderationRefusal(str(error)), target, str(error))

    def _banList(self, room: Room, target: str) -> None:
        try:
            bans = self.factory.hub.sanctions(self, "ban", room.name)
        except ChatError:
            bans = []
        lines: list[tuple[str, ...]] = [
            ("367", target, f"{ban.target}!*@*", ban.by, str(int(self.factory.clock.seconds()))) for ban in bans
        ]
        lines.append(("368", target, "End of channel ban list"))
        self._numerics(lines)

    def irc_KICK(self, params: Sequence[str]) -> None:
        if len(params) < 2:
            raise _Refused("461", "KICK", "Not enough parameters")
        room = self._myRoom(params[0])
        reason = stripFormatting(params[2]).strip() if len(params) > 2 else ""
        for nick in params[1].split(","):
            try:
                self.factory.hub.kick(self, room.name, nick, reason or None)
            except ChatError as error:
                self._numeric(_moderationRefusal(str(error)), params[0], str(error))

    def irc_INVITE(self, params: Sequence[str]) -> None:
        if len(params) < 2:
            raise _Refused("461", "INVITE", "Not enough parameters")
        nick, name = params[0], params[1]
        room = self._myRoom(name)
        try:
            self.factory.hub.invite(self, room.name, nick)
        except ChatError as error:
            self._numeric(_moderationRefusal(str(error)), name, str(error))
            return
        self._numeric("341", nick, name)

    # Events from the core

    def deliver(self, event: Event) -> None:
        """Write one event to this client, in IRC's words."""
        lines = _render(event, self.profile, self.factory, self.nick)
        pending = self._pendingLabel
        if pending is not None and isinstance(event, Renamed) and event.old == self.nick:
            # The rename this client is waiting for: part of its labelled answer.
            pending[1].extend(lines)
            return
        for line in lines:
            self._enqueue(line)
        if isinstance(event, Moderated) and event.target == self.nick:
            self._moderatedHere(event)

    def _moderatedHere(self, event: Moderated) -> None:
        if event.action in ("kill", "suspend"):
            why = f" ({event.reason})" if event.reason else ""
            self.disconnect(f"{'Killed' if event.action == 'kill' else 'Suspended'} by {event.by}{why}")

    @staticmethod
    def deliverToMany(
        members: Sequence[IMember],
        event: Event,
        exclude: IMember | None,
        failed: DeliveryFailed,
    ) -> None:
        """
        L{deliver} to many clients at once (L{IBatchDelivery}): the event is rendered once for
        each set of capabilities that changes how it is written, not once a client.
        """
        # Rendered once per set of capabilities (a handful at most), as one string of bytes:
        # then, for most members, one append to what is gathered for it this turn.
        # Members in a row mostly share their capabilities: the last rendering is kept at hand.
        rendered: dict[int, bytes] = {}
        target = event.target if event.__class__ is Moderated else None
        lastProfile, data = -1, b""
        for member in cast("Sequence[IrcProtocol]", members):
            if member is exclude:
                continue
            try:
                if target is not None and target == member.nick:
                    member.deliver(event)
                    continue
                profile = member.profile
                if profile != lastProfile:
                    found = rendered.get(profile)
                    if found is None:
                        found = rendered[profile] = b"".join(_render(event, profile, member.factory, None))
                    lastProfile, data = profile, found
                outbox = member._outbox
                if outbox:
                    outbox.append(data)
                elif data:
                    member._enqueue(data)
            except Exception as error:
                failed(member, event, error)


def _render(event: Event, profile: int, factory: IrcFactory, me: str | None) -> list[bytes]:
    """
    C{event} as the IRC lines a client with capability bits C{profile} is sent. C{me}: the
    recipient's nickname, where the lines depend on it (a private message, a moderator's
    action on the recipient), or None in a room's broadcast.
    """
    server, hub, away = factory.serverName, factory.hub, factory.away
    tags: dict[str, str] | None = None
    if profile & (_TIME | _TAGS):
        tags = {}
        if profile & _TIME:
            tags["time"] = serverTime(event.time)
        if profile & _TAGS and event.id:
            tags["msgid"] = str(event.id)

    def line(command: str, *params: str, origin: str | None = None) -> bytes:
        return (formatMessage(command, *params, source=origin or server, tags=tags) + "\r\n").encode("utf-8")

    def accountTags(nick: str) -> dict[str, str] | None:
        if not profile & _ACCOUNT:
            return tags
        member = hub.memberNamed(nick)
        account = None if member is None else hub.accountOf(member)
        return tags if account is None else {**(tags or {}), "account": account.nick}

    match event:
        case Said(room=room, nick=nick, text=text):
            return _renderLines("PRIVMSG", channel(room), text, source(nick), accountTags(nick))
        case Acted(room=room, nick=nick, action=action):
            return _renderLines("PRIVMSG", channel(room), action, source(nick), accountTags(nick), ctcp=True)
        case Joined(room=room, nick=nick):
            return [_joinLine(room, nick, profile, tags, hub, away)]
        case Left(room=room, nick=nick, reason=reason):
            if reason:
                return [line("PART", channel(room), reason, origin=source(nick))]
            return [line("PART", channel(room), origin=source(nick))]
        case TopicChanged(room=room, nick=nick, topic=topic):
            return [line("TOPIC", channel(room), topic or "", origin=source(nick))]
        case Renamed(old=old, new=new):
            return [line("NICK", new, origin=source(old))]
        case Whispered(sender=sender, recipient=recipient, text=text):
            return _renderLines("PRIVMSG", recipient, text, source(sender), accountTags(sender))
        case JoinsAndLeaves():
            # A crowded room's joins and leaves, told together (see docs/irc.md): as the line
            # door tells them, in notices of as many names as fit, not a JOIN each.
            return factory.summaries.render(event, profile, line)
        case Moderated():
            return _moderated(event, line, server, me, profile)
        case _:
            assert_never(event)


def _joinLine(
    room: str, nick: str, profile: int, tags: dict[str, str] | None, hub: Hub, awayNicks: AwayNicks
) -> bytes:
    # A JOIN (with the account and real name, for extended-join), and the newcomer's away
    # message after it for away-notify (the client would not know it otherwise).
    params: tuple[str, ...] = (channel(room),)
    if profile & _EXTENDED:
        member = hub.memberNamed(nick)
        account = None if member is None else hub.accountOf(member)
        realname = getattr(member, "realname", "") or nick
        params = (channel(room), account.nick if account else "*", realname)
    line = (formatMessage("JOIN", *params, source=source(nick), tags=tags) + "\r\n").encode("utf-8")
    if profile & _AWAY:
        away = awayNicks.messages.get(nick)
        if away is not None:
            line += (formatMessage("AWAY", away, source=source(nick), trailing=True) + "\r\n").encode("utf-8")
    return line


def _moderated(
    event: Moderated, line: Callable[..., bytes], server: str, me: str | None, profile: int
) -> list[bytes]:
    # A moderator's action as the IRC message for it: KICK, MODE; else a NOTICE, from the
    # server, with the core's words.
    by = source(event.by)
    target = event.target or ""
    room = event.room
    if room is not None:
        where = channel(room)
        match event.action:
            case "kick":
                return [line("KICK", where, target, event.reason or event.by, origin=by)]
            case "ban":
                return [
                    line("MODE", where, "+b", f"{target}!*@*", origin=by),
                    line("KICK", where, target, event.describe(), origin=by),
                ]
            case "unban":
                return [line("MODE", where, "-b", f"{target}!*@*", origin=by)]
            case "op" | "deop" | "voice" | "devoice" | "owner":
                letter = "v" if "voice" in event.action else "o"
                sign = "-" if event.action.startswith("de") else "+"
                return [line("MODE", where, sign + letter, target, origin=by)]
            case "set" if event.setting in _MODES:
                sign = "+" if event.on else "-"
                return [line("MODE", where, sign + _MODES[event.setting], origin=by)]
            case "invite" if (me is not None and target == me) or profile & _INVITE:
                return [line("INVITE", target, where, origin=by)]
        return [line("NOTICE", where, f"*** {event.describe()}")]
    return [line("NOTICE", me or "*", f"*** {event.describe()}")]


class _Summaries:
    """
    The notices of a crowded room's summary (L{JoinsAndLeaves}), made once for every member
    it goes to: the hub hands each member the same runs of names, but skips, for one who joined
    among them, the names before its own (C{since}). The notices of the whole runs are made
    once; a member is given those after its skip, the one it falls in made again from there.
    """

    def __init__(self) -> None:
        # The runs last rendered (kept, so that their id is theirs) and, by capability bits,
        # their notices: each with whether they tell of joins, their names, and the line.
        self._runs: object = None
        self._made: dict[int, list[tuple[bool, list[str], bytes]]] = {}

    def render(self, event: JoinsAndLeaves, profile: int, line: Callable[..., bytes]) -> list[bytes]:
        if event.runs is not self._runs:
            self._runs, self._made = event.runs, {}
        notices = self._made.get(profile)
        target = channel(event.room)
        if notices is None:
            notices = self._made[profile] = [
                (joined, names, _summaryLine(line, target, joined, names))
                for joined, nicks in event.runs
                for names in _namesWithin(nicks, _NAMES_PER_LINE)
            ]
        skip = event.since
        out = []
        for joined, names, made in notices:
            if skip >= len(names):
                skip -= len(names)
                continue
            out.append(_summaryLine(line, target, joined, names[skip:]) if skip else made)
            skip = 0
        return out


def _summaryLine(line: Callable[..., bytes], target: str, joined: bool, names: Sequence[str]) -> bytes:
    return line("NOTICE", target, f"*** {'Joined' if joined else 'Left'}: {', '.join(names)}")


def _namesWithin(nicks: Sequence[str], room: int) -> Iterator[list[str]]:
    # Runs of nicknames whose UTF-8, with ", " between, fits in room bytes.
    run: list[str] = []
    used = 0
    for nick in nicks:
        size = len(nick.encode("utf-8")) + 2
        if run and used + size > room:
            yield run
            run, used = [], 0
        run.append(nick)
        used += size
    if run:
        yield run


def _tagged(line: bytes, tag: bytes) -> bytes:
    # A formatted line with one more tag, unless it has a batch tag already (a line of an
    # inner batch belongs to that batch, and its BATCH lines to the outer one).
    if line.startswith(b"@"):
        tags, _, rest = line[1:].partition(b" ")
        if tag.startswith(b"batch=") and any(item.startswith(b"batch=") for item in tags.split(b";")):
            return line
        return b"@" + tag + b";" + tags + b" " + rest
    return b"@" + tag + b" " + line


def _historyLimit(text: str) -> int | None:
    # A CHATHISTORY limit: a positive number, at most CHATHISTORY_LIMIT.
    if not (text.isascii() and text.isdigit()) or len(text) > 6 or int(text) < 1:
        return None
    return min(int(text), CHATHISTORY_LIMIT)


def _reference(text: str) -> int | None:
    # A message reference as the id it stands for: msgid=ID is that id; timestamp=T the
    # first id of the millisecond T (ids are made from times: chatsvc.chat.ids).
    kind, _, value = text.partition("=")
    if kind == "msgid" and value.isascii() and value.isdigit() and len(value) < 20:
        return int(value)
    if kind == "timestamp":
        seconds = _parseTime(value)
        if seconds is not None:
            return int(round(seconds * 1000)) << ID_SEQUENCE_BITS
    return None


def _parseTime(text: str) -> float | None:
    # 2026-12-01T18:00:00.000Z, as server-time writes times.
    try:
        whole, _, fraction = text.removesuffix("Z").partition(".")
        seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    if fraction and not (fraction.isascii() and fraction.isdigit()):
        return None
    return seconds + (float("0." + fraction) if fraction else 0.0)


def _joinRefusal(message: str) -> str:
    # The numeric for a refused JOIN, from the core's words.
    if "banned" in message:
        return "474"
    if "private" in message or "invitation" in message:
        return "473"
    if "registered" in message:
        return "477"
    if "room name" in message:
        return "479"
    return "405"


def _moderationRefusal(message: str) -> str:
    # The numeric for a refused moderator's action, from the core's words.
    if message.startswith("no such member"):
        return "401"
    if "not in" in message:
        return "441"
    return "482"


class IrcFactory(ServerFactory):
    """
    The IRC door's factory: an L{IrcProtocol} for each connection the sessions' L{Admission}
    takes, and what they share: the hub, the limits, the admission and the outbox (with the
    other doors), the server's name and MOTD, and the keepalive.
    """

    protocol = IrcProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        hub: Hub,
        limits: Limits = Limits(),
        admission: Admission | None = None,
        outbox: Outbox | None = None,
        serverName: str = "chatsvc",
        network: str = "chatsvc",
        motd: Sequence[str] | None = None,
        historyLines: int = 20,
        pingInterval: float = 60.0,
    ) -> None:
        """
        @param serverName: the server's name in numerics and as the source of its messages.
        @param network: the network's name (C{NETWORK} in C{RPL_ISUPPORT}).
        @param motd: the message of the day, line by line; L{None}: none (C{422}).
        @param historyLines: how many recent messages a client without C{chathistory} is
            sent on joining a room.
        @param pingInterval: seconds of silence after which a client is pinged, and as many
            again after which it is cut.
        """
        self.hub = hub
        self.clock: IReactorTime = hub.clock
        self.limits = limits
        self.admission = admission if admission is not None else Admission(hub.clock, limits)
        self.outbox = outbox if outbox is not None else Outbox(hub.clock)
        self.serverName = serverName
        self.network = network
        self.motd = list(motd) if motd is not None else None
        self.historyLines = historyLines
        self.keepAlive = KeepAlive(hub.clock, pingInterval)
        self.started = hub.clock.seconds()
        self.capabilities = tuple(
            name for name in CAPABILITIES if name != "sasl" or hub.accounts is not None
        )
        # Who MONITORs whom: the clients watching each nickname key.
        self._monitors: dict[str, set[IrcProtocol]] = {}
        hub.watch(self)
        self.away = AwayNicks(hub)
        """Who is away, for WHO's flags and away-notify after a JOIN."""
        self.summaries = _Summaries()
        """Crowded rooms' summaries, rendered once for all their members."""

    # Following members beyond shared rooms (the hub's IPresenceWatcher)

    def monitor(self, client: IrcProtocol, nick: str) -> None:
        key = nick_key(nick)
        client.monitoring[key] = nick
        self._monitors.setdefault(key, set()).add(client)

    def unmonitor(self, client: IrcProtocol, nick: str) -> None:
        key = nick_key(nick)
        client.monitoring.pop(key, None)
        watching = self._monitors.get(key)
        if watching is not None:
            watching.discard(client)
            if not watching:
                del self._monitors[key]

    def online(self, nick: str) -> None:
        for client in self._monitors.get(nick_key(nick), ()):
            client._numeric("730", f"{nick}!{USER_HOST}")

    def offline(self, nick: str) -> None:
        for client in self._monitors.get(nick_key(nick), ()):
            client._numeric("731", nick)

    def renamed(self, old: str, new: str) -> None:
        if nick_key(old) != nick_key(new):
            self.offline(old)
            self.online(new)

    def awayChanged(self, member: IMember, nick: str, message: str | None) -> None:
        params = (message,) if message is not None else ()
        line = (formatMessage("AWAY", *params, source=source(nick), trailing=bool(params)) + "\r\n").encode("utf-8")
        for client in self.sharing(member, "away-notify"):
            if client is not member:  # told by 305 and 306 itself
                client._enqueue(line)

    def loggedIn(self, member: IMember, nick: str, account: str) -> None:
        line = (formatMessage("ACCOUNT", account, source=source(nick)) + "\r\n").encode("utf-8")
        for client in self.sharing(member, "account-notify"):
            client._enqueue(line)

    def sharing(self, member: IMember, capability: str) -> list[IrcProtocol]:
        """The IRC clients with C{capability} that share a room with C{member} (and its own)."""
        return [
            connection
            for connection in self.hub.audienceOf(member)
            if isinstance(connection, IrcProtocol) and capability in connection.caps
        ]

    def realname(self, nick: str) -> str:
        """The real name of the member C{nick}: an IRC client's own, else the nickname."""
        member = self.hub.memberNamed(nick)
        return getattr(member, "realname", "") or nick

    def isupport(self) -> list[str]:
        """The tokens of C{RPL_ISUPPORT} (005)."""
        return [
            "CASEMAPPING=ascii",
            "CHANLIMIT=#:",
            "CHANMODES=b,,,imntR",
            f"CHANNELLEN={MAX_ROOM_NAME_LENGTH + 1}",
            "CHANTYPES=#",
            "ELIST=",
            f"NETWORK={self.network}",
            f"NICKLEN={MAX_NICK_LENGTH}",
            "PREFIX=(ov)@+",
            "TARGMAX=PRIVMSG:4,NOTICE:4,JOIN:,PART:,NAMES:,KICK:",
            f"TOPICLEN={MAX_TOPIC_LENGTH}",
            "UTF8ONLY",
            "MODES=4",
            f"MONITOR={MONITOR_LIMIT}",
            f"AWAYLEN={MAX_AWAY_LENGTH}",
            "WHOX",
            f"CHATHISTORY={CHATHISTORY_LIMIT}",
            "MSGREFTYPES=msgid,timestamp",
        ]

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        """An L{IrcProtocol}, or a refusal in IRC's words when a connection limit is reached."""
        reason = self.admission.refusal(addr)
        if reason is None:
            return cast(Protocol, super().buildProtocol(addr))
        _log.warning(
            "connection_refused",
            peer=describeAddress(addr) if addr is not None else "-",
            reason=reason,
            door="irc",
        )
        return _Refusal(reason)

    def closeAll(self, reason: str) -> Deferred[None]:
        """Tell every connection C{reason} and close it (see L{Admission.closeAll})."""
        return self.admission.closeAll(reason)


class _Refusal(Protocol):
    """What a connection over a limit gets: one C{ERROR} saying why, then the close."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(f"ERROR :Closing link: {self.reason}\r\n".encode("utf-8"))
        self.transport.loseConnection()
