"""
The twistd plugin's options and service: C{twistd -n chatroom --port 5051}.
"""

from __future__ import annotations

import ipaddress
import re
import resource
import socket
from collections.abc import Callable

import structlog
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorCore
from OpenSSL.SSL import Error as SSLError
from twisted.internet.ssl import Certificate
from twisted.python import usage

from chatsvc.chat import (
    CROWD_INTERVAL,
    CROWD_SIZE,
    DEFAULT_ROOM,
    REGISTRATION_MODES,
    Account,
    Accounts,
    ChatError,
    Hub,
    IAccountStore,
    IHistoryStore,
    MemoryAccountStore,
    NullStore,
    validate_room_name,
)
from chatsvc.logs import LOG_FORMATS, configureLogging, jsonObserverFactory
from chatsvc.sessions.admission import Admission
from chatsvc.sessions.limits import Limits
from chatsvc.sessions.outbox import Outbox
from chatsvc.line.protocol import ChatFactory, ChatProtocol
from chatsvc.metrics import Histogram, Metric, makeMetricsSite
from chatsvc.service import ChatService, Door, StartupFailed, freezeStartupObjects
from chatsvc.chat.moderation import IModerationStore, MemoryModerationStore, Moderation
from chatsvc.storage.accounts import SQLiteAccountStore
from chatsvc.storage.moderation import SQLiteModerationStore
from chatsvc.storage.passwords import Argon2Hasher
from chatsvc.storage.sqlite import DEFAULT_MAX_BYTES, SQLiteStore
from chatsvc.irc.protocol import IrcFactory, IrcProtocol
from chatsvc.cluster.node import (
    DEFAULT_LEASE,
    LAG_BUCKETS,
    ClusterNode,
    RedisLink,
    defaultNodeName,
    redisEndpoint,
)
from chatsvc.cluster.shared import SharedAccountStore, SharedModerationStore, applyModerationChange
from chatsvc.cluster.stores import (
    RedisAccountStore,
    RedisHistoryStore,
    RedisModerationStore,
    checkDurability,
)
from chatsvc.cluster.url import parseRedisUrl
from chatsvc.web.protocol import WebFactory, WebSession
from chatsvc.web.site import makeSite

__all__ = [
    "ChatService",
    "DEFAULT_PORT",
    "Options",
    "StartupFailed",
    "freezeStartupObjects",
    "makeService",
]

DEFAULT_PORT = 5051
DEFAULT_WEB_PORT = 8080
DEFAULT_IRC_PORT = 6667
MIN_LINE_LENGTH = 256
_DEFAULTS = Limits()

_log = structlog.get_logger("chatsvc.service")


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"{value} is not a TCP port number")
    return port


