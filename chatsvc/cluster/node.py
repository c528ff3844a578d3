"""
One node of a cluster: its links to Redis, its lease, its nicknames, and the copies of the other
nodes' members in its hub.

What goes through Redis:

  - B{Events.} The hub tells its relay (this node, L{IRelay}) what its own members did, once it
    has decided and done it; the node publishes each as one small JSON message on the cluster's
    channel (C{PREFIX DB :events}: Redis' channels are not per database). Every other node
    applies it to its copy of the member (L{Hub.remoteJoin} and the like), and its hub fans
    it out to its own members as it does for theirs: rendered once per door, writes gathered
    per turn. A whisper goes to the recipient's node alone, on that node's channel. Messages
    of a node are published on one connection, so they arrive in the order they were said.
  - B{Nicknames.} A claim is one Lua script: the key C{PREFIX nick:KEY} is set only if free
    (so of two nodes claiming at once, exactly one wins), to the owner (C{NODE/INCARNATION})
    and the nickname, and the key is added to the node's set (C{PREFIX nicks:NODE}).
  - B{Leases.} C{PREFIX node:NODE} holds the node's incarnation (a random id per process)
    for C{lease} seconds; the node renews it every third of that. Each node also holds one of
    L{MAX_SLOTS} id slots (C{PREFIX slot:N}), so that no two nodes give the same event id.
    A node that finds another's lease gone announces its members as left and frees its
    nicknames (a script that checks the lease is still gone, so any number of nodes may).
  - B{Presence.} A node that (re)joins publishes C{hello} and its whole state (members,
    accounts, away messages, rooms, topics); every other node answers with its own state.
    A state is applied by difference (who came, who went, who joined or left which room), so
    applying it twice changes nothing, and a node back after an outage brings every view back
    in line without repeating anything.

Every message read in a turn is parsed at once (txredisapi with hiredis, Redis' own parser) and
applied under the process's outbox (as a member's line is), so that each member of this node is
written to once per turn, however many lines other nodes sent. A node hears its own messages
too, and drops them on the incarnation they start with, before any JSON is read.

While Redis cannot be reached, the node keeps serving its own members (who are told that the
other nodes are out of reach), and refuses what it cannot decide alone: arrivals and renames,
which need a nickname claimed (L{NicknamesUnavailable}). It reconnects with backoff. Once its
lease has run out, the other nodes have announced its members as gone: it disconnects them,
so that nobody goes on talking in a room that others see them gone from; they connect again.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import structlog
import txredisapi  # type: ignore[import-untyped]
from attrs import define, field
from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer, provider

from chatsvc.chat import (
    ChatError,
    Event,
    Hub,
    IBatchDelivery,
    IMember,
    INicknameRegistry,
    IRelay,
    NicknamesUnavailable,
    NicknameTaken,
)
from chatsvc.chat.events import (
    Acted,
    Joined,
    Left,
    Moderated,
    Renamed,
    Said,
    TopicChanged,
    Whispered,
)
from chatsvc.chat.ids import MAX_SLOTS
from chatsvc.chat.rate import Throttle
from chatsvc.chat.names import nick_key, room_key, validate_room_name
from chatsvc.chat.ports import DeliveryFailed
from chatsvc.cluster.url import RedisAddress

__all__ = ["ClusterNicknames", "ClusterNode", "DEFAULT_LEASE", "OUT_OF_REACH", "RedisLink", "RemoteMember"]

_log = structlog.get_logger("chatsvc.cluster")

DEFAULT_LEASE = 10.0
"""Seconds a node's lease lasts unless renewed: how long the others wait for a node gone
silent before announcing its members as left."""

OUT_OF_REACH = (
    "the other nodes of this chat are out of reach just now: try again in a moment"
)
"""Why an arrival or a rename is refused while Redis cannot be reached."""

CUT_OFF = "this node was cut off from the rest of the chat for too long: connect again"
"""Why a node lets its members go once its lease ran out while Redis was out of reach."""

# The scripts: each runs atomically in Redis. Values of nickname keys are OWNER \t NICK, with
# OWNER = NODE/INCARNATION.

_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held then
  local owner, nick = string.match(held, '^([^\\t]*)\\t(.*)$')
  if owner == ARGV[1] then return {1, nick} end
  return {0, nick}
end
redis.call('SET', KEYS[1], ARGV[1] .. '\\t' .. ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return {1, ARGV[2]}
"""

_RELEASE = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. '\\t' then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

_RELABEL = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. '\\t' then
  redis.call('SET', KEYS[1], ARGV[1] .. '\\t' .. ARGV[2])
  return 1
end
return 0
"""

# Free the nicknames a node NODE (ARGV[2]) holds but under an incarnation whose lease is gone:
# all of them if KEYS[2] (its lease) is gone, else those of its older incarnations.
_FREE = """
local live = redis.call('GET', KEYS[2])
local keep = ''
if live then keep = ARGV[2] .. '/' .. live end
local freed = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local name = ARGV[1] .. key
  local held = redis.call('GET', name)
  local owner = held and string.match(held, '^([^\\t]*)\\t')
  if owner ~= keep then
    if owner and string.sub(owner, 1, #ARGV[2] + 1) == ARGV[2] .. '/' then
      redis.call('DEL', name)
      freed = freed + 1
    end
    redis.call('SREM', KEYS[1], key)
  end
end
return freed
"""

# Take (ARGV[3] 'join') or renew the lease of a node and of its id slot (KEYS[2]). Renewing
# fails (0) if either is no longer this incarnation's.
_LEASE = """
if ARGV[3] == 'join' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[4] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

# An id slot: the one this owner holds already, else the first free; -1 if none is.
_SLOT = """
local free = -1
for n = 0, tonumber(ARGV[4]) - 1 do
  local held = redis.call('GET', ARGV[1] .. n)
  if held == ARGV[2] then
    redis.call('PEXPIRE', ARGV[1] .. n, ARGV[3])
    return n
  end
  if not held and free < 0 then free = n end
end
if free >= 0 then redis.call('SET', ARGV[1] .. free, ARGV[2], 'PX', ARGV[3]) end
return free
"""


@implementer(IMember)
@provider(IBatchDelivery)
class RemoteMember:
    """
    A member of another node, as this node's hub holds it: in its rooms, with its nickname,
    never written to. A room's broadcast reaches the member through its own node (which
    applied the same event); only what is meant for it alone, a whisper, is sent on there.
    """

    __slots__ = ("node", "nick", "host", "_cluster")

    def __init__(self, cluster: ClusterNode, node: str, nick: str, host: str | None) -> None:
        self._cluster = cluster
        self.node = node
        """The node it is on."""
        self.nick = nick
        """Its nickname as its node last said."""
        self.host = host
        """The address it connected from (bans of guests go by it)."""

    def __repr__(self) -> str:
        return f"<RemoteMember {self.nick!r} on {self.node!r}>"

    def deliver(self, event: Event) -> None:
        """Send a whisper on to the member's node; anything else its node tells it."""
        if isinstance(event, Whispered):
            self._cluster.forwardWhisper(self, event)

    @staticmethod
    def deliverToMany(
        members: Sequence[IMember], event: Event, exclude: IMember | None, failed: DeliveryFailed
    ) -> None:
        """A room's broadcast: each member's own node tells it."""


@define
class _Peer:
    """What this node knows of another: its incarnation, and its members here by key."""

    name: str
    incarnation: str
    members: dict[str, RemoteMember] = field(factory=dict)
    topics: dict[str, str] = field(factory=dict)


@implementer(INicknameRegistry)
class ClusterNicknames:
    """
    The nicknames of every node of the cluster, held in Redis: a claim is granted to exactly
    one node (see the module's description), refused with L{NicknamesUnavailable} while Redis
    cannot be reached.
    """

    def __init__(self, node: ClusterNode) -> None:
        self._node = node
        self.held: dict[str, str] = {}
        """The keys this node's members hold, with the nickname shown: claimed again when the
        node rejoins after an outage."""

    def claim(self, key: str, nick: str) -> defer.Deferred[None]:
        node = self._node
        if not node.inCluster:
            return defer.fail(NicknamesUnavailable(OUT_OF_REACH))
        answer = node.run(_CLAIM, [node.key("nick:", key), node.nicksKey], [node.owner, nick, key])

        def granted(reply: list[Any]) -> None:
            won, holder = int(reply[0]), _text(reply[1])
            if not won:
                raise NicknameTaken(holder)
            self.held[key] = nick

        def unreachable(failure: Failure) -> Failure:
            if failure.check(NicknameTaken) is None:
                _log.warning("nickname_claim_unanswered", nick=nick, reason=failure.getErrorMessage())
                raise NicknamesUnavailable(OUT_OF_REACH)
            return failure

        return answer.addCallback(granted).addErrback(unreachable)

    def relabel(self, key: str, nick: str) -> None:
        if key in self.held:
            self.held[key] = nick
            node = self._node
            node.runQuietly(_RELABEL, [node.key("nick:", key)], [node.owner, nick])

    def release(self, key: str) -> None:
        # Out of reach, the node lets go of it when it joins again (see ClusterNode._join).
        if self.held.pop(key, None) is not None and self._node.linked:
            node = self._node
            node.runQuietly(_RELEASE, [node.key("nick:", key), node.nicksKey], [node.owner, key])


class _Commands(txredisapi.RedisFactory):  # type: ignore[misc]
    """The node's one connection for commands and publishing (one, so that what it sends
    arrives in order)."""

    def __init__(self, node: ClusterNode, address: RedisAddress) -> None:
        super().__init__(
            None,
            address.db,
            1,
            isLazy=True,
            password=address.password,
            username=address.username,
            replyTimeout=node.lease / 2,
            convertNumbers=False,
        )
        self.node = node
        # The first connection's result, for a caller waiting on it: the node is told of each
        # connection (addConnection) and refusal (connectionError) itself.
        self.deferred.addErrback(lambda failure: None)

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        if conn in self.pool:
            self.node._commandsUp(conn)

    def delConnection(self, conn: Any) -> None:
        super().delConnection(conn)
        self.node._commandsDown(conn)

    def connectionError(self, why: str) -> None:
        super().connectionError(why)
        self.node._refused(why)

    def buildProtocol(self, addr: Any) -> Any:
        return _watched(super().buildProtocol(addr), self.node)


def _watched(protocol: Any, node: ClusterNode) -> Any:
    # A connection lost before it was ready (a TLS certificate refused, say) is worth a line
    # in the log: txredisapi only tries again.
    connectionLost = protocol.connectionLost

    def lost(reason: Failure) -> None:
        if not getattr(protocol, "_ready", True):  # txredisapi's "usable": after AUTH, SELECT
            node._cannotConnect(reason)
        connectionLost(reason)

    protocol.connectionLost = lost
    return protocol


@implementer(IStreamClientEndpoint)
class _Attempts:
    """An endpoint whose failed connection attempts the node logs (at most one line in 30 s)."""

    def __init__(self, endpoint: IStreamClientEndpoint, node: ClusterNode) -> None:
        self._endpoint = endpoint
        self._node = node

    def connect(self, protocolFactory: Any) -> defer.Deferred[Any]:
        def failed(failure: Failure) -> Failure:
            self._node._cannotConnect(failure)
            return failure

        connecting: defer.Deferred[Any] = self._endpoint.connect(protocolFactory)
        return connecting.addErrback(failed)


class _Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    def dataReceived(self, data: bytes, unpause: bool = False) -> None:
        # Everything read in this turn is parsed now (hiredis: see the module's description),
        # and what it makes members be told is written in one go per member.
        self.factory.node._arriving()
        super().dataReceived(data, unpause)

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.factory.node._received(message)


class _Subscriptions(txredisapi.SubscriberFactory):  # type: ignore[misc]
    """The node's connection that listens to the cluster's channel and its own."""

    protocol = _Subscriber

    def __init__(self, node: ClusterNode, address: RedisAddress) -> None:
        super().__init__(isLazy=True)
        self.password = address.password
        self.username = address.username
        self.node = node
        self.deferred.addErrback(lambda failure: None)  # as _Commands

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        if conn in self.pool:
            self.node._subscriberUp(conn)

    def delConnection(self, conn: Any) -> None:
        super().delConnection(conn)
        self.node._subscriberDown(conn)

    def connectionError(self, why: str) -> None:
        super().connectionError(why)
        self.node._refused(why)

    def buildProtocol(self, addr: Any) -> Any:
        return _watched(super().buildProtocol(addr), self.node)


def redisEndpoint(
    reactor: Any, address: RedisAddress, timeout: float = 5.0, authority: bytes | None = None
) -> IStreamClientEndpoint:
    """
    The endpoint to reach Redis at C{address}: TCP, or TLS for C{rediss://}, checking the
    server's certificate for its host name against the system's trusted authorities, or
    C{authority} (a PEM certificate) alone.
    """
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, address.host, address.port, timeout=timeout)
    if address.tls:
        trust = None if authority is None else Certificate.loadPEM(authority)
        endpoint = wrapClientTLS(optionsForClientTLS(address.host, trustRoot=trust), endpoint)
    return endpoint