def _atLeast(minimum: int) -> Callable[[str], int]:
    def coerce(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise ValueError(f"{number} is less than {minimum}")
        return number

    return coerce


def _nonNegativeFloat(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise ValueError(f"{value} is not a number of 0 or more")
    return number


def _positiveFloat(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"{value} is not a positive number")
    return number


class Options(usage.Options):
    """Command-line options of C{twistd chatroom}."""

    synopsis = (
        "[--port N | --listen ENDPOINT ...] [--web-port N | --web-listen ENDPOINT ... | --no-web] "
        "[--irc-port N | --irc-listen ENDPOINT ... | --no-irc] [options]"
    )
    longdesc = (
        "A chat server. Open http://HOST:8080/ in a browser, connect an IRC client to "
        "HOST 6667, or connect with `python -m chatsvc.client NICK` or `nc HOST 5051`. With "
        "neither --port nor --listen the line door listens on TCP port 5051; with neither "
        "--web-port nor --web-listen (nor --no-web) the chat page is served on TCP port 8080; "
        "with neither --irc-port nor --irc-listen (nor --no-irc) the IRC door listens on TCP "
        "port 6667; all on all interfaces."
    )

    optParameters = [
        [
            "port",
            "p",
            None,
            f"TCP port to listen on, on all interfaces (default {DEFAULT_PORT}).",
            _port,
        ],
        [
            "web-port",
            None,
            None,
            f"TCP port for the chat page and its WebSocket, on all interfaces (default "
            f"{DEFAULT_WEB_PORT}).",
            _port,
        ],
        [
            "irc-port",
            None,
            None,
            f"TCP port for IRC clients, on all interfaces (default {DEFAULT_IRC_PORT}).",
            _port,
        ],
        [
            "server-name",
            None,
            None,
            "The server's name in IRC numerics and as the source of its messages (default: "
            "the host name).",
        ],
        [
            "motd",
            None,
            None,
            "A text file whose lines IRC clients are shown as the message of the day (read at "
            "startup; without it, clients are told there is none).",
        ],
        [
            "backlog",
            None,
            4096,
            "Connections the kernel may complete before the server accepts them, for each "
            "TCP, TLS and UNIX endpoint that does not give its own backlog= (the kernel caps "
            "it at net.core.somaxconn).",
            _atLeast(1),
        ],
        [
            "log-format",
            None,
            "console",
            "Log format: console (twistd's text lines) or json (one JSON object per line, "
            "written where twistd writes its log: -l FILE, or stdout with -n).",
        ],
        [
            "max-line-length",
            None,
            _DEFAULTS.maxLineLength,
            "Longest line accepted from a client, in bytes; longer lines are refused with an "
            "error and discarded.",
            _atLeast(MIN_LINE_LENGTH),
        ],
        [
            "flood-rate",
            None,
            _DEFAULTS.floodRate,
            "Lines per second one connection may send; past it (and the burst) its lines are "
            "delayed, never dropped.",
            _positiveFloat,
        ],
        [
            "flood-burst",
            None,
            _DEFAULTS.floodBurst,
            "Lines one connection may send at once (a paste) before --flood-rate applies.",
            _atLeast(1),
        ],
        [
            "address-flood-rate",
            None,
            _DEFAULTS.addressFloodRate,
            "Lines per second all connections from one IP address may send together; past it "
            "(and the burst) their lines are delayed, as with --flood-rate.",
            _positiveFloat,
        ],
        [
            "address-flood-burst",
            None,
            _DEFAULTS.addressFloodBurst,
            "Lines all connections from one IP address may send at once before "
            "--address-flood-rate applies.",
            _atLeast(1),
        ],
        [
            "max-send-queue",
            None,
            _DEFAULTS.maxSendQueue,
            "Bytes of output that may wait in the server for a member who is not reading "
            "before that member is disconnected (at least 65536, the size of Twisted's own "
            "write buffer, past which long replies wait for the member to read).",
            _atLeast(65536),
        ],
        [
            "name-timeout",
            None,
            _DEFAULTS.nameTimeout,
            "Seconds a new connection has to choose a nickname before it is closed.",
            _positiveFloat,
        ],
        [
            "max-connections",
            None,
            _DEFAULTS.maxConnections,
            "Open connections accepted in all; more are told the server is full.",
            _atLeast(1),
        ],
        [
            "max-connections-per-address",
            None,
            _DEFAULTS.maxConnectionsPerAddress,
            "Open connections accepted from one IP address.",
            _atLeast(1),
        ],
        [
            "keepalive",
            None,
            _DEFAULTS.keepAliveIdle,
            "Seconds of silence before TCP keepalive checks that a peer is still there; a dead "
            "peer is dropped about a minute later.",
            _atLeast(1),
        ],
        [
            "shutdown-grace",
            None,
            _DEFAULTS.shutdownGrace,
            "Seconds a stopping server waits for connections to close before cutting them.",
            _positiveFloat,
        ],
        [
            "room",
            None,
            DEFAULT_ROOM,
            "The room every member lands in on arrival.",
        ],
        [
            "max-rooms",
            None,
            1000,
            "Rooms there may be at once; when a new one is needed, the room left empty "
            "longest is forgotten (its stored history stays until it expires).",
            _atLeast(1),
        ],
        [
            "rooms-per-member",
            None,
            5,
            "Rooms one member may create at once; one more each minute after that.",
            _atLeast(1),
        ],
        [
            "rooms-per-address",
            None,
            20,
            "Rooms all the members from one IP address may create at once; one more each "
            "minute after that.",
            _atLeast(1),
        ],
        [
            "crowd",
            None,
            CROWD_SIZE,
            "Rooms with more members than this announce joins and leaves at most once every "
            "--crowd-interval seconds, together, and show newcomers the member count only.",
            _atLeast(1),
        ],
        [
            "crowd-interval",
            None,
            CROWD_INTERVAL,
            "Seconds between announcements of joins and leaves in a crowded room (see --crowd).",
            _positiveFloat,
        ],
        [
            "db",
            None,
            "chatsvc.db",
            "SQLite file where room messages are kept across restarts (created if missing; "
            "relative to the working directory); :memory: keeps nothing.",
        ],
        [
            "history-lines",
            None,
            20,
            "Recent messages shown to a member joining a room (and by /history).",
            _atLeast(0),
        ],
        [
            "history-max",
            None,
            100,
            "Most messages /history N shows; each room keeps that many at hand in memory.",
            _atLeast(1),
        ],
        [
            "history-keep",
            None,
            10_000,
            "Messages stored per room; older ones are deleted.",
            _atLeast(1),
        ],
        [
            "history-days",
            None,
            30.0,
            "Days stored messages are kept; 0 keeps them until --history-keep pushes them out.",
            _nonNegativeFloat,
        ],
        [
            "history-max-bytes",
            None,
            DEFAULT_MAX_BYTES,
            "Bytes the history database may use in all rooms together (its pages in use, as "
            "SQLite counts them); past it the oldest messages are deleted, down to 90 %. "
            "0: no bound.",
            _atLeast(0),
        ],
        [
            "registration",
            None,
            "open",
            "Who may register a nickname with /register: open (anyone), invite (with a "
            "one-use code from chatsvc-admin invite) or closed.",
        ],
        [
            "guests",
            None,
            "yes",
            "Whether members who have not logged in to an account may chat: yes or no.",
        ],
        [
            "redis",
            None,
            None,
            "Join a cluster of nodes sharing rooms, nicknames, accounts and history through "
            "the Redis at this URL: redis://[:PASSWORD@]HOST[:PORT][/DB], or rediss:// for "
            "TLS. Accounts, moderation and history are then kept in Redis, not in --db "
            "(python -m chatsvc.cluster.migrate moves a --db file there). Without it: one "
            "node on its own.",
        ],
        [
            "redis-ca",
            None,
            None,
            "For rediss:// URLs: a PEM file of the certificate authority that signed Redis' "
            "certificate, trusted instead of the system's authorities.",
        ],
        [
            "node-name",
            None,
            None,
            "This node's name in the cluster, its logs and metrics, unique among the nodes "
            "(default: host name and line door port, HOST:5051).",
        ],
        [
            "lease",
            None,
            DEFAULT_LEASE,
            "Seconds the other nodes wait for a node gone silent (killed, cut off) before "
            "announcing its members as left and freeing their nicknames; it renews its "
            "lease every third of that.",
            _positiveFloat,
        ],
        [
            "redis-prefix",
            None,
            "chatsvc:",
            "What the cluster's keys and channels in Redis start with, so that several "
            "clusters can share one Redis.",
        ],
    ]

    optFlags = [
        ["no-web", None, "Serve no chat page and no WebSocket."],
        ["no-irc", None, "Listen for no IRC clients."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["web-listen"] = []
        self["irc-listen"] = []
        self["metrics-listen"] = []
        self["web-origin"] = []
        self["web-trusted-proxy"] = []

    def opt_listen(self, description: str) -> None:
        """Listen on a Twisted endpoint description, e.g. tcp:5051:interface=127.0.0.1, tcp6:5051:interface=\\:\\:1, unix:/run/chat.sock or ssl:6697:privateKey=key.pem (repeatable; --port N adds tcp:N)."""
        self["listen"].append(_endpoint(description))

    def opt_web_listen(self, description: str) -> None:
        """Serve the chat page and its WebSocket on a Twisted endpoint description, e.g. tcp:8080:interface=127.0.0.1 or ssl:8443:privateKey=key.pem:certKey=cert.pem for https and wss (repeatable; --web-port N adds tcp:N)."""
        self["web-listen"].append(_endpoint(description))

    def opt_irc_listen(self, description: str) -> None:
        """Listen for IRC clients on a Twisted endpoint description, e.g. tcp:6667:interface=127.0.0.1 or ssl:6697:privateKey=key.pem:certKey=cert.pem for IRC over TLS (repeatable; --irc-port N adds tcp:N)."""
        self["irc-listen"].append(_endpoint(description))

    def opt_metrics_listen(self, description: str) -> None:
        """Serve Prometheus metrics (/metrics) and a health check (/healthz) on a Twisted endpoint description, e.g. tcp:9108:interface=127.0.0.1 (repeatable; off by default). docs/metrics.md lists the metrics."""
        self["metrics-listen"].append(_endpoint(description))

    def opt_web_origin(self, origin: str) -> None:
        """An origin, such as https://chat.example.org, whose pages may connect to the WebSocket besides the page's own (repeatable): the address a reverse proxy serves the page at."""
        scheme, separator, rest = origin.partition("://")
        if scheme not in ("http", "https") or not separator or not rest or "/" in rest.rstrip("/"):
            raise usage.UsageError(f"--web-origin must be like https://host[:port], not {origin!r}")
        self["web-origin"].append(origin)

    def opt_web_trusted_proxy(self, address: str) -> None:
        """The IP address of a reverse proxy in front of the web door, whose X-Forwarded-For header then says who the client is (repeatable); from any other peer, that header is ignored."""
        try:
            self["web-trusted-proxy"].append(str(ipaddress.ip_address(address)))
        except ValueError:
            raise usage.UsageError(f"--web-trusted-proxy must be an IP address, not {address!r}")

    def postOptions(self) -> None:
        """Check the log format and work out the endpoints to listen on."""
        if self["log-format"] not in LOG_FORMATS:
            raise usage.UsageError(
                f"--log-format must be one of {', '.join(LOG_FORMATS)}, "
                f"not {self['log-format']!r}"
            )
        try:
            self["room"] = validate_room_name(self["room"])
        except ChatError as error:
            raise usage.UsageError(f"--room: {error}")
        if self["registration"] not in REGISTRATION_MODES:
            raise usage.UsageError(
                f"--registration must be one of {', '.join(REGISTRATION_MODES)}, "
                f"not {self['registration']!r}"
            )
        if self["guests"] not in ("yes", "no"):
            raise usage.UsageError(f"--guests must be yes or no, not {self['guests']!r}")
        if self["history-lines"] > self["history-max"]:
            raise usage.UsageError("--history-lines may not be more than --history-max")
        endpoints = list(self["listen"])
        if self["port"] is not None or not endpoints:
            port = DEFAULT_PORT if self["port"] is None else self["port"]
            endpoints.insert(0, f"tcp:{port}")
        self["endpoints"] = [withBacklog(endpoint, self["backlog"]) for endpoint in endpoints]
        web = list(self["web-listen"])
        if self["no-web"]:
            if web or self["web-port"] is not None:
                raise usage.UsageError("--no-web cannot be given with --web-port or --web-listen")
        elif self["web-port"] is not None or not web:
            port = DEFAULT_WEB_PORT if self["web-port"] is None else self["web-port"]
            web.insert(0, f"tcp:{port}")
        self["web-endpoints"] = [withBacklog(endpoint, self["backlog"]) for endpoint in web]
        irc = list(self["irc-listen"])
        if self["no-irc"]:
            if irc or self["irc-port"] is not None:
                raise usage.UsageError("--no-irc cannot be given with --irc-port or --irc-listen")
        elif self["irc-port"] is not None or not irc:
            port = DEFAULT_IRC_PORT if self["irc-port"] is None else self["irc-port"]
            irc.insert(0, f"tcp:{port}")
        self["irc-endpoints"] = [withBacklog(endpoint, self["backlog"]) for endpoint in irc]
        if self["server-name"] is None:
            self["server-name"] = socket.gethostname() or "chatsvc"
        elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-]*", self["server-name"]):
            raise usage.UsageError(
                f"--server-name must be a host name (letters, digits, '.' and '-'), not {self['server-name']!r}"
            )
        if self["redis"] is not None:
            try:
                self["redis-address"] = parseRedisUrl(self["redis"])
            except ValueError as error:
                raise usage.UsageError(f"--redis: {error}")
            if self["node-name"] is None:
                self["node-name"] = defaultNodeName(_portOf(self["endpoints"][0]))
            if self["redis-ca"] is not None:
                if not self["redis-address"].tls:
                    raise usage.UsageError("--redis-ca is for TLS: give a rediss:// URL")
                try:
                    with open(self["redis-ca"], "rb") as file:
                        self["redis-ca-pem"] = file.read()
                    Certificate.loadPEM(self["redis-ca-pem"])
                except (OSError, SSLError, ValueError) as error:
                    raise usage.UsageError(f"--redis-ca: cannot read a PEM certificate from {self['redis-ca']}: {error}")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}", self["node-name"]):
                raise usage.UsageError(
                    "--node-name must be 1 to 64 letters, digits, '.', '_', ':' and '-', "
                    f"not {self['node-name']!r}"
                )
        elif self["node-name"] is not None:
            raise usage.UsageError("--node-name names a node of a cluster: give --redis too")
        if self["motd"] is not None:
            try:
                with open(self["motd"], encoding="utf-8") as file:
                    self["motd-lines"] = [line.rstrip("\r\n") for line in file]
            except (OSError, UnicodeDecodeError) as error:
                raise usage.UsageError(f"--motd: cannot read {self['motd']}: {error}")
        else:
            self["motd-lines"] = None


def _portOf(description: str) -> str:
    # The port of an endpoint description, for a node's default name (a UNIX socket's path).
    fields = description.split(":")
    return fields[1] if len(fields) > 1 else description


def _endpoint(description: str) -> str:
    # An endpoint description that Twisted can make a listening endpoint of.
    from twisted.internet import reactor

    try:
        serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as error:
        raise usage.UsageError(f"invalid endpoint {description!r}: {error}")
    return description


_BACKLOG_KINDS = frozenset({"tcp", "tcp6", "ssl", "unix"})


def withBacklog(description: str, backlog: int) -> str:
    """
    The endpoint C{description} with C{backlog} as its listen backlog, if it is a kind that has
    one (TCP, TLS, UNIX) and does not give its own.

    The backlog is how many connections the kernel completes before the server accepts them.
    Twisted's default, 50, is easily passed when a class or a team connects at once; the kernel
    then answers with SYN cookies and drops the final ACK of the connections it has no room
    for, and since chatsvc speaks first (C{GET_NAME}), such a client waits for ever on a
    connection the server never saw.
    """
    kind, _, rest = description.partition(":")
    if kind not in _BACKLOG_KINDS or "backlog=" in rest:
        return description
    return f"{description}:backlog={backlog}"


_SPARE_FILES = 64
"""File descriptors kept beyond one per connection: listening sockets, logs, the reactor."""


def ensureFileLimit(needed: int) -> None:
    """
    Raise this process's soft limit on open files to C{needed} if it is lower (many systems
    default to 1024, fewer than the default connection cap needs), up to the hard limit; warn
    when even that is too low.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        _log.info("file_limit_raised", soft=target, was=soft)
    if target < needed:
        _log.warning(
            "file_limit_too_low",
            limit=target,
            needed=needed,
            hint="lower --max-connections or raise the hard limit (ulimit -Hn)",
        )


_DOORS = (("line", ChatProtocol), ("web", WebSession), ("irc", IrcProtocol))


def _metrics(
    hub: Hub, admission: Admission, accounts: Accounts, store: IHistoryStore, node: ClusterNode | None
) -> list[Metric]:
    # What /metrics reports (docs/metrics.md), each read when it is asked for.
    def connections() -> dict[tuple[tuple[str, str], ...], float]:
        counts = {name: 0 for name, _ in _DOORS}
        for connection in admission.connections:
            for name, kind in _DOORS:
                if isinstance(connection, kind):
                    counts[name] += 1
        return {(("door", name),): count for name, count in counts.items()}

    history = store if isinstance(store, (SQLiteStore, RedisHistoryStore)) else None
    cluster = [] if node is None else [
        Metric("chatsvc_redis_up", "gauge", "Whether this node is linked to Redis and in the cluster (1) or not (0).", lambda: int(node.inCluster)),
        Metric("chatsvc_redis_outages_total", "counter", "Times the link to Redis was lost.", lambda: node.outages),
        Metric("chatsvc_cluster_nodes", "gauge", "Nodes of the cluster this node knows of, itself included.", lambda: len(node.peers) + 1),
        Metric("chatsvc_cluster_published_total", "counter", "Messages this node published to the others.", lambda: node.published),
        Metric("chatsvc_cluster_unpublished_total", "counter", "Messages this node could not publish (Redis out of reach).", lambda: node.unpublished),
        Metric("chatsvc_cluster_received_total", "counter", "Messages of other nodes this node applied.", lambda: node.received),
        Metric(
            "chatsvc_cluster_lag_seconds",
            "histogram",
            "Seconds from another node's publishing a message to this node's delivering it.",
            lambda: Histogram(LAG_BUCKETS, node.lagBuckets, node.lagSum),
        ),
    ]
    return cluster + [
        Metric("chatsvc_connections", "gauge", "Open connections, named or not, by door.", connections),
        Metric("chatsvc_members", "gauge", "Members here (an account on several connections is one).", lambda: len(hub)),
        Metric("chatsvc_rooms", "gauge", "Rooms (with members, history or a topic).", lambda: len(hub.rooms())),
        Metric("chatsvc_messages_total", "counter", "Messages and actions said in rooms, and private messages.", lambda: hub.messages),
        Metric("chatsvc_deliveries_total", "counter", "Events handed to members' connections by rooms' broadcasts.", lambda: hub.deliveries),
        Metric("chatsvc_flood_delays_total", "counter", "Times a connection's lines were delayed by the flood limits.", lambda: admission.floodDelays),
        Metric("chatsvc_send_queue_cuts_total", "counter", "Connections cut for a send queue past --max-send-queue.", lambda: admission.cuts),
        Metric("chatsvc_login_failures_total", "counter", "Logins refused for a wrong password.", lambda: accounts.failedLogins),
        Metric("chatsvc_history_queue", "gauge", "Messages waiting to be written to the history file.", lambda: history.pending if history else 0),
        Metric("chatsvc_history_written_total", "counter", "Messages written to the history file.", lambda: history.written if history else 0),
        Metric("chatsvc_history_failures_total", "counter", "Messages whose writing to the history file failed (each attempt).", lambda: history.failed if history else 0),
    ]


def makeService(options: Options, reactor: IReactorCore | None = None) -> ChatService:
    """Build the chat service from parsed L{Options}."""
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    assert reactor is not None
    configureLogging()
    observer = None
    if options["log-format"] == "json":
        twistdOptions = getattr(options, "parent", None) or {}
        observer = jsonObserverFactory(
            twistdOptions.get("logfile"), bool(twistdOptions.get("nodaemon", True))
        )()
    limits = Limits(
        maxLineLength=options["max-line-length"],
        floodRate=options["flood-rate"],
        floodBurst=options["flood-burst"],
        addressFloodRate=options["address-flood-rate"],
        addressFloodBurst=options["address-flood-burst"],
        maxSendQueue=options["max-send-queue"],
        nameTimeout=options["name-timeout"],
        maxConnections=options["max-connections"],
        maxConnectionsPerAddress=options["max-connections-per-address"],
        keepAliveIdle=options["keepalive"],
        shutdownGrace=options["shutdown-grace"],
    )
    store: IHistoryStore
    accountStore: IAccountStore
    link = RedisLink()
    redisAccounts: RedisAccountStore | None = None
    node: ClusterNode | None = None
    if options["redis"] is not None:
        prefix = options["redis-prefix"]
        days = options["history-days"]
        store = RedisHistoryStore(
            link, prefix, keepPerRoom=options["history-keep"], maxAge=days * 86400 if days else None
        )
        redisAccounts = RedisAccountStore(link, prefix)
        accountStore = SharedAccountStore(redisAccounts, lambda key: node.accountChanged(key) if node else None)
        moderationStore: IModerationStore = SharedModerationStore(
            RedisModerationStore(link, prefix),
            lambda change, value: node.moderationChanged(change, value) if node else None,
        )
    elif options["db"] == ":memory:":
        store = NullStore()
        accountStore = MemoryAccountStore()
        moderationStore = MemoryModerationStore()
    else:
        days = options["history-days"]
        store = SQLiteStore(
            options["db"],
            keepPerRoom=options["history-keep"],
            maxAge=days * 86400 if days else None,
            maxBytes=options["history-max-bytes"] or None,
        )
        accountStore = SQLiteAccountStore(store)
        moderationStore = SQLiteModerationStore(store)
    hasher = Argon2Hasher()
    accounts = Accounts(
        reactor,  # type: ignore[arg-type]
        hasher,
        accountStore,
        registration=options["registration"],
        guests=options["guests"] == "yes",
    )
    hub = Hub(
        reactor,  # type: ignore[arg-type]
        store,
        defaultRoom=options["room"],
        historyKept=options["history-max"],
        maxRooms=options["max-rooms"],
        crowdSize=options["crowd"],
        crowdInterval=options["crowd-interval"],
        maxTextBytes=limits.maxLineLength,
        roomsPerMember=options["rooms-per-member"],
        roomsPerAddress=options["rooms-per-address"],
        accounts=accounts,
        moderation=Moderation(reactor, moderationStore),  # type: ignore[arg-type]
    )
    # What every door shares: one admission (the caps count every door's connections together)
    # and one outbox (writes gathered per reactor turn, whichever door or node caused them).
    admission = Admission(reactor, limits)  # type: ignore[arg-type]
    outbox = Outbox(reactor)  # type: ignore[arg-type]
    if options["redis"] is not None:
        node = ClusterNode(
            reactor,
            hub,
            options["redis-address"],
            options["node-name"],
            lease=options["lease"],
            prefix=options["redis-prefix"],
            link=link,
            endpoint=redisEndpoint(reactor, options["redis-address"], authority=options.get("redis-ca-pem")),
            reloadAccount=lambda key: _reloadAccount(redisAccounts, accounts, key),  # type: ignore[arg-type]
            moderationChanged=lambda change, value: applyModerationChange(hub.moderation, change, value),
            joinedCluster=_sharedStateReader(hub, accounts, store, link),  # type: ignore[arg-type]
            gather=lambda: None if outbox.gathering else outbox.gather(),
        )
    line = ChatFactory(
        hub,
        limits,
        historyLines=options["history-lines"],
        admission=admission,
        outbox=outbox,
    )
    doors = [Door("line", line, tuple(options["endpoints"]))]
    if options["web-endpoints"]:
        web = WebFactory(
            hub,
            limits,
            admission,
            outbox,
            origins=options["web-origin"],
            trustedProxies=options["web-trusted-proxy"],
        )
        doors.append(Door("web", makeSite(web), tuple(options["web-endpoints"])))
    if options["irc-endpoints"]:
        irc = IrcFactory(
            hub,
            limits,
            admission,
            outbox,
            serverName=options["server-name"],
            network=options["server-name"],
            motd=options["motd-lines"],
            historyLines=options["history-lines"],
        )
        doors.append(Door("irc", irc, tuple(options["irc-endpoints"])))
    if options["metrics-listen"]:
        metrics = _metrics(hub, admission, accounts, store, node)
        doors.append(Door("metrics", makeMetricsSite(lambda: metrics), tuple(options["metrics-listen"])))
    return ChatService(
        reactor,
        hub,
        admission,
        doors,
        observer,
        hasher=hasher,
        prepare=[lambda: ensureFileLimit(limits.maxConnections + _SPARE_FILES)],
        cluster=node,
    )


def _reloadAccount(store: RedisAccountStore, accounts: Accounts, key: str) -> Deferred[None]:
    # Another node registered or changed the account `key`: read it again.
    def remember(account: Account | None) -> None:
        if account is not None:
            accounts.remember(account)

    return store.loadAccount(key).addCallback(remember)


def _sharedStateReader(
    hub: Hub, accounts: Accounts, store: RedisHistoryStore, link: RedisLink
) -> Callable[[], Deferred[None]]:
    # What a node reads each time it joins its cluster (first, and after an outage): the
    # accounts and moderation as they are now, and, the first time, the rooms' history.
    first = True

    async def read() -> None:
        nonlocal first
        if first:
            for warning in await checkDurability(link):
                _log.warning("redis_not_durable", reason=warning)
        await accounts.load()
        await hub.moderation.load()
        hub.restoreTopics()
        if first:
            await store.preload(hub.historyKept)
            hub.restore(store.recent(hub.historyKept))
            first = False
        _log.info("cluster_state_read", accounts=len(accounts), admins=len(hub.moderation.adminKeys))

    return lambda: Deferred.fromCoroutine(read())