class RedisLink:
    """
    The node's command connection, as the stores use it: each command written at once on the
    connection up now, after everything the node sent before it (so that a message is stored
    before it is published), failing at once while there is none.
    """

    def __init__(self) -> None:
        self.connection: Any = None
        """The connection (a txredisapi protocol), while there is one."""
        self.connected = False
        """Whether there is one (an attribute, as the stores ask: L{stores.isConnected})."""

    def use(self, connection: Any) -> None:
        """Send on C{connection} from now on; L{None}: there is none."""
        self.connection = connection
        self.connected = connection is not None

    def execute_command(self, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        connection = self.connection
        if connection is None:
            return defer.fail(ConnectionError("not connected to Redis"))
        result: defer.Deferred[Any] = connection.execute_command(*args, **kwargs)
        return result


@implementer(IRelay)
class ClusterNode(service.Service):
    """
    This node of the cluster (see the module's description): the hub's relay and nickname
    registry, a service that connects to Redis on start and says goodbye on stop.
    """

    name = "cluster"

    def __init__(
        self,
        reactor: Any,
        hub: Hub,
        address: RedisAddress,
        nodeName: str,
        lease: float = DEFAULT_LEASE,
        prefix: str = "chatsvc:",
        endpoint: IStreamClientEndpoint | None = None,
        reloadAccount: Callable[[str], defer.Deferred[Any]] | None = None,
        moderationChanged: Callable[[str, Any], None] | None = None,
        joinedCluster: Callable[[], defer.Deferred[Any] | None] | None = None,
        link: RedisLink | None = None,
        gather: Callable[[], None] | None = None,
    ) -> None:
        """
        @param hub: this node's hub: its relay and nickname registry are set to this node's.
        @param address: where Redis is.
        @param nodeName: this node's name, unique in the cluster (in logs and metrics).
        @param lease: see L{DEFAULT_LEASE}.
        @param prefix: the start of every key and channel name, so that several clusters may
            share one Redis.
        @param endpoint: how to reach Redis (by default, from C{address}).
        @param reloadAccount: reads one account again from the store, after another node
            registered or changed it (C{key}).
        @param moderationChanged: does to the roles, settings and sanctions at hand what
            another node changed of them (L{chatsvc.cluster.shared.applyModerationChange}).
        @param joinedCluster: called each time the node has joined the cluster (first, and
            after an outage), before anything is announced: to read the shared state.
        @param link: the command connection's stand-in the stores write on (see
            L{RedisLink}); by default, a new one.
        @param gather: called when messages of other nodes arrive, before they are applied:
            the outbox's, so that what they make members be told is written once per member
            per turn, as for what members' own connections bring.
        """
        self.reactor = reactor
        self.hub = hub
        self.address = address
        self.nodeName = nodeName
        self.lease = lease
        self.prefix = prefix
        self.incarnation = secrets.token_hex(8)
        self.owner = f"{nodeName}/{self.incarnation}"
        self.nicksKey = self.key("nicks:", nodeName)
        # Channels are not per database, as keys are: their names say which.
        self.channel = self.channelOf("events")
        self.ownChannel = self.channelOf("node:", nodeName)
        self.link = link if link is not None else RedisLink()
        """The command connection, for the stores to write on (see L{RedisLink})."""
        self._endpoint = endpoint if endpoint is not None else redisEndpoint(reactor, address)
        self._reloadAccount = reloadAccount
        self._moderationChanged = moderationChanged
        self._gather = gather
        self._joinedCluster = joinedCluster
        self.nicknames = ClusterNicknames(self)
        hub.nicknames = self.nicknames
        hub.relay = self
        self._subscriber: Any = None
        self._factories: list[Any] = []
        self._peers: dict[str, _Peer] = {}
        # Nicknames of members whose claim this node is taking over (see _adopt), by key.
        self._adopting: dict[str, str] = {}
        self._slot: int | None = None
        self._renewing = LoopingCall(self._renew)
        self._renewing.clock = reactor
        self._lastRenewed: float | None = None
        self._joining = False
        self._wasJoined = False
        self._stopping = False
        self.inCluster = False
        """Whether the node is in the cluster now: linked, with its lease and id slot."""
        self.published = 0
        """Messages published so far (a metric)."""
        self.unpublished = 0
        """Messages that could not be published, Redis being out of reach (a metric)."""
        self.received = 0
        """Messages of other nodes applied so far (a metric)."""
        self.lagCount = 0
        self.lagSum = 0.0
        self.lagBuckets = [0] * len(LAG_BUCKETS)
        """Publish-to-delivery lag of other nodes' messages: count, sum, and histogram."""
        self.outages = 0
        """Times the link to Redis was lost (a metric)."""
        self._attemptsLogged = Throttle(30.0)
        self.authFailed = False
        """Whether Redis refused this node for good (a wrong password or database number): it
        has stopped trying, and says so in its log (C{redis_refused})."""

    # Keys

    def key(self, *parts: str) -> str:
        """The name of a key of this cluster."""
        return self.prefix + "".join(parts)

    def channelOf(self, *parts: str) -> str:
        """The name of a channel of this cluster."""
        return f"{self.prefix}{self.address.db}:" + "".join(parts)

    # The service

    def startService(self) -> None:
        """Connect to Redis (and keep reconnecting with backoff); join once both links are up."""
        super().startService()
        _log.info(
            "cluster_starting", node=self.nodeName, redis=f"{self.address.host}:{self.address.port}",
            db=self.address.db, lease=self.lease,
        )
        for factory in (_Commands(self, self.address), _Subscriptions(self, self.address)):
            factory.initialDelay = 0.5
            factory.maxDelay = max(0.5, self.lease / 4)
            factory.startConnecting(_Attempts(self._endpoint, self))
            self._factories.append(factory)
        self._renewing.start(self.lease / 3, now=False)

    def stopService(self) -> defer.Deferred[None]:
        """
        Leave the cluster: the members have left already (the sessions stopped before), so
        say goodbye, give up the lease and the id slot, and close the links.
        """
        super().stopService()
        self._stopping = True
        if self._renewing.running:
            self._renewing.stop()
        return defer.Deferred.fromCoroutine(self._leave())

    async def _leave(self) -> None:
        if self.inCluster:
            self._publish({"k": "bye"})
            try:
                await self.run(
                    "redis.call('DEL', KEYS[1]); if redis.call('GET', KEYS[2]) == ARGV[1] then "
                    "redis.call('DEL', KEYS[2]) end; return 0",
                    [self.key("node:", self.nodeName), self.key("slot:", str(self._slot))],
                    [self.owner],
                )
                await self.run(_FREE, [self.nicksKey, self.key("node:", self.nodeName)], [self.key("nick:"), self.nodeName])
            except Exception as error:
                _log.warning("cluster_leave_failed", reason=str(error))
        self.inCluster = False
        for factory in self._factories:
            try:
                await factory.disconnect()
            except Exception:
                pass
        _log.info("cluster_left", node=self.nodeName)

    # Running commands

    def run(self, script: str, keys: list[str], args: list[Any]) -> defer.Deferred[Any]:
        """Run a Lua script on the command link (failing at once while it is down)."""
        conn = self.link.connection
        if conn is None:
            return defer.fail(ConnectionError("not connected to Redis"))
        result: defer.Deferred[Any] = conn.eval(script, keys, args)
        return result

    def runQuietly(self, script: str, keys: list[str], args: list[Any]) -> None:
        """L{run}, logging a failure rather than answering it."""
        self.run(script, keys, args).addErrback(
            lambda failure: _log.warning("cluster_command_failed", reason=failure.getErrorMessage())
        )

    # The links

    def _commandsUp(self, conn: Any) -> None:
        self.link.use(conn)
        _log.info("redis_connected", node=self.nodeName, link="commands")
        self._maybeJoin()

    def _commandsDown(self, conn: Any) -> None:
        if self.link.connection is conn:
            self.link.use(None)
            self._linkLost("commands")

    def _subscriberUp(self, conn: Any) -> None:
        self._subscriber = conn
        _log.info("redis_connected", node=self.nodeName, link="events")
        self._maybeJoin()

    def _subscriberDown(self, conn: Any) -> None:
        if self._subscriber is conn:
            self._subscriber = None
            self._linkLost("events")

    def _cannotConnect(self, reason: Failure) -> None:
        if self._attemptsLogged.ready(self.reactor.seconds()):
            _log.warning(
                "redis_connect_failed", node=self.nodeName, redis=str(self.address),
                reason=reason.getErrorMessage(),
            )

    def _refused(self, why: str) -> None:
        # Redis refused the connection for good (a wrong password or database): txredisapi
        # stops trying, and so does the node.
        if not self.authFailed:
            self.authFailed = True
            _log.error("redis_refused", node=self.nodeName, redis=str(self.address), reason=why)

    def _linkLost(self, link: str) -> None:
        if self._stopping:
            return
        wasJoined = self.inCluster
        self.inCluster = False
        if wasJoined:
            self.outages += 1
            _log.warning("redis_unreachable", node=self.nodeName, link=link)
            self._tellMembers(
                "the other nodes of this chat are out of reach: you can still talk with those "
                "on this node, and the others will be back soon"
            )

    def _maybeJoin(self) -> None:
        if self.link.connection is None or self._subscriber is None or self._joining or self.inCluster:
            return
        self._joining = True
        defer.Deferred.fromCoroutine(self._join()).addErrback(self._joinFailed).addBoth(self._joinDone)

    def _joinDone(self, result: object) -> None:
        self._joining = False

    def _joinFailed(self, failure: Failure) -> None:
        _log.warning("cluster_join_failed", node=self.nodeName, reason=failure.getErrorMessage())
        # The links stay up: try again on the next renewal.

    async def _join(self) -> None:
        if self._pastLease():
            # Cut off past the lease: the others have announced this node's members gone.
            self._expelAll(CUT_OFF)
        leaseMs = int(self.lease * 1000)
        slot = int(await self.run(_SLOT, [], [self.key("slot:"), self.owner, leaseMs, MAX_SLOTS]))
        if slot < 0:
            raise ChatError(f"the cluster has {MAX_SLOTS} nodes already")
        await self.run(
            _LEASE,
            [self.key("node:", self.nodeName), self.key("slot:", str(slot))],
            [self.incarnation, leaseMs, "join", self.owner],
        )
        self._lastRenewed = self.reactor.seconds()
        self._slot = slot
        ids = self.hub.ids
        ids.slot, ids.slots = slot, MAX_SLOTS
        # An earlier incarnation of this node (killed, then started again) may hold names.
        await self.run(_FREE, [self.nicksKey, self.key("node:", self.nodeName)], [self.key("nick:"), self.nodeName])
        # Those given up while Redis was out of reach.
        for key in await self.link.connection.smembers(self.nicksKey):
            if _text(key) not in self.nicknames.held:
                await self.run(_RELEASE, [self.key("nick:", _text(key)), self.nicksKey], [self.owner, _text(key)])
        lost = []
        for key, nick in list(self.nicknames.held.items()):
            reply = await self.run(_CLAIM, [self.key("nick:", key), self.nicksKey], [self.owner, nick, key])
            if not int(reply[0]):
                lost.append(nick)
        for nick in lost:
            self._expel(nick, "your nickname was taken while this node was cut off: connect again")
        await self._subscriber.subscribe([self.channel, self.ownChannel])
        if self._joinedCluster is not None:
            await defer.maybeDeferred(self._joinedCluster)
        self.inCluster = True
        _log.info("cluster_joined", node=self.nodeName, slot=slot, peers=len(self._peers))
        self._publish({"k": "hello"})
        self._publish(self._state())
        if self._wasJoined:
            self._tellMembers("the other nodes of this chat are back in reach")
        self._wasJoined = True

    def _renew(self) -> None:
        if not self.inCluster:
            if self._pastLease():
                self._expelAll(CUT_OFF)
            self._maybeJoin()
            return
        leaseMs = int(self.lease * 1000)
        renewed = self.run(
            _LEASE,
            [self.key("node:", self.nodeName), self.key("slot:", str(self._slot))],
            [self.incarnation, leaseMs, "renew", self.owner],
        )
        renewed.addCallbacks(self._renewed, self._renewFailed)

    def _pastLease(self) -> bool:
        # Whether the lease has run out since it was last renewed (the node was in the cluster).
        last = self._lastRenewed
        return last is not None and self.reactor.seconds() - last >= self.lease

    def _renewed(self, ok: Any) -> defer.Deferred[None] | None:
        if not int(ok):
            _log.error("cluster_lease_lost", node=self.nodeName)
            self.inCluster = False
            self._lastRenewed = None
            self._expelAll("this node lost its place in the chat: connect again")
            self._maybeJoin()
            return None
        self._lastRenewed = self.reactor.seconds()
        for nick in list(self._adopting.values()):
            self._adopt(nick)
        names = list(self._peers)
        if not names:
            return None
        conn = self.link.connection
        if conn is None:
            return None
        checked: defer.Deferred[Any] = conn.mget([self.key("node:", name) for name in names])
        return checked.addCallbacks(lambda alive: self._checkPeers(names, alive), self._renewFailed)

    def _renewFailed(self, failure: Failure) -> None:
        _log.warning("cluster_renew_failed", node=self.nodeName, reason=failure.getErrorMessage())

    def _checkPeers(self, names: list[str], alive: list[Any]) -> None:
        for name, incarnation in zip(names, alive):
            peer = self._peers.get(name)
            if peer is not None and _text(incarnation) != peer.incarnation:
                # Its nicknames freed first: a member it shared with this node keeps its own.
                freed = self.run(_FREE, [self.key("nicks:", name), self.key("node:", name)], [self.key("nick:"), name])
                freed.addErrback(self._freeFailed)
                freed.addCallback(self._silent, peer)

    def _freeFailed(self, failure: Failure) -> None:
        _log.warning("cluster_command_failed", reason=failure.getErrorMessage())

    def _silent(self, result: object, peer: _Peer) -> None:
        self._peerGone(peer, f"its node {peer.name} stopped answering")

    # Telling our own members

    def _tellMembers(self, text: str) -> None:
        event = Moderated(None, "announce", "the server", text=text, **self.hub.stamp())
        for member in self.hub.members():
            if not isinstance(member, RemoteMember):
                self.hub.tell(member, event)

    def _expelAll(self, reason: str) -> None:
        for member in tuple(self.hub.members()):
            if not isinstance(member, RemoteMember):
                self._disconnect(member, reason)

    def _expel(self, nick: str, reason: str) -> None:
        member = self.hub.memberNamed(nick)
        if member is not None:
            for connection in self.hub.connectionsOf(member):
                self._disconnect(connection, reason)

    def _disconnect(self, member: IMember, reason: str) -> None:
        nick = self.hub.nickOf(member) if member in self.hub else None
        _log.warning("cluster_member_expelled", node=self.nodeName, nick=nick, reason=reason)
        event = Moderated(None, "kill", "the server", nick, reason, **self.hub.stamp())
        self.hub.tell(member, event)
        self.hub.depart(member, reason)

    # Publishing (the relay)

    def _publish(self, message: dict[str, Any], channel: str | None = None) -> None:
        conn = self.link.connection
        if conn is None or (not self.inCluster and message["k"] not in ("hello", "state")):
            self.unpublished += 1
            return
        message["n"] = self.nodeName
        message["i"] = self.incarnation
        message["w"] = round(self.reactor.seconds(), 6)
        data = self.incarnation + " " + json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        self.published += 1
        conn.execute_command("PUBLISH", channel or self.channel, data).addErrback(self._publishFailed)

    def _publishFailed(self, failure: Failure) -> None:
        self.unpublished += 1
        _log.debug("cluster_publish_failed", reason=failure.getErrorMessage())

    def _state(self) -> dict[str, Any]:
        hub = self.hub
        members = []
        topics: dict[str, str] = {}
        for record in hub.ownMembers():
            account = None if record.account is None else record.account.key
            host = next((getattr(c, "host", None) for c in record.connections if not isinstance(c, RemoteMember)), None)
            members.append([record.nick, account, record.away, host, [room.name for room in record.rooms]])
            for room in record.rooms:
                if room.topic is not None:
                    topics[room.name] = room.topic
        return {"k": "state", "m": members, "t": topics}

    def arrived(self, nick: str, account: str | None, host: str | None) -> None:
        self._publish({"k": "arrive", "nick": nick, "acct": account, "host": host})

    def departed(self, nick: str, reason: str | None) -> None:
        self._publish({"k": "depart", "nick": nick, "why": reason})

    def joined(self, event: Joined) -> None:
        self._publish({"k": "join", "nick": event.nick, "room": event.room, "id": event.id, "t": event.time})

    def left(self, event: Left) -> None:
        self._publish({"k": "part", "nick": event.nick, "room": event.room, "why": event.reason, "id": event.id, "t": event.time})

    def said(self, event: Said | Acted) -> None:
        if isinstance(event, Said):
            self._publish({"k": "say", "nick": event.nick, "room": event.room, "text": event.text, "id": event.id, "t": event.time})
        else:
            self._publish({"k": "act", "nick": event.nick, "room": event.room, "text": event.action, "id": event.id, "t": event.time})

    def topicChanged(self, event: TopicChanged) -> None:
        self._publish({"k": "topic", "nick": event.nick, "room": event.room, "topic": event.topic, "id": event.id, "t": event.time})

    def renamed(self, event: Renamed) -> None:
        self._publish({"k": "rename", "nick": event.old, "new": event.new, "id": event.id, "t": event.time})

    def away(self, nick: str, message: str | None) -> None:
        self._publish({"k": "away", "nick": nick, "msg": message})

    def loggedIn(self, nick: str, account: str) -> None:
        self._publish({"k": "login", "nick": nick, "acct": account})

    def moderated(self, event: Moderated) -> None:
        fields = {
            name: getattr(event, name)
            for name in ("room", "action", "by", "target", "reason", "until", "setting", "on", "text", "message", "id", "time")
        }
        self._publish({"k": "mod", "e": fields})

    def accountChanged(self, key: str) -> None:
        """An account was registered or changed here: the others read it again."""
        self._publish({"k": "account", "acct": key})

    def moderationChanged(self, change: str, value: Any) -> None:
        """Room settings or sanctions changed here: the others do the same to theirs."""
        self._publish({"k": "moderation", "c": change, "v": value})

    def forwardWhisper(self, member: RemoteMember, event: Whispered) -> None:
        """A whisper to a member of another node: to that node alone."""
        self._publish(
            {"k": "whisper", "from": event.sender, "to": event.recipient, "text": event.text, "id": event.id, "t": event.time},
            self.channelOf("node:", member.node),
        )

    # Receiving

    def _arriving(self) -> None:
        if self._gather is not None:
            self._gather()

    def _received(self, data: Any) -> None:
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        # Every node hears its own messages too (it subscribes to the channel it publishes
        # on): they are told apart by the incarnation in front, before any JSON is read.
        incarnation, _, data = data.partition(" ")
        if incarnation == self.incarnation:
            return
        try:
            message = json.loads(data)
            if message.get("n") == self.nodeName:
                if message.get("i") != self.incarnation:
                    _log.error("cluster_node_name_in_use", node=self.nodeName)
                return
            if not self.inCluster:
                return
            self._apply(message)
        except Exception as error:
            _log.error("cluster_message_failed", node=self.nodeName, exc_info=error)

    def _apply(self, message: dict[str, Any]) -> None:
        kind = message["k"]
        name = message["n"]
        peer = self._peers.get(name)
        if peer is not None and peer.incarnation != message["i"]:
            # Started again (within its old lease): what it had is gone.
            self._peerGone(peer, f"its node {name} restarted")
            peer = None
        if peer is None:
            if kind == "bye":
                return
            peer = self._peers[name] = _Peer(name, message["i"])
            _log.info("cluster_peer_seen", node=self.nodeName, peer=name)
        self.received += 1
        lag = self.reactor.seconds() - float(message.get("w", 0))
        if lag >= 0:
            self._observeLag(lag)
        hub = self.hub
        nick: str = message.get("nick") or ""
        member = peer.members.get(nick_key(nick)) if nick else None
        match kind:
            case "hello":
                self._publish(self._state(), self.channelOf("node:", name))
            case "state":
                self._applyState(peer, message)
            case "arrive":
                if member is None:
                    self._arrive(peer, nick, message.get("acct"), None, message.get("host"))
            case "join" if member is not None:
                hub.remoteJoin(member, message["room"], int(message["id"]), float(message["t"]))
            case "part" if member is not None:
                hub.remoteLeave(member, message["room"], message.get("why"), int(message["id"]), float(message["t"]))
            case "say" | "act" if member is not None:
                hub.remoteSay(member, message["room"], message["text"], kind == "act", int(message["id"]), float(message["t"]))
            case "topic" if member is not None:
                hub.remoteTopic(member, message["room"], message.get("topic"), int(message["id"]), float(message["t"]))
            case "rename" if member is not None:
                new = message["new"]
                try:
                    hub.remoteRename(member, new, int(message["id"]), float(message["t"]))
                except ChatError as error:
                    _log.error("cluster_rename_conflict", peer=name, nick=nick, new=new, reason=str(error))
                    return
                del peer.members[nick_key(nick)]
                member.nick = new
                peer.members[nick_key(new)] = member
            case "away" if member is not None:
                hub.remoteAway(member, message.get("msg"))
            case "login" if member is not None:
                # Registered just now: read the account first.
                account = message["acct"]
                reloaded = self._reloadAccount(account) if self._reloadAccount is not None else None
                if reloaded is None:
                    hub.remoteLoggedIn(member, account)
                else:
                    reloaded.addCallback(self._loggedIn, member, account)
            case "depart" if member is not None:
                del peer.members[nick_key(nick)]
                hub.depart(member, message.get("why"))
                self._adopt(nick)
            case "whisper":
                hub.remoteWhisper(
                    Whispered(message["from"], message["to"], message["text"], id=int(message["id"]), time=float(message["t"]))
                )
            case "mod":
                fields = dict(message["e"])
                event = Moderated(**fields)
                hub.remoteModerated(event)
            case "account":
                if self._reloadAccount is not None:
                    self._reloadAccount(message["acct"])
            case "moderation":
                if self._moderationChanged is not None:
                    self._moderationChanged(message["c"], message["v"])
            case "bye":
                self._peerGone(peer, f"its node {name} shut down")
            case _:
                pass

    def _adopt(self, nick: str) -> None:
        """
        A member whose nickname another node held, and who has connections here too, is gone
        from that node: its nickname is claimed for this node, unless a third node has it
        already. A claim Redis cannot answer now is made again at the next renewal.
        """
        member = self.hub.memberNamed(nick)
        record = None if member is None else self.hub.recordOf(member)
        key = nick_key(nick)
        if record is None or record.key in self.nicknames.held or not any(
            not isinstance(connection, RemoteMember) for connection in record.connections
        ):
            self._adopting.pop(key, None)
            return
        self._adopting[key] = record.nick

        def held(result: None) -> None:
            self._adopting.pop(key, None)
            _log.info("cluster_nickname_adopted", node=self.nodeName, nick=record.nick)

        def refused(failure: Failure) -> None:
            if failure.check(NicknameTaken) is not None:  # another node of its has it
                self._adopting.pop(key, None)

        self.nicknames.claim(record.key, record.nick).addCallbacks(held, refused)

    def _loggedIn(self, result: object, member: RemoteMember, account: str) -> None:
        if member in self.hub:
            self.hub.remoteLoggedIn(member, account)

    def _arrive(
        self, peer: _Peer, nick: str, account: str | None, away: str | None, host: str | None
    ) -> RemoteMember | None:
        member = RemoteMember(self, peer.name, nick, host)
        try:
            self.hub.remoteArrive(member, peer.name, nick, account, away)
        except ChatError as error:
            _log.error("cluster_nickname_conflict", node=self.nodeName, peer=peer.name, nick=nick, reason=str(error))
            return None
        peer.members[nick_key(nick)] = member
        return member

    def _applyState(self, peer: _Peer, message: dict[str, Any]) -> None:
        hub = self.hub
        listed: dict[str, list[Any]] = {nick_key(entry[0]): entry for entry in message["m"]}
        for key in [key for key in peer.members if key not in listed]:
            gone = peer.members.pop(key)
            hub.depart(gone, None)
            self._adopt(gone.nick)
        for key, (nick, account, away, host, rooms) in listed.items():
            member = peer.members.get(key)
            if member is None:
                member = self._arrive(peer, nick, account, away, host)
                if member is None:
                    continue
            else:
                hub.remoteAway(member, away)
            now = self.reactor.seconds()
            current = {room.key: room.name for room in hub.roomsOf(member)}
            wanted = {}
            for room in rooms:
                try:
                    wanted[_roomKey(room)] = room
                except ChatError:
                    continue
            for roomKey, room in current.items():
                if roomKey not in wanted:
                    hub.remoteLeave(member, room, None, hub.ids.next(now), now)
            for roomKey, room in wanted.items():
                if roomKey not in current:
                    hub.remoteJoin(member, room, hub.ids.next(now), now)
        for room, topic in message.get("t", {}).items():
            try:
                known = hub.room(room)
            except ChatError:
                continue
            if known.topic != topic and peer.topics.get(room) != topic:
                known.topic = topic
        peer.topics = dict(message.get("t", {}))

    def _peerGone(self, peer: _Peer, reason: str) -> None:
        if self._peers.get(peer.name) is peer:
            del self._peers[peer.name]
        if peer.members:
            _log.warning("cluster_peer_gone", node=self.nodeName, peer=peer.name, members=len(peer.members), reason=reason)
        members = list(peer.members.values())
        peer.members.clear()
        for member in members:
            self.hub.depart(member, reason)
        for member in members:
            self._adopt(member.nick)

    def _observeLag(self, lag: float) -> None:
        self.lagCount += 1
        self.lagSum += lag
        for index, bound in enumerate(LAG_BUCKETS):
            if lag <= bound:
                self.lagBuckets[index] += 1
                break

    # For metrics and tests

    @property
    def peers(self) -> list[str]:
        """The other nodes this node knows of, by name, sorted."""
        return sorted(self._peers)

    @property
    def linked(self) -> bool:
        """Whether both links to Redis are up."""
        return self.link.connection is not None and self._subscriber is not None


LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, float("inf"))
"""The upper bounds (seconds) of the publish-to-delivery lag histogram's buckets."""


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _roomKey(name: str) -> str:
    return room_key(validate_room_name(name))


def defaultNodeName(port: int | str) -> str:
    """A node's name by default: its host name and the port of its line door."""
    return f"{os.uname().nodename}:{port}"
