#!/usr/bin/env python3
"""
The fan-out benchmark: chatsvc against a reference relay, measured in the same run.

    python benchmarks/fanout.py                                   # the standard suite
    python benchmarks/fanout.py --workload standard --json /tmp/standard.json
    python benchmarks/fanout.py --workload openloop --clients 200 --senders 20 --rate 10
    python benchmarks/fanout.py --workload closedloop --clients 50 --duration 5
    python benchmarks/fanout.py --workload idle --clients 1000 --target chatsvc
    python benchmarks/fanout.py --workload joinstorm --clients 3000
    python benchmarks/fanout.py --workload web --json /tmp/web.json   # the web door's suite
    python benchmarks/fanout.py --workload closedloop --door web --clients 100
    python benchmarks/fanout.py --workload closedloop --door mixed --clients 100
    python benchmarks/fanout.py --workload irc --json /tmp/irc.json   # the IRC door's suite
    python benchmarks/fanout.py --workload closedloop --door irc --clients 100
    python benchmarks/fanout.py --workload cluster --json /tmp/cluster.json   # one node, two nodes

Every workload runs against each target (C{--target both}, the default): chatsvc itself
(C{twistd -n chatroom}) and C{benchmarks/relay.py}, the thinnest Twisted relay that speaks the same
handshake. A third target, C{history}, is chatsvc storing its rooms' history in its SQLite file
(as by default; the target C{chatsvc} runs with C{--db :memory:}): C{--target chatsvc,history}
shows what storing costs. The relay is the ceiling a Twisted server can reach on this machine today, so every
figure is also shown as a ratio, chatsvc/relay, which holds on a noisy or slower machine where the
absolute figures do not.

Workloads
=========

C{openloop}: N clients in one room; K of them (C{--senders}) each send R lines a second
(C{--rate}) for D seconds (C{--duration}), on schedule whatever the server does, the first at a
random phase. Reported: deliveries/s achieved and offered, latency p50/p99/max from the sender's
timestamp to the receipt, and lost, duplicated and reordered deliveries.

C{closedloop}: N clients, all sending (or K). Each sender keeps a window of W lines in flight: a
line counts as delivered when every other client has received it, and a sender refills its window
(the whole free part at once, as soon as at least half of it is free) only as its oldest lines
are delivered. The peak is found by a ramp, which is robust where one fixed window is not (the
best window differs between servers and machines: past it, a larger window only adds queueing,
and in some servers instability once output buffers fill): short steps (C{--step} seconds, after
a warm-up, each followed by a drain) at W = 1, 2, 4, ... 128, going at least to 32 and then
stopping when two steps in a row bring no more than 3% over the best one, or at once when a step
does not drain (a closed loop cannot lose a line without stalling). The window sustained is the
smallest whose step came within 5% of the best (the knee of the curve). That window then runs for D
seconds in slices of about a second, and the median slice is the peak reported ("deliveries/s
with nothing lost": every slice drained, every delivery checked); ramp and slices are in the JSON.
All targets' servers run at once for this workload (each with its own clients, on the same CPU),
and their steps and slices take turns, so that a machine whose speed drifts during the run (a
shared one does, by a factor of two at times) weighs on every target alike. C{--window W} skips
the ramp. Latencies in a closed loop are queueing by design; they are sampled (a read's first
line) and shown for information only.

C{idle}: C clients connect at once and complete the handshake; reported: the time from the first
connect until every client has its C{connected to server!}, the server's RSS (VmRSS) before and
after (once the server is quiet again), and the RSS per connection.

C{joinstorm}: C clients connect and send their nicknames as fast as the generator can; reported:
the time from the first connect until every client has received every join notice it should (each
client is told of everyone who joins after it: C*(C-1)/2 in all), and how many were seen. A join
is told alone, C{<nick> joined!}, or in a summary: in a room of more than C{--crowd} members (100
by default), chatsvc tells of the joins and leaves of each C{--crowd-interval} (1 s) at once, in
lines of up to 50 names such as C{*** Joined: <nick>, <nick>} and C{*** Left: <nick>}, and gives
a newcomer only the count of members, C{*** Members (N): too many to list here; ...}. Each
nickname in a summary counts as one join notice, so the storm ends as soon as the last one
arrives, however they came (only if some never come does the wait end, once none has arrived for
3 s). For chatsvc, each client's count of notices is also checked against its place in the room,
the count in its member line. Any other notices are counted and reported.

C{standard}: the standard suite, in about two minutes on a two-core machine: open loop N=100 all
sending 5 lines/s; open loop N=500 with 50 senders at 10 lines/s, where 100 receivers (the 50
senders and 50 others, one in nine of the rest in the order they joined) check every line and its
latency and the other 400 count their lines (C{--checked}: checking all 250,000 deliveries a
second would take more than the generator's whole CPU); closed loop N=100 all sending;
idle C=2000; join storm C=5000.

The web door
============

C{--door web} runs a workload with WebSocket clients: against chatsvc's browser door (started
with C{--web-listen tcp:0:interface=127.0.0.1}, its limits raised as the line door's are: they
are the same limits) and, as the relay, C{benchmarks/wsrelay.py}, the thinnest relay on the
same library (twisted.web's site for the handshake, chatsvc.web.websocket and wsproto for the
frames, on Twisted's epoll reactor), which writes every text message to every
other connection and does nothing else. The clients are the generator's own (a WebSocket
library's costs would be the generator's limit): the opening handshake at C{/ws}, masked frames
(one key per connection), and frames read in bulk. With chatsvc they speak its JSON protocol
(docs/web-protocol.md): C{hello}; C{{"type":"name","nick":...}}; C{welcome}; then
C{{"type":"say","room":"lobby","text":...}}, and they receive C{said} events; to the relay they
send the same C{say} messages, which it relays as they are. A web chat text is as long as a
line's (C{--size}) and ends with the sender's nickname (the relay's frames carry nothing else
to tell the senders apart). chatsvc sends a web member its own messages too: they are checked
to arrive in order, and counted apart (C{own_messages_received}), not as deliveries. The relay
tells nobody of joins, so its runs expect none.

Every chat frame of a run has the same width (see C{WebLayout}), so receivers check them as the
line clients check lines: a read that is all chat frames has the columns the server fills in
(the event's id and time) zeroed, and runs of one sender's frames are compared, as bytes, with
what that sender's receivers are to get; anything else (joins, notices, pings, a frame split
between reads, a frame out of order) is read frame by frame and its JSON parsed, and lost,
duplicated and reordered messages are counted exactly as lines are.

C{--door mixed} (closed loop, or any workload) is one chatsvc room of both doors' members, every
second client (in joining order) a WebSocket; it runs against three chatsvc servers at once,
the targets C{mixed} (that room), C{line} and C{web} (a room of the same size of each door's
members alone), so that the ratios mixed/line and mixed/web say what mixing costs.

C{web}: the web door's suite: open loop N=100 all sending 5 lines/s, closed loop N=100 all
sending, idle C=2000, each against chatsvc and the WebSocket relay; and the closed loop N=100
with C{--door mixed}.

The IRC door
============

C{--door irc} runs a workload with IRC clients against chatsvc's IRC door (docs/irc.md),
started with C{--irc-listen tcp:0:interface=127.0.0.1} (the harness gives chatsvc C{--no-irc}
otherwise), its port read from the server's C{server_listening ... door='irc'} line as the web
door's is, and its limits raised as the line door's are: they are the same limits (the flood
limits, the connection caps, the send queue, the registration timeout, which is
C{--name-timeout}). There is no IRC relay: the reference is chatsvc's own line door, measured
in the same run. As with C{--door mixed}, two chatsvc servers run, both with the IRC door: the
targets C{irc} (IRC clients in one room) and C{line} (as many line clients in one room of their
own server); in the closed loop both at once, their steps in turn. The ratio irc/line is what
the IRC door costs.

The clients are the generator's own (an IRC library's costs would be the generator's limit):
C{NICK n0000001} and C{USER n0000001 0 * :n0000001}, and no C{CAP} (so no tags: plain lines,
and no C{echo-message}: the door sends nobody their own messages, and one coming back is an
error). A client is a member from its C{001}; the server puts every member in C{#lobby} and
tells it so (its C{JOIN}, then C{353} and C{366}). It sends C{PRIVMSG #lobby :<text>}, and
receives C{:<nick>!chat@chatsvc PRIVMSG #lobby :<text>}; it answers C{PING} with C{PONG}. The
text is a line's (sequence number, send time, padding: C{--size} bytes, at most 471 so that
the door never cuts it in pieces), and the sender is in the source as on the line door it is
in C{<nick>: }. So every chat line an IRC client receives has one width, the line door's with a
longer prefix, and is checked by the same code as a line: whole reads compared as bytes with
what each sender sent (runs found from the digit columns of the source's nickname), the open
loop's predecessor sets, and lost, duplicated and reordered deliveries counted alike.

A join is told as C{:<nick>!chat@chatsvc JOIN #lobby}; each counts as one join notice, and a
read of nothing but C{JOIN} lines is counted in bulk as the line door's C{joined!} lines are
(once the client's own C{JOIN} has come: before, such a read could be its own). In a room of
more than C{--crowd} members the door tells the core's summaries as the line door does, in
notices from the server, C{NOTICE #lobby :*** Joined: <nick>, <nick>, ...} (and
C{*** Left: ...}), every nickname of a client's counting as one join notice; and a newcomer to
such a room gets, instead of every name in C{353}, a notice with their count
(C{*** #lobby has N members, too many to list on joining: ...}). A client's place in the room,
to check its count of notices against, is the number of names in its C{353} replies, or that
count; a C{PART} is a leave.

C{irc}: the IRC door's suite: open loop N=100 all sending 5 lines/s, closed loop N=100 all
sending, idle C=2000 and the join storm C=5000, each against C{irc} and C{line}.

The IRC door's targets (from its issue), checked after the table at these sizes (a target
missed is said, but is not a failure of the run):

  - closed loop, N=100 all sending: peak deliveries/s at least 0.8x the line door's
    (irc/line >= 0.8);
  - open loop, N=100 all sending 5 lines/s: latency p99 at most 5 ms;
  - idle, C=2000: at most 6 KB of server RSS per idle IRC member;
  - join storm, C=5000: every join notice delivered within 10 s.

The cluster workload
====================

C{cluster}: chatsvc as nodes of a cluster (docs/cluster.md), all on one C{redis-server} that
the benchmark starts for itself (it needs Debian's C{redis-server}; it never uses the system's):
on a free port of 127.0.0.1, its whole configuration on the command line, C{--save ''
--appendonly no} (no disk in the measure: each node's C{redis_not_durable} warning is expected,
and not counted as trouble), ready once it answers C{PING} with C{PONG} and C{INFO server} gives
its process id; started again on another port if another process took the one chosen. Two
clusters are measured, each against the same load, in the same run:

  - C{one_node}: one node with C{--redis redis://127.0.0.1:PORT/0}, a cluster of one: every
    member on it, every event still published once on Redis (and stored in its history);
  - C{two_nodes}: two nodes on database 1 of the same Redis, the room's members spread over
    them (client i on node i mod 2: 50 each of 100). Redis' keys are per database and the
    cluster's channels are named by prefix and database (C{PREFIX DB:events}), so the two
    clusters never meet; each workload has a prefix of its own too (C{fanout-openloop:},
    C{fanout-closedloop:}), so that no run finds another's nicknames or history.

Each node runs C{twistd -n chatroom --redis URL --redis-prefix PREFIX --node-name NAME --lease 10
--metrics-listen tcp:0:interface=127.0.0.1 --no-web --no-irc} with the limits the load needs
raised as for chatsvc, and no C{--db} (with C{--redis}, every room message goes to Redis'
history, a C{ZADD}, before it is published). Its ports (line door, metrics) are read from its
C{server_listening} lines, and clients connect only once it has logged C{cluster_joined} and,
in the two-node cluster, C{cluster_peer_seen} for the other node; once every client has joined,
the load waits until every node holds all of them (C{chatsvc_members} of each node's /metrics,
which counts its copies of the other node's members), so that every join has reached every node.

Two measures, each against both clusters: the open loop (C{openloop} above: by default N=100,
all sending 5 lines/s for 10 s, one cluster at a time, each with nodes of its own) and the closed
loop (C{closedloop} above, N=100 all sending: both clusters' nodes running at once, their steps
in turn; sustained for 5 s). Every delivery is checked as ever. Over each measured window (the
open loop's whole load until its last delivery; each ramp step and sustained slice of the
closed loop), each node's /metrics is read at both ends (its deliveries to its own members,
C{chatsvc_deliveries_total}; the messages it published and applied; its inter-node lag
histogram's sum and count), and as soon as each answers, its process's CPU (utime + stime of
/proc/PID/stat); then Redis' CPU (its /proc/PID/stat, and its own, finer account, C{INFO cpu})
and its C{INFO commandstats}. Reported, per cluster: the open loop's latency p50/p99/max,
deliveries/s and lost/duplicated/reordered; the closed loop's peak deliveries/s; in both,
each node's CPU microseconds per delivery to its own members (and all nodes' together), each
node's CPU %, the messages published, Redis' subscribers to the events channel (C{PUBSUB
NUMSUB}: every node subscribes, the publisher too), Redis' CPU microseconds per published
message and its CPU %, and the mean lag between nodes. Targets (said, not failures): nothing
lost, duplicated or reordered in either cluster; the two-node cluster's open-loop p99 at most
20 ms. The run fails if a delivery is wrong, a run aborts, or a node logs trouble.

Nothing is pinned: the nodes, Redis and the generator are more processes than a two-core machine
has CPUs, and they share them (the output says so). A node's CPU per delivery is work done
whatever the contention; its deliveries/s are not.

Redis' cost per message falls steeply as its rate rises (at 5 lines/s a sender each message
wakes it alone; at a closed loop's rate it serves many per wakeup), and the two clusters' closed
loops run at different rates, so neither pair of figures, one node against two, isolates what a
subscriber costs. After its closed loop, the one-node cluster therefore runs on at its window
in slices that take turns between its own subscriber alone (S=1) and with L{CLUSTER_LISTENERS}
passive subscribers more (S=5: connections of the generator that C{SUBSCRIBE} to its events
channel and read and drop what comes, as fast as it comes): Redis' CPU per published message in
each, and the difference per extra subscriber, at the same rate (in the table, and the JSON's
C{subscriber_cost}; every delivery still checked).

Then a projection, from the measured costs, each node and Redis on a core of its own: a
message costs a node c x m CPU seconds (c its cost per delivery, the two-node cluster's from the
closed loop, the cost at the peak; m its members), and Redis r(S) = r0 + rs x S, fitted to the
one node's costs per message with S=1 and S=5 (else to the open loop's, one node and two, where
both publish as many messages a second). One room then carries at most min(1 / (c x m),
1 / r(N)) messages a second on N nodes: shown for 1, 2, 4, 8 and 16 nodes, for the room of the
run's M members spread over the nodes (m = M / N; with where Redis' growing cost meets the
nodes' falling one, and the room's capacity stops growing), and for a room of 50 members a node
(with where Redis saturates, and the deliveries/s it tends to). The JSON (C{cluster}) has every figure, the targets, and the
projection from each regime alone (C{projection.closedloop}, C{projection.openloop}) beside
the one shown (C{projection.chosen}).

How it measures
===============

The generator is this one process, on Twisted's epoll reactor, with real TCP connections to
127.0.0.1 only. With two CPUs or more, the server is pinned to one and the generator to another
(C{os.sched_setaffinity}). The generator reports its own CPU use beside the server's, and the time
it spent waiting for its CPU (/proc/self/schedstat): when the two together fill its CPU, the
generator may be what limited a figure, and the table marks it SATURATED. It also reports how busy
each of the two CPUs was with anything else (/proc/stat): other load on a shared machine lowers the
absolute figures, which is why the ratios are the figures to compare across runs.

Once a client has joined, its connection is read from an epoll object of the generator's own
(which the reactor watches as one descriptor), one read per ready connection and no per-read
dispatch: with hundreds of connections bringing a line or two per read, that dispatch would cost
more than the checks. Receivers that only count their lines (C{--checked}) are read every 50 ms,
from a second epoll object, so that their reads do not delay those of the receivers whose latency
is measured.

A chat line is C{--size} bytes of text (80 by default) from a client with a fixed-width nickname:
a sequence number, the sender's monotonic clock in microseconds, then padding. The generator keeps
every line it sent, so it knows the exact bytes each receiver must get from each sender, in order,
and receivers check every delivery, in bulk where they can, with C-level operations on whole reads:

  - open loop (a read brings a line or two from each of many senders): each line has a known
    predecessor, and each receiver keeps the last line it got from each sender; a line is in order
    when its predecessor is that last line (for a large read, checked for all lines at once with
    set operations);
  - closed loop (runs of lines from one sender): runs are found from the nicknames' digit columns
    (every line has the same width), and each run is compared, as bytes, with the next lines its
    sender sent.

Whatever does not pass is checked line by line: lost (never arrived), duplicated and reordered
deliveries are counted, and any line that is not a chat, join or notice line is an error. A
latency runs from the sender's timestamp, taken just before the line goes to the kernel (straight
to the socket, not through the reactor's next turn), to the read that brought the line, both on
this process's clock: when the generator's own loop is busy, the delay of its reads is in it.

Servers are started on free ports with the limits they need raised (the benchmark prints which
and why), C{--db :memory:} for chatsvc (no history), and always stopped: SIGTERM, then SIGKILL if
they have not exited after a few seconds, also after an error or an interrupted run. Every wait
is bounded.

Output: a table (one row per workload and figure: chatsvc, relay, ratio) and, with C{--json}, every
figure with the machine's details (CPUs, Python and Twisted versions), and the IRC door's
targets met or missed (C{irc_targets}). The exit status is 0 when
every run completed with nothing lost, duplicated or reordered and no error; otherwise 1.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import gc
import hashlib
import json
import os
import platform
import random
import re
import resource
import select
import shutil
import signal
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import groupby, repeat
from operator import itemgetter, sub
from pathlib import Path
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IReadDescriptor,
    ITCPTransport,
)
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.internet.tcp import Connection as TCPConnection
from twisted.python.failure import Failure
from zope.interface import implementer

from harness import (
    DEFAULT_LIMITS,
    addressFloodOptions,
    LISTENING,
    Aborted,
    IReactor,
    RedisClient,
    RedisProcess,
    Schedule,
    ServerProcess,
    Unfinished,
    chatroomCommand,
    chooseCPUs,
    fire,
    ownCPUSeconds,
    raiseFileLimit,
    readCPUTicks,
    readWaitSeconds,
    redisBinary,
    runUntilDone,
    say,
    startRedis,
    within,
)

RELAY = Path(__file__).resolve().parent / "relay.py"
WSRELAY = Path(__file__).resolve().parent / "wsrelay.py"

TARGETS = ("chatsvc", "history", "accounts", "relay", "mixed", "line", "web", "irc")
"""What can be measured: chatsvc without history (C{--db :memory:}), chatsvc storing history in
its SQLite file as it does by default, the same with every client logged in to an account of its
own (C{accounts}: the file made beforehand with one account per client, which logs in with its
password, C{GET_PASSWORD} or the web door's C{name} with C{password}), and the relay (relay.py
for the line door, wsrelay.py for the web door). The next three are for C{--door mixed} only: chatsvc (without history) with a
room of both doors' members, and with a room of the same size of each door's alone. The last,
C{irc}, is for C{--door irc} only, with C{line}: chatsvc (without history) with a room of IRC
clients, and with a room of line clients of the same size."""
MIXED_TARGETS = ("line", "web", "mixed")
"""The targets of C{--door mixed}, which has no others."""
IRC_TARGETS = ("line", "irc")
"""The targets of C{--door irc}, which has no others: the line door is the IRC door's reference."""
DOOR_TARGETS = ("mixed", "line", "web", "irc")
"""The targets that belong to C{--door mixed} or C{--door irc} alone."""

RATIOS = (
    ("chatsvc", "relay"),
    ("history", "chatsvc"),
    ("accounts", "history"),
    ("mixed", "line"),
    ("mixed", "web"),
    ("irc", "line"),
)
"""The ratios shown, where a run has both targets."""
WORKLOADS = ("openloop", "closedloop", "idle", "joinstorm")
DOORS = ("line", "web", "mixed", "irc")
"""
How the clients reach the server: TCP lines, a WebSocket speaking JSON, half and half, or IRC.
"""

NICK_FORMAT = b"n%07d"
NICK_WIDTH = 8
PREFIX_WIDTH = NICK_WIDTH + 2
PREFIX = itemgetter(slice(0, PREFIX_WIDTH))
"""A delivered line's C{<nick>: } prefix: the key that groups a read's lines by sender."""
CHANGES = bytes([0x30] + [0x31] * 255)
"""A translation table: a zero byte becomes C{0}, any other C{1}."""
JOIN_SUFFIX = b" joined!\r\n"
JOIN_WIDTH = NICK_WIDTH + len(JOIN_SUFFIX)
HEADER_WIDTH = 25
"""C{%09d %014d }: the sequence number and send time at the start of every chat text."""
MIN_SIZE = HEADER_WIDTH + 1
WEB_MIN_SIZE = HEADER_WIDTH + NICK_WIDTH + 2
"""A web run's chat text ends with its sender's nickname (the relay's frames carry no other)."""

WEB_LISTEN = "tcp:0:interface=127.0.0.1"
"""Where chatsvc's web door listens for the web doors' workloads: a free loopback port."""
WEB_LISTENING = re.compile(r"server_listening.*127\.0\.0\.1:(\d+)' door='web'")
"""chatsvc's log line that its web door listens (after the line door's); its group is the port."""
IRC_LISTEN = "tcp:0:interface=127.0.0.1"
"""Where chatsvc's IRC door listens for the IRC workloads: a free loopback port."""
IRC_LISTENING = re.compile(r"server_listening.*127\.0\.0\.1:(\d+)' door='irc'")
"""chatsvc's log line that its IRC door listens (after the line door's); its group is the port."""
DOOR_LISTENING = re.compile(r"server_listening.*address='127\.0\.0\.1:(\d+)' door='(\w+)'")
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""RFC 6455's constant of the handshake's C{Sec-WebSocket-Accept}."""
SAY_HEAD = b'{"type":"say","room":"lobby","text":"'
"""How a web client's chat message begins, to chatsvc and to the WebSocket relay alike."""
TEXT_END = b'"}'
WEB_FLOOD_NOTICE = "You are sending too fast; your messages are being delayed."

IRC_USER_HOST = b"!chat@chatsvc"
"""What follows every member's nickname in its source on chatsvc's IRC door."""
IRC_SAY_HEAD = b"PRIVMSG #lobby :"
"""How an IRC client's chat line begins (the text follows, then C{\\r\\n})."""
IRC_PREFIX_WIDTH = 1 + NICK_WIDTH + len(IRC_USER_HOST) + 1 + len(IRC_SAY_HEAD)
"""
A delivered IRC chat line's C{:<nick>!chat@chatsvc PRIVMSG #lobby :}, before the text: as the
line door's C{<nick>: }, the key that groups a read's lines by sender.
"""
IRC_JOIN_SUFFIX = IRC_USER_HOST + b" JOIN #lobby\r\n"
IRC_JOIN_WIDTH = 1 + NICK_WIDTH + len(IRC_JOIN_SUFFIX)
IRC_MAX_SIZE = 512 - 2 - IRC_PREFIX_WIDTH
"""The longest text the IRC door sends as one C{PRIVMSG} (512 bytes with its source and C{\\r\\n})."""
IRC_FLOOD_NOTICE = b"You are sending too fast; your lines are being delayed."
IRC_QUIET_REPLIES = frozenset(
    b"%03d" % numeric
    for numeric in (2, 3, 4, 5, 221, 251, 252, 253, 254, 255, 265, 266, 332, 333, 372, 375, 376,
                    422)
)
"""The numerics of the welcome (after C{001}) and of joining a room that the benchmark ignores."""

WELCOME = b"*** Type /help for commands, /quit to leave"
"""The start of the last line of a welcome (it goes on to say which room the member is in)."""
FLOOD_NOTICE = b"*** You are sending too fast; your lines are being delayed."
LEFT = re.compile(rb"\S+ left!(?: \(.*\))?")
JOINED_SUMMARY = b"*** Joined: "
"""How a summary of joins begins (chatsvc, in a room of more than C{--crowd} members)."""
LEFT_SUMMARY = b"*** Left: "
"""How a summary of leaves begins."""
SUMMARY_SEPARATOR = b", "
MEMBERS_CONTINUED = b"***   "
"""How each further line of a long member list begins (its count is on its first line)."""
IRC_JOINED = b"#lobby :" + JOINED_SUMMARY
"""How the parameters of a crowded room's summary of joins begin (a C{NOTICE} from the server)."""
IRC_LEFT = b"#lobby :" + LEFT_SUMMARY
IRC_CROWDED = re.compile(rb"#lobby :\*\*\* #lobby has (\d+) members, too many to list")
"""The notice a newcomer to a crowded room gets instead of every name; its group is the count."""

NEVER = 1 << 62
"""What a sender's own slot in its receivers' progress holds: it receives nothing from itself."""
MAX_BUFFER = 16 << 20
"""Longest partial line kept (a member list of 5000 nicknames is about 50 KB)."""
SPARE_FILES = 64
MAX_SAMPLES = 10
"""Error lines and unknown notices kept word for word; the rest are counted."""
SATURATED = 90.0
"""Generator CPU (% of one CPU) from which the generator may be what limits a figure."""
RAMP = (1, 2, 4, 8, 16, 32, 64, 128)
RAMP_GAIN = 1.03
KNEE = 0.95
RAMP_AT_LEAST = 32
"""The ramp goes at least this far: small windows are noisy, and no server peaks below it."""
CLOSED_SLICE = 1.0
"""Seconds of a slice of the closed loop's sustained measure."""
STOP_GRACE = 8.0
"""
Seconds a server has to exit after SIGTERM before it is killed: chatsvc tells each member
goodbye and waits up to 5 s (its --shutdown-grace) for them to close, which thousands of
members, each logged as they go, take a few seconds to do.
"""

def monotonicUs() -> int:
    """The monotonic clock in microseconds: what senders stamp and receivers compare with."""
    return time.monotonic_ns() // 1000


# Measuring


def summaryMs(values: array[int]) -> dict[str, float]:
    """
    Durations in microseconds, summarized in milliseconds: p50, p90, p99, p99.9 (nearest rank),
    max and mean, and how many there were. Every duration is kept until the end of a run (8 bytes
    each) and sorted once then, outside the measured time.
    """
    ordered = sorted(values)
    count = len(ordered)
    summary: dict[str, float] = {}
    for name, percent in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        rank = max(1, -(-count * percent // 100))
        summary[name] = round(ordered[int(rank) - 1] / 1000, 3) if count else 0.0
    summary["max"] = round(ordered[-1] / 1000, 3) if count else 0.0
    summary["mean"] = round(sum(ordered) / count / 1000, 3) if count else 0.0
    summary["count"] = count
    return summary


class Probe:
    """
    What the server, the generator and their CPUs did over one measured phase: CPU used, time
    spent waiting for a CPU, and how busy each CPU was in all (anything beyond our two processes
    is other load on the machine, which makes a phase's figures less trustworthy).
    """

    def __init__(self, server: ServerProcess, cpus: tuple[int | None, int | None]) -> None:
        self.server = server
        self.cpus = cpus
        self.began = time.monotonic()
        self.own = ownCPUSeconds()
        self.ownWait = readWaitSeconds("self")
        self.serverCPU = server.cpuSeconds()
        self.serverWait = readWaitSeconds(server.pid)
        self.ticks = readCPUTicks()

    def finish(self, wall: float | None = None) -> dict[str, Any]:
        """The phase's figures, as percentages of one CPU over its wall time."""
        elapsed = time.monotonic() - self.began if wall is None else wall
        ticks = readCPUTicks()
        figures: dict[str, Any] = {
            "generator_cpu_percent": round(100 * (ownCPUSeconds() - self.own) / elapsed, 1),
            "generator_wait_percent": cpuPercent(self.ownWait, readWaitSeconds("self"), elapsed),
            "server_cpu_percent": cpuPercent(self.serverCPU, self.server.cpuSeconds(), elapsed),
            "server_wait_percent": cpuPercent(
                self.serverWait, readWaitSeconds(self.server.pid), elapsed
            ),
        }
        for role, cpu in zip(("server", "generator"), self.cpus):
            if cpu is None or cpu not in ticks or cpu not in self.ticks:
                continue
            busy, steal, total = (after - before for after, before in zip(ticks[cpu], self.ticks[cpu]))
            if total > 0:
                figures[f"{role}_cpu_busy_percent"] = round(100 * busy / total, 1)
                figures[f"{role}_cpu_steal_percent"] = round(100 * steal / total, 1)
        return figures


def linesOfWidth(data: bytes, width: int) -> int:
    """
    How many lines C{data} holds if every one is C{width} bytes long with its C{\\n} (checked
    with a few C-level operations on the whole read, not line by line); 0 if not.
    """
    count, rest = divmod(len(data), width)
    if rest or data[width - 1 :: width].count(b"\n") != count or data.count(b"\n") != count:
        return 0
    return count


def listenBacklog(connections: int) -> int:
    """A listen backlog for C{connections} arriving at once, within the kernel's own cap."""
    try:
        cap = int(Path("/proc/sys/net/core/somaxconn").read_text(encoding="ascii"))
    except (OSError, ValueError):
        cap = 4096
    return max(50, min(connections + 16, cap))


def sleep(reactor: IReactor, seconds: float) -> Deferred[None]:
    """A Deferred that fires after C{seconds}."""
    deferred: Deferred[None] = Deferred()
    reactor.callLater(max(0.0, seconds), fire, deferred)
    return deferred


# The servers


@dataclass(frozen=True)
class Workload:
    """One workload with its sizes."""

    kind: str
    clients: int
    senders: int = 0
    rate: float = 0.0
    duration: float = 0.0
    size: int = 80
    window: int | None = None
    step: float = 1.0
    checked: int | None = None
    """Open loop: how many receivers check every line (the rest count them); None: all."""
    door: str = "line"
    """
    How the clients connect (see L{DOORS}); C{mixed}: half of them each way; C{irc}: by IRC, in
    one server, and by lines in another.
    """

    @property
    def name(self) -> str:
        """A short readable name with the sizes (and the door, unless the line door)."""
        door = "" if self.door == "line" else f" door={self.door}"
        if self.kind == "openloop":
            checked = "" if self.checked is None else f" checked={self.checked}"
            return (
                f"openloop N={self.clients} K={self.senders} R={self.rate:g}/s "
                f"D={self.duration:g}s{checked}{door}"
            )
        if self.kind == "closedloop":
            window = "ramp" if self.window is None else str(self.window)
            return (
                f"closedloop N={self.clients} K={self.senders} W={window} "
                f"D={self.duration:g}s{door}"
            )
        return f"{self.kind} C={self.clients}{door}"

    @property
    def lineRate(self) -> float | None:
        """Lines a second one sender sends; None when unbounded (a closed loop)."""
        return self.rate if self.kind == "openloop" else None


def runDoor(workload: Workload, target: str) -> str:
    """
    How the clients of C{target} under C{workload} connect: C{line}, C{web}, C{mixed} or
    C{irc}.
    """
    if workload.door == "mixed":
        return target if target in MIXED_TARGETS else "mixed"
    if workload.door == "irc":
        return "line" if target == "line" else "irc"
    return workload.door


def targetsFor(workload: Workload, targets: list[str]) -> list[str]:
    """
    The targets C{workload} runs against: those asked for that it has (C{--door mixed} has
    only chatsvc's rooms of both doors' members and of each door's alone; C{--door irc}, only
    chatsvc's room of IRC clients and its room of line clients; the others, the rest).
    """
    if workload.door == "mixed":
        return [target for target in targets if target in MIXED_TARGETS] or list(MIXED_TARGETS)
    if workload.door == "irc":
        return [target for target in targets if target in IRC_TARGETS] or list(IRC_TARGETS)
    return [target for target in targets if target not in DOOR_TARGETS]


PASSWORD = b"bench-password"
"""Every benchmark account's password."""


def accountsDatabase(clients: int) -> Path:
    """
    A chatsvc database, in a temporary directory of its own, holding an account for each of
    the nicknames C{clients} clients take (L{NICK_FORMAT}), all with L{PASSWORD}: hashed once,
    with the server's own parameters, and the one hash kept for all (its salt is the same, so
    it is the same work for the server to check, once per login).
    """
    from chatsvc.chat.names import nick_key
    from chatsvc.storage.passwords import defaultHasher
    from chatsvc.storage.sqlite import migrate

    directory = tempfile.mkdtemp(prefix="chatsvc-accounts-")
    atexit.register(shutil.rmtree, directory, True)
    path = Path(directory) / "chatsvc.db"
    hashed = defaultHasher().hash(PASSWORD.decode())
    connection = sqlite3.connect(str(path), isolation_level=None)
    try:
        migrate(connection)
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO accounts (key, nick, password_hash, created) VALUES (?, ?, ?, ?)",
            [
                (nick_key(nick), nick, hashed, time.time())
                for nick in (NICK_FORMAT.decode() % number for number in range(clients))
            ],
        )
        connection.execute("COMMIT")
    finally:
        connection.close()
    return path


def chatsvcOptions(
    workload: Workload, backlog: int, history: bool = False, accounts: Path | None = None
) -> tuple[list[str], list[str]]:
    """
    The chatroom options for C{workload} (after --listen), and why each limit is raised;
    C{history}: whether the server stores history (in its own directory), as by default;
    C{accounts}: a database with an account for every client (see L{accountsDatabase}).
    """
    connections = workload.clients + 16
    if accounts is not None:
        options = ["--db", str(accounts)]
        reasons = [
            f"--db {accounts}: history stored, and an account for every client, which logs in "
            "with its password"
        ]
    elif history:
        options = []
        reasons = ["history stored, as by default: --db chatsvc.db in the server's directory"]
    else:
        options = ["--db", ":memory:"]
        reasons = ["--db :memory: (no history store): the workload is about fan-out"]
    if backlog > DEFAULT_LIMITS["backlog"]:
        options += ["--backlog", str(backlog)]
        reasons.append(
            f"--backlog {backlog} (default {DEFAULT_LIMITS['backlog']}): "
            f"{workload.clients} clients connect at once"
        )
    if connections > DEFAULT_LIMITS["max-connections"]:
        options += ["--max-connections", str(connections)]
        reasons.append(
            f"--max-connections {connections} (default {DEFAULT_LIMITS['max-connections']}): "
            f"room for all {workload.clients} clients"
        )
    if connections > DEFAULT_LIMITS["max-connections-per-address"]:
        options += ["--max-connections-per-address", str(connections)]
        reasons.append(
            f"--max-connections-per-address {connections} (default "
            f"{DEFAULT_LIMITS['max-connections-per-address']}): every client comes from 127.0.0.1"
        )
    rate = workload.lineRate
    if workload.kind == "closedloop":
        options += ["--flood-rate", "1000000", "--flood-burst", "1000000"]
        reasons.append(
            "--flood-rate 1000000 --flood-burst 1000000 (defaults 5/s, 20): a closed loop sends "
            "as fast as its window allows; the flood limit would cap the peak at its own rate"
        )
        options += ["--max-send-queue", str(1 << 28)]
        reasons.append(
            f"--max-send-queue {1 << 28} (default {DEFAULT_LIMITS['max-send-queue']}): a window "
            f"of up to {RAMP[-1]} lines from each of {workload.senders} senders may wait for one "
            "receiver at once"
        )
    elif rate is not None and 4 * rate > float(DEFAULT_LIMITS["flood-rate"]):
        floodRate = 4 * rate
        options += ["--flood-rate", f"{floodRate:g}"]
        reasons.append(
            f"--flood-rate {floodRate:g} (default {DEFAULT_LIMITS['flood-rate']:g}/s): 4x the "
            f"{rate:g} lines/s each sender sends, so the flood limit never delays a line"
        )
    floodRate, floodBurst = float(DEFAULT_LIMITS["flood-rate"]), float(DEFAULT_LIMITS["flood-burst"])
    for option, value in zip(options, options[1:]):
        if option == "--flood-rate":
            floodRate = float(value)
        elif option == "--flood-burst":
            floodBurst = float(value)
    addressOptions, reason = addressFloodOptions(connections, floodRate, floodBurst)
    options += addressOptions
    reasons.append(reason)
    if workload.kind in ("idle", "joinstorm") and workload.clients > 500:
        options += ["--name-timeout", "600"]
        reasons.append(
            f"--name-timeout 600 (default {DEFAULT_LIMITS['name-timeout']:g} s): with "
            f"{workload.clients} handshakes queued at once, a nickname may wait in the server "
            "longer than the default allows; the storm is to be measured, not cut"
        )
    return options, reasons


def makeServer(
    reactor: IReactor,
    target: str,
    workload: Workload,
    cpu: int | None,
    log: Path | None,
    history: bool = False,
    profile: Path | None = None,
    accounts: Path | None = None,
) -> tuple[ServerProcess, list[str]]:
    """
    The server process for C{target}, and the settings it gets (with the reasons); with
    C{history}, chatsvc stores its rooms' history; with C{profile}, the server runs under
    cProfile, which writes its figures there when the server exits.
    """
    backlog = listenBacklog(workload.clients)
    web = workload.door in ("web", "mixed")
    if target == "relay":
        script = WSRELAY if web else RELAY
        command = [sys.executable, str(script), "--port", "0", "--backlog", str(backlog)]
        reasons = (
            [f"--backlog {backlog} (default 50): {workload.clients} clients connect at once"]
            if backlog > 50 else ["none"]
        )
        listening = re.compile(r"^(\d+)$")
    else:
        options, reasons = chatsvcOptions(workload, backlog, history, accounts)
        listening = LISTENING
        if web:
            # The harness starts chatsvc with --no-web unless it is told where the web door is.
            options += ["--web-listen", WEB_LISTEN]
            reasons.append(
                f"--web-listen {WEB_LISTEN} (the benchmark's default: --no-web): the web door "
                "on a free loopback port; its limits are the line door's, raised alike"
            )
            listening = WEB_LISTENING
        if workload.door == "irc":
            # And with --no-irc unless it is told where the IRC door is. Both servers of an IRC
            # run have it, the line door's room's too, so that they differ only in their clients.
            options += ["--irc-listen", IRC_LISTEN]
            reasons.append(
                f"--irc-listen {IRC_LISTEN} (the benchmark's default: --no-irc): the IRC door "
                "on a free loopback port; its limits (flood, connection caps, send queue, "
                "registration timeout) are the line door's, raised alike"
            )
            listening = IRC_LISTENING
        command = chatroomCommand(
            options, listen="tcp:0:interface=127.0.0.1", twistdOptions=["--reactor=epoll"]
        )
    if profile is not None:
        program = command[1:] if command[0] == sys.executable else command
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), *program]
    server = DoorServer(
        reactor, target, command, cpu, log, listening,
        directoryPrefix=f"fanout-{target}-", troubleKept=MAX_SAMPLES,
    )
    return server, reasons


class DoorServer(ServerProcess):
    """A server under test that also notes the port of each of chatsvc's doors as it listens."""

    def __init__(self, *arguments: Any, **keywords: Any) -> None:
        super().__init__(*arguments, **keywords)
        self.ports: dict[str, int] = {}
        """Each door's port (C{line}, C{web}, C{irc}), from chatsvc's C{server_listening} lines."""

    def lineReceived(self, line: str) -> None:
        """A line of the server's output: a door's port, if it says so; then as ever."""
        if len(self.ports) < 3:
            match = DOOR_LISTENING.search(line)
            if match:
                self.ports.setdefault(match.group(2), int(match.group(1)))
        super().lineReceived(line)


async def stopServer(server: ServerProcess, grace: float) -> str:
    """Stop C{server}: SIGTERM, then SIGKILL after C{grace} seconds; how it ended."""
    if not server.started:
        return "not started"
    status = await server.stop(grace)
    if status is None:
        return f"killed after {grace:g} s"
    if status < 0:
        return f"ended by {signal.Signals(-status).name}"
    return f"exit status {status}"


# The cluster workload


CLUSTER_JOINED = re.compile(r"cluster_joined node='([^']*)'")
"""A node's log line that it has joined its cluster (linked to Redis, its lease and id slot held)."""
CLUSTER_PEER_SEEN = re.compile(r"cluster_peer_seen node='([^']*)' peer='([^']*)'")
"""A node's log line that it has heard from another node of its cluster; the second group names it."""
CLUSTER_EVENT = re.compile(r"\] (cluster_\w+|redis_\w+|history_\w+)\b")
"""The log lines of a node that tell of its cluster and its Redis (kept for the report)."""
EXPECTED_NODE_TROUBLE = re.compile(r"\] redis_not_durable ")
"""
The one warning every node of the benchmark gives, as it should: its Redis runs without an
append-only file (the benchmark's choice: no disk in the measure).
"""
CLUSTER_LEASE = 10.0
"""The nodes' lease (seconds), chatsvc's default: no node may be thought gone during a run."""
CLUSTER_MEMBERS_ON_A_NODE = 50
"""Members per node in the projection of larger clusters with a room that grows with them."""
CLUSTER_PROJECTED = (1, 2, 4, 8, 16)
"""The cluster sizes projected from the measured costs (1 and 2 to compare with the measures)."""
CLUSTER_P99_TARGET_MS = 20.0
"""The two-node cluster's open-loop target: latency p99 at most this."""
CLUSTER_CONFIGS = (("one_node", 1, 0), ("two_nodes", 2, 1))
CLUSTER_LISTENERS = 4
"""
Passive subscribers added to the one-node cluster's events channel, in turns, after its closed
loop: Redis' cost per subscriber at that rate, the one node's own subscriber alone (S=1) and
with these (S=5).
"""
"""The clusters measured: a name, how many nodes, and the Redis database they use."""
EVENT_COUNTERS = (
    ("cpu_seconds", None),
    ("deliveries", "chatsvc_deliveries_total"),
    ("published", "chatsvc_cluster_published_total"),
    ("received", "chatsvc_cluster_received_total"),
    ("messages", "chatsvc_messages_total"),
    ("lag_count", "chatsvc_cluster_lag_seconds_count"),
    ("lag_sum", "chatsvc_cluster_lag_seconds_sum"),
)
"""What a window measures on each node: its CPU, and the deltas of these counters of /metrics."""


class NodeProcess(DoorServer):
    """
    A node of a cluster under test (C{twistd -n chatroom --redis ...}): a L{DoorServer} that
    also watches its log for C{cluster_joined} and for a C{cluster_peer_seen} of each of the
    other nodes of its cluster, and keeps the lines about its cluster and its Redis.
    """

    def __init__(self, *arguments: Any, nodeName: str, peers: set[str], **keywords: Any) -> None:
        """
        @param nodeName: the node's name (C{--node-name}).
        @param peers: the names of the other nodes of its cluster, each to be seen.
        """
        super().__init__(*arguments, expectedTrouble=EXPECTED_NODE_TROUBLE, **keywords)
        self.nodeName = nodeName
        self.waitingFor = set(peers)
        self.joined = False
        self.ready: Deferred[None] = Deferred()
        """Fires once the node has joined its cluster and seen every other node of it."""
        self.events: list[str] = []
        """Its log lines about the cluster and Redis, the first L{MAX_SAMPLES} * 5."""
        self.eventCounts: dict[str, int] = {}
        """How many of each of those lines it logged (C{cluster_joined}: 1, ...)."""

    def lineReceived(self, line: str) -> None:
        """A line of the node's log: its cluster's progress, and as ever."""
        event = CLUSTER_EVENT.search(line)
        if event is not None:
            name = event.group(1)
            self.eventCounts[name] = self.eventCounts.get(name, 0) + 1
            if len(self.events) < MAX_SAMPLES * 5:
                self.events.append(line)
            if CLUSTER_JOINED.search(line):
                self.joined = True
            seen = CLUSTER_PEER_SEEN.search(line)
            if seen is not None:
                self.waitingFor.discard(seen.group(2))
            if self.joined and not self.waitingFor:
                fire(self.ready)
        super().lineReceived(line)

    def _end(self) -> None:
        super()._end()
        if not self.ready.called and not self.stopping:
            tail = "\n    ".join(self.tail)
            self.ready.errback(Aborted(f"node {self.nodeName} exited before joining:\n    {tail}"))


class _MetricsFetch(Protocol):
    """C{GET /metrics} in HTTP/1.0: the whole reply, once the server closes the connection."""

    def __init__(self) -> None:
        self.done: Deferred[bytes] = Deferred()
        self._data: list[bytes] = []

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self._data.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.callback(b"".join(self._data))


class Listener(Protocol):
    """
    A passive subscriber of a cluster's events channel: C{SUBSCRIBE}, then everything Redis
    sends it is read and dropped (counted in bytes), as fast as it comes. It makes Redis write
    each message once more, as a node more would, at none of a node's cost.
    """

    def __init__(self, channel: str) -> None:
        self.channel = channel.encode("utf-8")
        self.subscribed: Deferred[None] = Deferred()
        self.received = 0
        self._head = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(
            b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(self.channel), self.channel)
        )

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if not self.subscribed.called:
            self._head += data
            if b"subscribe" in self._head:
                fire(self.subscribed)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.subscribed.called:
            self.subscribed.errback(Aborted(f"a listener's connection to Redis: {reason.getErrorMessage()}"))


class _OneProtocol(ClientFactory):
    """Connects one protocol (a L{_MetricsFetch}, a L{Listener}); C{failed} if it cannot."""

    noisy = False

    def __init__(self, protocol: Protocol, failed: Deferred[Any]) -> None:
        self.connecting = protocol
        self.failed = failed

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return self.connecting

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        if not self.failed.called:
            self.failed.errback(Aborted(f"cannot connect: {reason.getErrorMessage()}"))


def parseMetrics(text: str) -> dict[str, float]:
    """Prometheus' text format: every sample by its name (with its labels, if any)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            samples[name] = float(value)
        except ValueError:
            continue
    return samples


def commandStats(fields: dict[str, str]) -> dict[str, tuple[int, int]]:
    """C{INFO commandstats}: calls and microseconds of each command (C{publish}, C{zadd}, ...)."""
    stats: dict[str, tuple[int, int]] = {}
    for name, value in fields.items():
        if not name.startswith("cmdstat_"):
            continue
        parts = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
        try:
            stats[name[len("cmdstat_") :]] = (int(parts["calls"]), int(parts["usec"]))
        except (KeyError, ValueError):
            continue
    return stats


@dataclass
class MeterReading:
    """What a L{ClusterMeter} read at one moment."""

    at: float
    nodes: list[dict[str, float]]
    """Per node: its CPU seconds (C{cpu_seconds}, None unknown as nan) and its /metrics."""
    redisCPU: float
    redisOwnCPU: float
    """Redis' own account of its CPU (C{INFO cpu}: user + system, to the microsecond)."""
    commands: dict[str, tuple[int, int]]
    ticks: dict[int, tuple[int, int, int]]
    """Each CPU's ticks busy, stolen and in all (/proc/stat)."""


class ClusterMeter:
    """
    Measures a cluster over a window: each node's CPU (utime + stime of its process, from
    /proc/PID/stat, read as soon as its /metrics answers) and the counters of its /metrics
    (deliveries to its own members, messages published and applied, the lag histogram's sum
    and count), and Redis' own CPU (its /proc/PID/stat) and the calls and time of each command
    (C{INFO commandstats}).
    """

    def __init__(
        self, reactor: IReactor, nodes: list[NodeProcess], redis: RedisProcess, channel: str
    ) -> None:
        """
        @param channel: the cluster's events channel in Redis (C{PREFIX DB:events}), whose
            subscribers L{subscribers} counts.
        """
        self.reactor = reactor
        self.nodes = nodes
        self.redis = redis
        self.channel = channel
        self._redis: RedisClient | None = None

    def _command(self) -> RedisClient:
        if self._redis is None:
            self._redis = self.redis.client()
        return self._redis

    async def metrics(self, node: NodeProcess) -> dict[str, float]:
        """What C{node}'s /metrics says now."""
        fetch = _MetricsFetch()
        self.reactor.connectTCP(
            "127.0.0.1", node.ports["metrics"], _OneProtocol(fetch, fetch.done), timeout=30
        )
        reply = await within(self.reactor, fetch.done, 30, f"{node.nodeName}'s /metrics")
        head, _, body = reply.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
            raise Aborted(f"{node.nodeName}'s /metrics answered {head[:100]!r}")
        return parseMetrics(body.decode("utf-8", "replace"))

    async def _readNode(self, node: NodeProcess) -> dict[str, float]:
        samples = await self.metrics(node)
        cpu = node.cpuSeconds()
        samples["cpu_seconds"] = float("nan") if cpu is None else cpu
        return samples

    async def read(self) -> MeterReading:
        """Every node's CPU and counters (asked at once), then Redis' CPU and command stats."""
        nodes = await defer.gatherResults(
            [defer.ensureDeferred(self._readNode(node)) for node in self.nodes], consumeErrors=True
        )
        redisCPU = self.redis.cpuSeconds()
        connection = self._command()
        own = connection.info("cpu")
        commands = commandStats(connection.info("commandstats"))
        try:
            ownCPU = float(own["used_cpu_user"]) + float(own["used_cpu_sys"])
        except (KeyError, ValueError):
            ownCPU = float("nan")
        return MeterReading(
            time.monotonic(), list(nodes), float("nan") if redisCPU is None else redisCPU,
            ownCPU, commands, readCPUTicks(),
        )

    def window(self, before: MeterReading, after: MeterReading) -> dict[str, Any]:
        """
        What happened between two readings: its seconds, Redis' CPU seconds and the calls and
        microseconds of each command it ran, and per node the deltas of L{EVENT_COUNTERS}.
        """
        nodes = []
        for node, first, last in zip(self.nodes, before.nodes, after.nodes):
            figures: dict[str, Any] = {"name": node.nodeName}
            for name, metric in EVENT_COUNTERS:
                key = metric or name
                figures[name] = round(last.get(key, 0.0) - first.get(key, 0.0), 6)
            nodes.append(figures)
        commands = {
            name: [calls - before.commands.get(name, (0, 0))[0], usec - before.commands.get(name, (0, 0))[1]]
            for name, (calls, usec) in after.commands.items()
            if calls != before.commands.get(name, (0, 0))[0]
        }
        busy = steal = total = 0
        for cpu, (afterBusy, afterSteal, afterTotal) in after.ticks.items():
            beforeBusy, beforeSteal, beforeTotal = before.ticks.get(cpu, (afterBusy, afterSteal, afterTotal))
            busy += afterBusy - beforeBusy
            steal += afterSteal - beforeSteal
            total += afterTotal - beforeTotal
        return {
            "seconds": round(after.at - before.at, 3),
            "machine_ticks": [busy, steal, total],
            "redis_cpu_seconds": round(after.redisCPU - before.redisCPU, 3),
            "redis_own_cpu_seconds": round(after.redisOwnCPU - before.redisOwnCPU, 6),
            "redis_commands": commands,
            "nodes": nodes,
        }

    async def settle(self, members: int, timeout: float) -> None:
        """
        Wait until every node holds C{members} members (its own and its copies of the other
        nodes': C{chatsvc_members}), at most C{timeout}: every join has reached every node.
        """
        deadline = time.monotonic() + timeout
        while True:
            counts = [
                (await self.metrics(node)).get("chatsvc_members", -1.0) for node in self.nodes
            ]
            if all(count == members for count in counts):
                return
            if time.monotonic() > deadline:
                raise Aborted(
                    f"the nodes hold {', '.join(f'{count:g}' for count in counts)} members, "
                    f"not {members} each, after {timeout:g} s"
                )
            await sleep(self.reactor, 0.05)

    async def listen(self, count: int, timeout: float) -> list[Listener]:
        """
        C{count} L{Listener}s more on the cluster's events channel, once Redis counts them all
        among its subscribers.
        """
        base = self.subscribers()
        listeners = [Listener(self.channel) for _ in range(count)]
        for listener in listeners:
            self.reactor.connectTCP(
                "127.0.0.1", self.redis.port, _OneProtocol(listener, listener.subscribed), timeout=30
            )
        for listener in listeners:
            await within(self.reactor, listener.subscribed, timeout, "a listener to subscribe")
        await self.waitSubscribers(base + count, timeout)
        return listeners

    async def unlisten(self, listeners: list[Listener], timeout: float) -> None:
        """Close C{listeners}, and wait until Redis no longer counts them."""
        base = self.subscribers() - len(listeners)
        for listener in listeners:
            if listener.transport is not None:
                listener.transport.loseConnection()
        await self.waitSubscribers(base, timeout)

    async def waitSubscribers(self, count: int, timeout: float) -> None:
        """Wait until the events channel has C{count} subscribers, at most C{timeout}."""
        deadline = time.monotonic() + timeout
        while self.subscribers() != count:
            if time.monotonic() > deadline:
                raise Aborted(f"{self.channel} has {self.subscribers()} subscribers, not {count}")
            await sleep(self.reactor, 0.02)

    def subscribers(self) -> int:
        """How many connections subscribe to the cluster's events channel (C{PUBSUB NUMSUB})."""
        reply = self._command().command("PUBSUB", "NUMSUB", self.channel)
        return int(reply[1]) if isinstance(reply, list) and len(reply) == 2 else -1

    def close(self) -> None:
        """Close its connection to Redis."""
        if self._redis is not None:
            self._redis.close()
            self._redis = None


def windowFigures(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """
    The figures of one or more windows of a cluster (L{ClusterMeter.window}), summed: per
    node and in all, CPU seconds, CPU % of one core, deliveries to its own members and CPU
    microseconds per delivery, messages published and applied, the mean lag of other nodes'
    messages; Redis' CPU seconds, CPU % and CPU microseconds per published message, with the
    calls and microseconds of each command per published message (and, beside the /proc
    figures, Redis' own account of its CPU, C{INFO cpu}, finer than /proc's clock ticks); and
    how busy all the machine's CPUs were, and how much the hypervisor stole (/proc/stat).
    """
    seconds = sum(window["seconds"] for window in windows)
    count = len(windows[0]["nodes"]) if windows else 0
    nodes = []
    for index in range(count):
        summed: dict[str, Any] = {"name": windows[0]["nodes"][index]["name"]}
        for name, _ in EVENT_COUNTERS:
            summed[name] = round(sum(window["nodes"][index][name] for window in windows), 6)
        summed["cpu_percent"] = round(100 * summed["cpu_seconds"] / seconds, 1) if seconds else None
        summed["cpu_us_per_delivery"] = perEvent(summed["cpu_seconds"], summed["deliveries"])
        summed["lag_mean_ms"] = (
            round(1000 * summed["lag_sum"] / summed["lag_count"], 3) if summed["lag_count"] else None
        )
        nodes.append(summed)
    cpu = sum(node["cpu_seconds"] for node in nodes)
    deliveries = sum(node["deliveries"] for node in nodes)
    published = sum(node["published"] for node in nodes)
    redisCPU = sum(window["redis_cpu_seconds"] for window in windows)
    redisOwn = sum(window["redis_own_cpu_seconds"] for window in windows)
    commands: dict[str, list[int]] = {}
    for window in windows:
        for name, (calls, usec) in window["redis_commands"].items():
            total = commands.setdefault(name, [0, 0])
            total[0] += calls
            total[1] += usec
    lagCount = sum(node["lag_count"] for node in nodes)
    busy, steal, total = (
        sum(window.get("machine_ticks", [0, 0, 0])[part] for window in windows) for part in range(3)
    )
    return {
        "seconds": round(seconds, 3),
        "machine_busy_percent": round(100 * busy / total, 1) if total else None,
        "machine_steal_percent": round(100 * steal / total, 1) if total else None,
        "nodes": nodes,
        "node_cpu_seconds": round(cpu, 3),
        "deliveries": int(deliveries),
        "cpu_us_per_delivery": perEvent(cpu, deliveries),
        "cpu_seconds_per_delivery": perEvent(cpu, deliveries, 1.0, 12),
        "published": int(published),
        "redis_cpu_seconds": round(redisCPU, 3),
        "redis_cpu_percent": round(100 * redisCPU / seconds, 1) if seconds else None,
        "redis_cpu_us_per_message": perEvent(redisCPU, published),
        "redis_cpu_seconds_per_message": perEvent(redisCPU, published, 1.0, 12),
        "redis_own_cpu_seconds": round(redisOwn, 6),
        "redis_own_cpu_us_per_message": perEvent(redisOwn, published),
        "redis_commands_per_message": {
            name: {
                "calls": round(calls / published, 3) if published else None,
                "us": round(usec / published, 3) if published else None,
            }
            for name, (calls, usec) in sorted(commands.items())
        },
        "lag_mean_ms": (
            round(1000 * sum(node["lag_sum"] for node in nodes) / lagCount, 3) if lagCount else None
        ),
    }


def perEvent(seconds: float, events: float, unit: float = 1e6, digits: int = 3) -> float | None:
    """C{seconds} of CPU per event, in C{unit}s of a second (microseconds unless told), or None."""
    if not events or seconds != seconds:  # none, or the CPU could not be read (nan)
        return None
    return round(unit * seconds / events, digits)


def clusterOptions(workload: Workload, backlog: int) -> tuple[list[str], list[str]]:
    """
    A node's chatroom options for C{workload} (before its cluster's), and why: the limits
    the load needs raised, as for chatsvc, but no C{--db}: with C{--redis}, history (and
    accounts and moderation) go to Redis, and --db is not used.
    """
    options, reasons = chatsvcOptions(workload, backlog)
    at = options.index("--db")
    del options[at : at + 2]
    reasons[0] = (
        "no --db: with --redis, every room message is stored in Redis' history (a ZADD), "
        "and --db is not used"
    )
    return options, reasons


# The clients


def _unreadable(size: int) -> bytes:
    raise OSError("not connected")


def frameHeader(length: int, opcode: int = 0x1, masked: bool = False) -> bytes:
    """The head of a final WebSocket frame with a payload of C{length} bytes (RFC 6455, 5.2)."""
    mask = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, mask | length)
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, mask | 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, mask | 127, length)


def maskedFrame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client's frame: masked, as RFC 6455 requires, with a fresh key."""
    key = os.urandom(4)
    length = len(payload)
    mask = int.from_bytes((key * (length // 4 + 1))[:length], "big")
    body = (int.from_bytes(payload, "big") ^ mask).to_bytes(length, "big") if length else b""
    return frameHeader(length, opcode, masked=True) + key + body


class WebLayout:
    """
    How a chat message reaches a web client, as one frame of a width known in advance: chatsvc's
    C{said} event (C{{"type":"said","room":"lobby","id":ID,"time":TIME,"nick":NICK,"text":TEXT}}),
    or, from the WebSocket relay, the sender's own C{say} message as it sent it. Every text has
    the same length, the id the same number of digits (milliseconds times 1024: 16 until the
    year 2248) and the time the same width, so every such frame of a run is as wide as the
    others, and what each receiver must get from each sender is known byte for byte but for
    the id and the time, the columns that the server fills in (the I{wildcards}).
    """

    def __init__(self, relay: bool, size: int) -> None:
        self.relay = relay
        self.size = size
        if relay:
            before = SAY_HEAD
            self._nickAt: int | None = None
            wildcards: list[range] = []
        else:
            idWidth = len(str(int(time.time() * 1000) << 10))
            parts = [
                b'{"type":"said","room":"lobby","id":"', bytes(idWidth), b'","time":"', bytes(24),
                b'","nick":"', b"?" * NICK_WIDTH, b'","text":"',
            ]
            before = b"".join(parts)
            starts = [sum(map(len, parts[:index])) for index in range(len(parts))]
            wildcards = [range(starts[1], starts[2]), range(starts[3], starts[4])]
            self._nickAt = starts[5]
        length = len(before) + size + len(TEXT_END)
        header = frameHeader(length)
        self.width = len(header) + length
        """The bytes of one chat frame."""
        self.textAt = len(header) + len(before)
        """Where the chat text begins in a frame."""
        self.senderAt = self.textAt + size - NICK_WIDTH
        """Where the sender's nickname is in a frame: at the end of the text."""
        self.wildcards = tuple(column + len(header) for span in wildcards for column in span)
        """The columns of a frame that the server fills in (zero in what is expected)."""
        self._header = header
        self._before = before

    def head(self, nick: bytes) -> bytes:
        """What comes before the text in a frame of C{nick}'s, the wildcards zero."""
        before = self._before
        if self._nickAt is not None:
            before = before[: self._nickAt] + nick + before[self._nickAt + NICK_WIDTH :]
        return self._header + before


class Phase:
    """Where a run is; receivers judge some lines by it."""

    CONNECTING = "connecting"
    LOADING = "loading"
    STOPPING = "stopping"


class Run:
    """
    What every client of one measurement shares: nicknames, every line each sender sent, each
    receiver's progress through each sender's lines, and the tallies.
    """

    def __init__(
        self,
        reactor: IReactor,
        clients: int,
        senders: int,
        size: int,
        exactLatency: bool,
        door: str = "line",
        layout: WebLayout | None = None,
    ) -> None:
        """
        @param door: how the clients connect: C{line}, C{web} (all with a WebSocket),
            C{mixed} (every second client with a WebSocket, the others with lines) or C{irc}
            (all by IRC).
        @param layout: how chat messages reach the web clients, if there are any.
        """
        self.reactor = reactor
        self.readers = Readers(reactor)
        self.count = clients
        self.senderCount = senders
        self.nicks = [NICK_FORMAT % index for index in range(clients)]
        self.nickSet = frozenset(self.nicks)
        """Every client's nickname: the joins (and leaves) that count."""
        self.summaryCounts: dict[bytes, tuple[int, int]] = {}
        """
        The names of each summary of joins seen so far, with how many are clients' and how many
        not: the server sends the same summary lines to every member who was there before them,
        so most lines are split and checked once, not once per receiver.
        """
        irc = door == "irc"
        if irc:
            # A delivered chat line: ":<nick>!chat@chatsvc PRIVMSG #lobby :<text>\r\n". Its
            # text is a line's; its sender is in its source, as a line's is in "<nick>: ".
            self.prefixes = [
                b":" + self.nicks[sender] + IRC_USER_HOST + b" " + IRC_SAY_HEAD
                for sender in range(senders)
            ]
            self.prefixWidth = IRC_PREFIX_WIDTH
            self.joinSuffix = IRC_JOIN_SUFFIX
            self.joinWidth = IRC_JOIN_WIDTH
            nickAt = 1
            # The columns a counting receiver checks (see BenchClient._counted).
            self.countColumns: tuple[tuple[int, bytes], ...] = (
                (0, b":"), (1, b"n"), (IRC_PREFIX_WIDTH - 1, b":"),
            )
        else:
            self.prefixes = [self.nicks[sender] + b": " for sender in range(senders)]
            self.prefixWidth = PREFIX_WIDTH
            self.joinSuffix = JOIN_SUFFIX
            self.joinWidth = JOIN_WIDTH
            nickAt = 0
            self.countColumns = ((NICK_WIDTH, b":"), (0, b"n"))
        self.prefixOf = PREFIX if not irc else itemgetter(slice(0, IRC_PREFIX_WIDTH))
        """A delivered chat line's prefix, before the text: what groups lines by sender."""
        self.senderByPrefix = {prefix: sender for sender, prefix in enumerate(self.prefixes)}
        self.padding = b"x" * (size - HEADER_WIDTH)
        self.width = self.prefixWidth + size + 2
        """
        The length of every delivered chat line: C{<nick>: <text>\\r\\n}, or on IRC
        C{:<nick>!chat@chatsvc PRIVMSG #lobby :<text>\\r\\n}.
        """
        # The digit columns of a nickname that tell the senders apart (the last ones).
        digits = len(str(max(0, senders - 1)))
        self.senderColumns = tuple(range(nickAt + NICK_WIDTH - digits, nickAt + NICK_WIDTH))
        # Per sender: how many lines it sent, all of them as receivers get them (line q at
        # (q - 1) * width), and when each was sent (microseconds, at q - 1); per sender and
        # receiver, the last sequence number received in order (NEVER for the sender itself),
        # and per sender the sum of those over its receivers.
        self.sentCounts = [0] * senders
        self.streams = [bytearray() for _ in range(senders)]
        # Line 0 of each sender is a token for "nothing yet", as what precedes its first line.
        self.sentLines: list[list[bytes]] = [[b"start %d" % sender] for sender in range(senders)]
        # Open loop only: for every line sent, the line of its sender before it, its send time,
        # and whose and which it is (see BenchClient._inOrder).
        self.predecessor: dict[bytes, bytes] = {}
        self.stampOf: dict[bytes, int] = {}
        self.lineInfo: dict[bytes, tuple[int, int]] = {
            lines[0]: (sender, 0) for sender, lines in enumerate(self.sentLines)
        }
        self.sendTimes: list[array[int]] = [array("q") for _ in range(senders)]
        self.got: list[array[int]] = [array("q", [0]) * clients for _ in range(senders)]
        for sender in range(senders):
            self.got[sender][sender] = NEVER
        self.progress = [0] * senders
        self.exactLatency = exactLatency
        self.checks = [True] * clients
        """
        Open loop: which clients check every line they get, in order, with its latency (all,
        unless L{checkOnly} says otherwise); the others only count their chat lines, so that
        a generator with hundreds of receivers can keep up with a fast server.
        """
        self.latencies: array[int] = array("q")
        """Microseconds from send to receipt: every delivery's, or a sample (closed loop)."""
        self.sendLags: array[int] = array("q")
        """Microseconds each open-loop line left after its schedule."""
        self.clients: list[BenchClient] = []
        self.linePorts: list[int] | None = None
        """
        The line door's port for each client, when they are not all on one server (the nodes
        of a cluster); None: the server's one port.
        """
        self.phase = Phase.CONNECTING
        self.ignoring = False

        self.delivered = 0
        self.duplicated = 0
        self.reordered = 0
        self.errorCount = 0
        self.errors: list[str] = []
        self.noticeCount = 0
        self.notices: list[str] = []
        self.floodNotices = 0
        self.leaves = 0
        self.foreignLines = 0
        self.firstDeliveryAt: int | None = None
        self.lastDeliveryAt: int | None = None
        self.expected: int | None = None
        self.drained: Deferred[None] = Deferred()

        self.firstConnectAt = 0
        self.handshaked = 0
        self.lastHandshakeAt = 0
        self.allHandshaked: Deferred[None] = Deferred()
        self.joinsSeen = 0
        self.joinsExpected = clients * (clients - 1) // 2
        self.lastJoinAt: int | None = None
        self.joinsCompleteAt: int | None = None

        self.window = 0
        self.threshold = 1
        self.sending = False
        self.pumpScheduled = False
        self.sendersDone = 0
        self.sendingDone: Deferred[None] = Deferred()

        self.door = door
        self.isWeb = [door == "web" or (door == "mixed" and index % 2 == 1) for index in range(clients)]
        """Which clients connect with a WebSocket (the others with lines)."""
        self.layout = layout
        self.crowdCounts: dict[bytes, tuple[int, int, int]] = {}
        """The web door's C{crowd} events seen so far: joins of clients, others', leaves."""
        if irc:
            self.message = self._ircMessage  # type: ignore[method-assign]
        elif door != "line":
            assert layout is not None
            self.lineReceivers = not all(self.isWeb)
            self.webReceivers = any(self.isWeb)
            # The text of a web run: "%09d %014d " (sequence, time), padding, the nickname.
            self.webPadding = b"x" * (size - HEADER_WIDTH - NICK_WIDTH - 1) + b" "
            self.senderByNick = {self.nicks[sender]: sender for sender in range(senders)}
            # Per sender: every frame a web receiver is to get from it, as the line streams.
            self.webStreams = [bytearray() for _ in range(senders)]
            self.webHeads = [layout.head(self.nicks[sender]) for sender in range(senders)]
            self._framers: dict[int, tuple[int, bytes, int]] = {}
            self.message = self._webMessage  # type: ignore[method-assign]

    # Tallies

    def checkOnly(self, count: int) -> None:
        """
        Let only C{count} clients check every line: the senders first, then others spread
        evenly over the rest of the room in the order they joined. A server writes to its
        members in turn, and those that joined first may well come first: latencies of the
        first C{count} alone would leave out the later places in every round of writes.
        """
        senders = min(count, self.senderCount)
        chosen = set(range(senders))
        others = self.count - self.senderCount
        extra = min(count - senders, others)
        for place in range(extra):
            chosen.add(self.senderCount + place * others // extra)
        self.checks = [index in chosen for index in range(self.count)]

    def error(self, nick: bytes, message: str) -> None:
        """Count an error seen by client C{nick}; the first ones are kept word for word."""
        self.errorCount += 1
        if len(self.errors) < MAX_SAMPLES:
            self.errors.append(f"{nick.decode('ascii', 'replace')}: {message}")

    def notice(self, line: bytes) -> None:
        """Count a notice the benchmark has no use for (a topic, say)."""
        self.noticeCount += 1
        if len(self.notices) < MAX_SAMPLES:
            self.notices.append(line[:200].decode("utf-8", "replace"))

    def fail(self, reason: str) -> None:
        """A client could not join: the connect phase is over."""
        if not self.allHandshaked.called:
            self.allHandshaked.errback(Aborted(reason))

    def handshakeDone(self, now: int) -> None:
        """One more client is in."""
        self.handshaked += 1
        self.lastHandshakeAt = now
        if self.handshaked == self.count:
            fire(self.allHandshaked)
            self._checkJoins(now)

    def joinsSeenAdd(self, count: int, now: int) -> None:
        """C{count} more join notices arrived."""
        self.joinsSeen += count
        self.lastJoinAt = now
        self._checkJoins(now)

    def _checkJoins(self, now: int) -> None:
        if (
            self.joinsCompleteAt is None
            and self.handshaked == self.count
            and self.joinsSeen >= self.joinsExpected
        ):
            self.joinsCompleteAt = now

    def deliveries(self, count: int, now: int) -> None:
        """C{count} more chat lines arrived where they should."""
        self.delivered += count
        if self.firstDeliveryAt is None:
            self.firstDeliveryAt = now
        self.lastDeliveryAt = now
        if self.sending and not self.pumpScheduled:
            self.pumpScheduled = True
            self.reactor.callLater(0, self.pump)
        if self.expected is not None and self.delivered >= self.expected:
            fire(self.drained)

    def recordLatencies(self, sender: int, first: int, stop: int, now: int) -> None:
        """The latency of lines C{first} to C{stop - 1} of C{sender}, all received at C{now}."""
        self.latencies.extend(
            map(sub, repeat(now, stop - first), self.sendTimes[sender][first - 1 : stop - 1])
        )

    # Sending

    def message(self, sender: int, now: int) -> bytes:
        """The next line of C{sender}, sent at C{now}, as written (remembered as delivered)."""
        sequence = self.sentCounts[sender] + 1
        self.sentCounts[sender] = sequence
        text = b"%09d %014d " % (sequence, now) + self.padding
        line = self.prefixes[sender] + text + b"\r"
        lines = self.sentLines[sender]
        if self.exactLatency:
            self.predecessor[line] = lines[-1]
            self.stampOf[line] = now
            self.lineInfo[line] = (sender, sequence)
        lines.append(line)
        self.streams[sender] += line + b"\n"
        self.sendTimes[sender].append(now)
        return text + b"\n"

    def _ircMessage(self, sender: int, now: int) -> bytes:
        """
        L{message}, for a run of IRC clients: the same text, remembered as its receivers get it
        (with its sender's source), and written as a C{PRIVMSG} to C{#lobby}.
        """
        # The line clients' message (self.message is this method for an IRC run).
        return IRC_SAY_HEAD + Run.message(self, sender, now)[:-1] + b"\r\n"

    def _webMessage(self, sender: int, now: int) -> bytes:
        """
        L{message}, for a run with web clients: the text ends with the sender's nickname, and
        what each kind of receiver is to get is remembered. What a web client writes is its
        C{say} message in a masked frame.
        """
        sequence = self.sentCounts[sender] + 1
        self.sentCounts[sender] = sequence
        nick = self.nicks[sender]
        text = b"%09d %014d " % (sequence, now) + self.webPadding + nick
        if self.lineReceivers:
            line = self.prefixes[sender] + text + b"\r"
            lines = self.sentLines[sender]
            if self.exactLatency:
                self.predecessor[line] = lines[-1]
                self.stampOf[line] = now
                self.lineInfo[line] = (sender, sequence)
            lines.append(line)
            self.streams[sender] += line + b"\n"
        if self.webReceivers:
            self.webStreams[sender] += self.webHeads[sender] + text + TEXT_END
        self.sendTimes[sender].append(now)
        if not self.isWeb[sender]:
            return text + b"\n"
        payload = SAY_HEAD + text + TEXT_END
        length = len(payload)
        framer = self._framers.get(sender)
        if framer is None or framer[0] != length:
            # One masking key per connection, so that its mask is made once (the server
            # unmasks every frame all the same).
            key = os.urandom(4)
            mask = int.from_bytes((key * (length // 4 + 1))[:length], "big")
            framer = self._framers[sender] = (length, frameHeader(length, masked=True) + key, mask)
        _, head, mask = framer
        return head + (int.from_bytes(payload, "big") ^ mask).to_bytes(length, "big")

    def webText(self, sender: int, sequence: int) -> bytes | None:
        """The text of message C{sequence} of C{sender} in a web run, if it was sent."""
        if not 0 < sequence <= self.sentCounts[sender]:
            return None
        layout = cast(WebLayout, self.layout)
        start = (sequence - 1) * layout.width + layout.textAt
        return bytes(self.webStreams[sender][start : start + layout.size])

    def sentLine(self, sender: int, sequence: int) -> bytes | None:
        """Line C{sequence} of C{sender} as receivers get it (without C{\\n}), if it was sent."""
        if not 0 < sequence <= self.sentCounts[sender]:
            return None
        return self.sentLines[sender][sequence]

    def sent(self) -> int:
        """Lines sent so far by all senders."""
        return sum(self.sentCounts)

    def pump(self) -> None:
        """Closed loop: each sender whose window is at least half free fills it again."""
        self.pumpScheduled = False
        if not self.sending:
            return
        now = monotonicUs()
        window = self.window
        threshold = self.threshold
        message = self.message
        receivers = self.count - 1
        progress = self.progress
        sentCounts = self.sentCounts
        for sender in range(self.senderCount):
            # Its oldest line not yet everywhere: at most the average progress of its receivers
            # (a cheap test first), exactly their least progress.
            least = sentCounts[sender] - window + threshold
            if progress[sender] < least * receivers:
                continue
            credit = min(self.got[sender]) + window - sentCounts[sender]
            if credit >= threshold:
                client = self.clients[sender]
                if client.transport is not None and not client.closed:
                    client.transport.write(
                        b"".join([message(sender, now) for _ in range(credit)])
                    )

    def senderDone(self) -> None:
        """One more open-loop sender has sent all it will."""
        self.sendersDone += 1
        if self.sendersDone == self.senderCount:
            fire(self.sendingDone)

    def expect(self) -> None:
        """Sending is over: the deliveries to wait for are now known."""
        self.expected = self.sent() * (self.count - 1)
        if self.delivered >= self.expected:
            fire(self.drained)

    def stop(self) -> None:
        """Stop sending and checking, and cut every connection."""
        self.ignoring = True
        self.sending = False
        self.phase = Phase.STOPPING
        for client in self.clients:
            client.abort()
        self.readers.close()


@implementer(IReadDescriptor)
class Readers:
    """
    Reads every member's connection from an epoll object of its own, which the reactor watches
    as one descriptor: with hundreds of connections each bringing a line or two per read, the
    reactor's own dispatch (per descriptor, with its logging context) would cost the generator
    more than checking the lines does. Joining (and writing) stay with the reactor.

    Receivers that only count their lines (see C{Run.checks}) are read less often: every
    L{COUNTING_INTERVAL} seconds, from a second epoll object, all that has come since in one
    read each. Their latency is not measured, and reading each of 400 of them after every
    round of the server's writes would take most of the generator's CPU, delaying the reads
    of the receivers whose latency is measured: a delay the latency would charge to the
    server. The kernel holds what waits for them meanwhile (a few kilobytes each).
    """

    RECEIVE = 65536
    COUNTING_INTERVAL = 0.05

    def __init__(self, reactor: IReactor) -> None:
        self._reactor = reactor
        self._epoll = select.epoll()
        self._counting = select.epoll()
        self._countingReads: LoopingCall | None = None
        self._clients: dict[int, BenchClient] = {}
        self._watched = False

    def fileno(self) -> int:
        """The epoll object's descriptor: readable when a member's connection is."""
        return self._epoll.fileno()

    def logPrefix(self) -> str:
        """How the reactor names this in its log."""
        return "benchmark-readers"

    def add(self, client: BenchClient) -> None:
        """Read C{client}'s connection here from now on."""
        transport = cast(Any, client.transport)
        transport.stopReading()
        handle = transport.getHandle()
        fd = handle.fileno()
        client.receive = handle.recv
        self._clients[fd] = client
        client.readerFd = fd
        if client.run.checks[client.index]:
            self._epoll.register(fd, select.EPOLLIN)
            if not self._watched:
                self._watched = True
                self._reactor.addReader(self)
        else:
            self._counting.register(fd, select.EPOLLIN)
            if self._countingReads is None:
                self._countingReads = LoopingCall(self._read, self._counting)
                self._countingReads.clock = self._reactor
                self._countingReads.start(self.COUNTING_INTERVAL, now=False)

    def remove(self, client: BenchClient) -> None:
        """Stop reading C{client}'s connection (before it is closed)."""
        fd = client.readerFd
        if fd is not None and self._clients.get(fd) is client:
            del self._clients[fd]
            for epoll in (self._epoll, self._counting):
                try:
                    epoll.unregister(fd)
                except (OSError, ValueError):  # already closed, or not in this one
                    pass
        client.readerFd = None

    def doRead(self) -> None:
        """One read from each checking connection that has something."""
        self._read(self._epoll)

    def _read(self, epoll: select.epoll) -> None:
        """One read from each connection in C{epoll} that has something (at most 1023)."""
        clients = self._clients
        size = self.RECEIVE
        for fd, _ in epoll.poll(0):
            client = clients.get(fd)
            if client is None:
                continue
            try:
                data = client.receive(size)
            except BlockingIOError:
                continue
            except OSError as error:
                client.readFailed(str(error))
                continue
            if data:
                client.dataReceived(data)
            else:
                client.readFailed("the server closed the connection")

    def connectionLost(self, reason: Failure) -> None:
        """Not a connection: nothing to do."""

    def close(self) -> None:
        """Stop watching; the connections themselves are closed by their transports."""
        if self._watched:
            self._reactor.removeReader(self)
            self._watched = False
        if self._countingReads is not None:
            self._countingReads.stop()
            self._countingReads = None
        self._clients.clear()
        self._epoll.close()
        self._counting.close()


class BenchClient(Protocol):
    """
    One client: joins with its nickname, sends numbered, timestamped lines when told to, and
    checks every line it receives, chat lines in bulk (see the module's docstring).
    """

    def __init__(self, run: Run, index: int) -> None:
        self.run = run
        self.index = index
        self.nick = run.nicks[index]
        self.named = False
        self.member = False
        self.closed = False
        self.accepted: Deferred[None] = Deferred()
        """Fires when the server asked for a name (or the connection failed): it accepted."""
        self.joins = 0
        self.position: int | None = None
        """This client's place in the room when it arrived, from the server's member list."""
        self.missing: dict[int, set[int]] = {}
        self._buffer = b""
        self._aborted = False
        self._schedule = Schedule(run.reactor, self._send, run.senderDone)
        self.readerFd: int | None = None
        self.receive: Callable[[int], bytes] = _unreadable
        self.frontier: set[bytes] | None = None
        """Open loop: the last line received from each sender (see L{_inOrder})."""
        self.progressStale = False
        """Whether L{frontier} is ahead of this receiver's entries in C{Run.got}."""
        self.joinSuffix: bytes | None = run.joinSuffix
        """How a join notice ends, for reads of nothing but them; None: not counted so (yet)."""

    # Connection

    def connectionMade(self) -> None:
        """No Nagle: a chat line should go at once."""
        cast(ITCPTransport, self.transport).setTcpNoDelay(True)

    def connectFailed(self, failure: Failure) -> None:
        """The connection could not be made."""
        self.closed = True
        fire(self.accepted)
        self.run.fail(f"{self.nick.decode()} could not connect: {failure.getErrorMessage()}")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Expected only when the benchmark cuts the connection."""
        self.closed = True
        self._schedule.stop()
        fire(self.accepted)
        run = self.run
        if not self._aborted and not run.ignoring:
            state = "member" if self.member else "joining"
            run.error(self.nick, f"connection closed while {state}: {reason.getErrorMessage()}")
            if not self.member:
                run.fail(f"{self.nick.decode()} lost its connection before joining")

    def readFailed(self, reason: str) -> None:
        """The connection ended (or failed) under L{Readers}: close it, as lost."""
        self.run.readers.remove(self)
        if not self.closed and self.transport is not None:
            if not self.run.ignoring:
                self.run.error(self.nick, f"connection lost while a member: {reason}")
            self._aborted = True
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def abort(self) -> None:
        """Cut the connection now."""
        self._schedule.stop()
        self.run.readers.remove(self)
        if not self.closed and self.transport is not None:
            self._aborted = True
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # Receiving

    def dataReceived(self, data: bytes) -> None:
        """
        Check every complete line. Chat lines are compared a group at a time with what their
        sender sent; a read of nothing but join notices is only counted.
        """
        run = self.run
        if run.ignoring:
            return
        if self._buffer:
            data = self._buffer + data
        end = data.rfind(b"\n") + 1
        if end != len(data):
            self._buffer = data[end:]
            if len(self._buffer) > MAX_BUFFER:
                run.error(self.nick, f"a line longer than {MAX_BUFFER} bytes")
                self._buffer = b""
            if not end:
                return
            data = data[:end]
        else:
            self._buffer = b""
        now = monotonicUs()
        if not self.member:
            data = self._handshake(data, now)
            if not data:
                return
        joinSuffix = self.joinSuffix
        if joinSuffix is not None and data.endswith(joinSuffix):
            count = linesOfWidth(data, run.joinWidth)
            if count and data.count(joinSuffix) == count:
                # Nothing but join notices, each of a test member's nickname's width.
                self.joins += count
                run.joinsSeenAdd(count, now)
                return
        if not run.checks[self.index]:
            delivered = self._counted(data)
        elif run.exactLatency:
            delivered = self._inOrder(data, now)
        else:
            delivered = self._checked(data, now)
        if delivered:
            run.deliveries(delivered, now)

    def _counted(self, data: bytes) -> int:
        """
        A receiver that counts its chat lines rather than checking them (see
        C{Run.checks}): lines of a chat line's width from a sender count; anything else
        is looked at as ever. Its losses still show in the total delivered.
        """
        run = self.run
        width = run.width
        count = linesOfWidth(data, width)
        if count and all(
            data[column::width].count(character) == count
            for column, character in run.countColumns
        ):
            # Nothing but lines of a chat line's width, each "n<digits>: ..." (on IRC,
            # ":n<digits>!... :...").
            return count
        count = 0
        prefixOf = run.prefixOf
        for line in data.split(b"\n")[:-1]:
            if len(line) + 1 == width and prefixOf(line) in run.senderByPrefix:
                count += 1
            else:
                self._otherLine(line, monotonicUs())
        return count

    def _inOrder(self, data: bytes, now: int) -> int:
        """
        Open loop, where a read brings a line or two from each of many senders. Each line sent
        has a known predecessor (the line its sender sent before it, or a start token), and this
        receiver keeps the last line it got from each sender: its frontier. A line is the next
        one of its sender exactly when its predecessor is in the frontier, where it then takes
        its predecessor's place. A read of a few lines is checked so, line by line; a larger one
        all at once, with set operations: it is in order, with nothing lost and nothing twice,
        when its lines are distinct and their predecessors are distinct and all in the frontier
        (a read with two lines of one sender fails this and is checked line by line). Anything
        else (a line out of order, a notice) is checked the usual way from there on. The
        deliveries to count.
        """
        run = self.run
        lines = data.split(b"\n")
        lines.pop()
        predecessor = run.predecessor
        frontier = self._frontier() if self.frontier is None else self.frontier
        count = len(lines)
        if count >= 8:
            previous = list(map(predecessor.get, lines))
            if None not in previous:
                arrived = set(lines)
                before = set(cast(list[bytes], previous))
                if len(arrived) == count and len(before) == count and before <= frontier:
                    frontier -= before
                    frontier |= arrived
                    self.progressStale = True
                    run.latencies.extend(
                        map(sub, repeat(now, count), map(run.stampOf.__getitem__, lines))
                    )
                    return count
        stamps = run.stampOf
        latencies = run.latencies
        for done, line in enumerate(lines):
            last = predecessor.get(line)
            if last is None or last not in frontier:
                self._syncProgress()
                self.frontier = None
                rest = b"\n".join(lines[done:]) + b"\n"
                return done + self._checked(rest, now)
            frontier.remove(last)
            frontier.add(line)
            self.progressStale = True
            latencies.append(now - stamps[line])
        return count

    def _frontier(self) -> set[bytes]:
        """The last line received from each other sender, from its progress if need be."""
        if self.frontier is None:
            run = self.run
            index = self.index
            self.frontier = {
                run.sentLines[sender][run.got[sender][index]]
                for sender in range(run.senderCount)
                if sender != index
            }
        return self.frontier

    def _syncProgress(self) -> None:
        """Bring this receiver's progress (C{Run.got}) up to its frontier."""
        if self.progressStale and self.frontier is not None:
            run = self.run
            for line in self.frontier:
                sender, sequence = run.lineInfo[line]
                run.got[sender][self.index] = sequence
        self.progressStale = False

    def _checked(self, data: bytes, now: int) -> int:
        """Complete lines, checked run by run (or line by line); the deliveries to count."""
        width = self.run.width
        # Every line of a chat line's width: chat lines, presumably (every run of them is
        # compared with what was sent, so a line of another kind cannot pass unnoticed).
        lines = linesOfWidth(data, width)
        if not lines:
            # Not only chat lines: one by one, or a group of one sender's at a time.
            return self._lines(data, now)
        return self._chat(data, lines, now)

    def _chat(self, data: bytes, lines: int, now: int) -> int:
        """
        A read of nothing but lines of the chat line's width. Runs of lines with the same
        sender are found at once (the columns of the nicknames' digits, compared with the same
        columns a line later, as big integers); each run is compared with the next lines its
        sender sent, as bytes. A run that does not match is judged line by line.
        """
        run = self.run
        width = run.width
        if lines > 1:
            different = 0
            for column in run.senderColumns:
                digits = data[column::width]
                different |= int.from_bytes(digits[1:], "little") ^ int.from_bytes(
                    digits[:-1], "little"
                )
            # "1" at i: line i + 1 is from another sender than line i.
            changes = different.to_bytes(lines - 1, "little").translate(CHANGES)
            if 2 * changes.count(b"1") >= lines:
                # Runs of a line or two (an open loop, or a window of one): line by line is
                # cheaper than run by run.
                return self._singles(data, now)
        else:
            changes = b""
        senderByPrefix = run.senderByPrefix
        prefixWidth = run.prefixWidth
        streams = run.streams
        progress = run.got
        totals = run.progress
        exact = run.exactLatency
        sample = -1  # without exact latencies, one per read is kept: its first line's
        index = self.index
        delivered = 0
        start = 0
        while start < lines:
            last = changes.find(b"1", start)
            if last < 0:
                last = lines - 1
            count = last + 1 - start
            begin = start * width
            end = begin + count * width
            start = last + 1
            sender = senderByPrefix.get(data[begin : begin + prefixWidth])
            if sender is None:
                delivered += self._lines(data[begin:end], now)
                continue
            got = progress[sender]
            first = got[index] + 1
            offset = (first - 1) * width
            if data[begin:end] != streams[sender][offset : offset + count * width]:
                delivered += self._lines(data[begin:end], now)
                continue
            got[index] = first + count - 1
            totals[sender] += count
            delivered += count
            if exact:
                run.recordLatencies(sender, first, first + count, now)
            elif sample < 0:
                sample = now - run.sendTimes[sender][first - 1]
        if sample >= 0:
            run.latencies.append(sample)
        return delivered

    def _singles(self, data: bytes, now: int) -> int:
        """
        Chat lines from senders that change at almost every line: each is compared with the
        line its sender sent next, and timed, inline.
        """
        run = self.run
        senderByPrefix = run.senderByPrefix
        prefixWidth = run.prefixWidth
        sentLines = run.sentLines
        sendTimes = run.sendTimes
        progress = run.got
        totals = run.progress
        index = self.index
        latencies = run.latencies
        exact = run.exactLatency
        delivered = 0
        lines = data.split(b"\n")
        lines.pop()
        for line in lines:
            sender = senderByPrefix.get(line[:prefixWidth])
            if sender is None:
                self._otherLine(line, now)
                continue
            got = progress[sender]
            sequence = got[index] + 1
            try:
                expected = sentLines[sender][sequence]
            except IndexError:
                expected = b""
            if line != expected:
                delivered += self._chatLines(sender, [line], now)
                continue
            got[index] = sequence
            totals[sender] += 1
            delivered += 1
            if exact or delivered == 1:
                latencies.append(now - sendTimes[sender][sequence - 1])
        return delivered

    def _lines(self, data: bytes, now: int) -> int:
        """
        Complete lines of any kind: consecutive chat lines of one sender are compared with what
        it sent as a group, anything else is judged line by line. The deliveries to count.
        """
        run = self.run
        senderByPrefix = run.senderByPrefix
        streams = run.streams
        progress = run.got
        width = run.width
        index = self.index
        lines = data.split(b"\n")
        lines.pop()
        delivered = 0
        for prefix, group in groupby(lines, run.prefixOf):
            sender = senderByPrefix.get(prefix)
            batch = list(group)
            if sender is None:
                for line in batch:
                    self._otherLine(line, now)
                continue
            got = progress[sender]
            first = got[index] + 1
            offset = (first - 1) * width
            expected = streams[sender][offset : offset + len(batch) * width]
            if b"\n".join(batch) + b"\n" != expected:
                delivered += self._chatLines(sender, batch, now)
                continue
            got[index] = first + len(batch) - 1
            run.progress[sender] += len(batch)
            delivered += len(batch)
            if run.exactLatency:
                run.recordLatencies(sender, first, first + len(batch), now)
            else:
                run.latencies.append(now - run.sendTimes[sender][first - 1])
        return delivered

    def _handshake(self, data: bytes, now: int) -> bytes:
        # GET_NAME, then our nickname, then "<nick> connected to server!"; what follows is the
        # member's first lines (a member list, joins), returned for the usual checks.
        start = 0
        while not self.member:
            end = data.find(b"\n", start)
            if end < 0:
                return b""
            line = data[start:end].rstrip(b"\r")
            start = end + 1
            if not self.named:
                if line != b"GET_NAME":
                    self._refused(line)
                    return b""
                self.named = True
                assert self.transport is not None
                self.transport.write(self.nick + b"\n")
                fire(self.accepted)
            elif line == b"GET_PASSWORD":
                assert self.transport is not None
                self.transport.write(PASSWORD + b"\n")
            elif line == self.nick + b" connected to server!":
                self.member = True
                self.run.handshakeDone(now)
                self.run.readers.add(self)
            else:
                self._refused(line)
                return b""
        return data[start:]

    def _refused(self, line: bytes) -> None:
        text = line[:200].decode("utf-8", "replace")
        self.run.error(self.nick, f"unexpected line while joining: {text!r}")
        fire(self.accepted)
        self.run.fail(f"{self.nick.decode()} could not join: {text!r}")

    def _chatLines(self, sender: int, batch: list[bytes], now: int) -> int:
        """
        Lines of C{sender} that are not simply the next ones expected: each is judged alone (a
        jump ahead leaves the skipped ones missing, a missing one arriving late is reordered, one
        seen before is duplicated). The number of deliveries to count.
        """
        run = self.run
        got = run.got[sender]
        textAt = run.prefixWidth
        counted = 0
        for line in batch:
            if sender == self.index:
                run.error(self.nick, f"its own line echoed back: {line[:40]!r}")
                continue
            try:
                sequence = int(line[textAt : textAt + 9])
            except ValueError:
                sequence = 0
            if line != run.sentLine(sender, sequence):
                run.error(self.nick, f"a chat line that was never sent: {line[:60]!r}")
                continue
            last = got[self.index]
            if sequence > last:
                if sequence > last + 1:
                    self.missing.setdefault(sender, set()).update(range(last + 1, sequence))
                got[self.index] = sequence
                run.progress[sender] += sequence - last
            else:
                gaps = self.missing.get(sender)
                if gaps is not None and sequence in gaps:
                    gaps.discard(sequence)
                    run.reordered += 1
                else:
                    run.duplicated += 1
                    continue
            counted += 1
            run.latencies.append(now - run.sendTimes[sender][sequence - 1])
        return counted

    def _otherLine(self, line: bytes, now: int) -> None:
        """
        Everything but test members' chat: joins, notices, leaves. A join comes alone
        (C{<nick> joined!}) or in a summary (C{*** Joined: <nick>, <nick>, ...}); each nickname
        of a client counts as one join notice seen either way. A leave, likewise.
        """
        run = self.run
        if line[-1:] == b"\r":
            line = line[:-1]
        if line.endswith(b" joined!"):
            if line[:-8] in run.nickSet:
                self.joins += 1
                run.joinsSeenAdd(1, now)
            else:
                run.foreignLines += 1
        elif line.startswith(b"*** "):
            if line.startswith(JOINED_SUMMARY):
                self._joinedSummary(line[len(JOINED_SUMMARY) :], now)
            elif line.startswith(LEFT_SUMMARY):
                self._left(line.count(SUMMARY_SEPARATOR) + 1, line)
            elif line.startswith(b"*** Members ("):
                # The count is this client's place in the room; a crowded room's list gives
                # only the count ("*** Members (N): too many to list here; ...").
                try:
                    self.position = int(line[13 : line.index(b")")])
                except ValueError:
                    run.error(self.nick, f"a member list without a count: {line[:60]!r}")
            elif line.startswith(MEMBERS_CONTINUED) or line.startswith(WELCOME):
                pass
            elif line == FLOOD_NOTICE:
                run.floodNotices += 1
            else:
                run.notice(line)
        elif LEFT.fullmatch(line):
            self._left(1, line)
        else:
            run.error(self.nick, f"unexpected line {line[:100]!r}")

    def _joinedSummary(self, names: bytes, now: int) -> None:
        """
        The nicknames of a summary of joins (C{names}, the line after C{*** Joined: }): each
        of a client counts as a join notice seen. A storm brings millions of them, in lines of
        up to 50 that thousands of clients receive alike, so each distinct line is split once
        and checked against every client's nickname at once, and remembered.
        """
        run = self.run
        counted = run.summaryCounts.get(names)
        if counted is None:
            joined = names.split(SUMMARY_SEPARATOR)
            if run.nickSet.issuperset(joined):
                count = len(joined)
            else:
                count = sum(map(run.nickSet.__contains__, joined))
            counted = run.summaryCounts[names] = (count, len(joined) - count)
        count, foreign = counted
        if foreign:
            run.foreignLines += foreign
        if count:
            self.joins += count
            run.joinsSeenAdd(count, now)

    def _left(self, count: int, line: bytes) -> None:
        """C{count} members left, told by C{line}: an error while the load runs."""
        run = self.run
        run.leaves += count
        if run.phase == Phase.LOADING:
            run.error(self.nick, f"a member left during the load: {line[:60]!r}")

    # Sending, open loop

    def startSending(self, first: float, period: float, end: float) -> None:
        """Send one line every C{period} seconds from monotonic time C{first} until C{end}."""
        self._schedule.start(first, period, end)

    def _send(self, due: float) -> None:
        # The line is stamped just before it goes to the kernel. Through Twisted's write() it
        # would wait in the transport's buffer until the reactor's next turn, which for a
        # busy generator comes only after it has read every member's connection: several
        # milliseconds with 500 members, which the latency would wrongly charge to the server.
        now = monotonicUs()
        transport = cast(TCPConnection, self.transport)
        data = self.run.message(self.index, now)
        sent = 0
        if not transport.dataBuffer and not transport._tempDataLen:
            try:
                sent = transport.socket.send(data)
            except OSError:  # full, or failed: Twisted's write() meets either as ever
                pass
        if sent < len(data):
            transport.write(data[sent:])
        self.run.sendLags.append(max(0, now - int(due * 1_000_000)))


class WebClient(BenchClient):
    """
    One client of the web door, or of the WebSocket relay: a raw WebSocket written for speed
    (no WebSocket library: a client library's own costs would be the generator's limit). It
    makes the opening handshake (C{GET /ws}, as the page does, with the page's C{Origin}),
    then, with chatsvc, names itself as the JSON protocol says (C{hello}; C{name}; C{welcome}),
    sends its chat as C{say} messages in masked frames (to the relay too, which relays them as
    they are) and checks every frame it receives.

    Chat frames are checked in bulk (see L{WebLayout}): a read that is nothing but chat frames
    of the run's width has its wildcard columns (the server's id and time) zeroed, and then
    runs of frames from one sender are compared, as bytes, with the next frames that sender's
    receivers are to get, as the line clients' runs are. Anything else, from the first frame
    that does not pass on (joins, notices, pings, frames split between reads, a frame out of
    order), is read frame by frame and its JSON parsed. chatsvc sends a web member its own
    messages too: those are checked to come in order, and counted apart (they are not
    deliveries: the relay sends none).
    """

    def __init__(self, run: Run, index: int, port: int) -> None:
        super().__init__(run, index)
        layout = run.layout
        assert layout is not None
        self.layout = layout
        self.relay = layout.relay
        self.port = port
        self.upgraded = False
        self.key = base64.b64encode(os.urandom(16))
        self.echoed = 0
        """How many of its own messages came back (chatsvc only), in order."""

    # Connection

    def connectionMade(self) -> None:
        """No Nagle; the opening handshake, as a page at the server's own origin makes it."""
        transport = cast(ITCPTransport, self.transport)
        transport.setTcpNoDelay(True)
        host = b"127.0.0.1:%d" % self.port
        transport.write(
            b"GET /ws HTTP/1.1\r\nHost: " + host + b"\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + self.key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\nOrigin: http://" + host + b"\r\n\r\n"
        )

    # Receiving

    def dataReceived(self, data: bytes) -> None:
        """Every whole frame: chat frames in bulk where they can be, the rest one by one."""
        run = self.run
        if run.ignoring:
            return
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        now = monotonicUs()
        if not self.upgraded:
            data = self._upgrade(data, now)
            if not data:
                return
        delivered, start = self._records(data, now) if self.member else (0, 0)
        if start < len(data):
            delivered += self._frames(data, start, now)
        if delivered:
            run.deliveries(delivered, now)

    def _upgrade(self, data: bytes, now: int) -> bytes:
        # The server's answer to the opening handshake; what follows it is frames.
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_BUFFER:
                self._refused(data[:200])
            else:
                self._buffer = data
            return b""
        head = data[:end].split(b"\r\n")
        accept = base64.b64encode(hashlib.sha1(self.key + WS_GUID).digest())
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in head[1:])
        }
        if not head[0].startswith(b"HTTP/1.1 101 ") or headers.get(b"sec-websocket-accept") != accept:
            self._refused(head[0])
            return b""
        self.upgraded = True
        fire(self.accepted)
        if self.relay:
            self._joined(now)
        return data[end + 4 :]

    def _joined(self, now: int) -> None:
        self.member = True
        self.run.handshakeDone(now)
        self.run.readers.add(self)

    def _records(self, data: bytes, now: int) -> tuple[int, int]:
        """
        The chat frames at the start of C{data}, in bulk: the deliveries to count, and how far
        they go (a frame's start; from there on, L{_frames} reads frame by frame).
        """
        run = self.run
        layout = self.layout
        width = layout.width
        count = len(data) // width
        if not count or data[0] != 0x81 or data[width - 1] != 0x7D:  # a text frame, ending "}"
            return 0, 0
        end = count * width
        compared: bytes | bytearray = data
        if layout.wildcards:
            compared = bytearray(memoryview(data)[:end])
            zeros = bytes(count)
            for column in layout.wildcards:
                compared[column:end:width] = zeros
        senderAt = layout.senderAt
        if count > 1:
            different = 0
            for column in run.senderColumns:
                digits = data[senderAt + column : end : width]
                different |= int.from_bytes(digits[1:], "little") ^ int.from_bytes(
                    digits[:-1], "little"
                )
            changes = different.to_bytes(count - 1, "little").translate(CHANGES)
        else:
            changes = b""
        senderByNick = run.senderByNick
        streams = run.webStreams
        progress = run.got
        totals = run.progress
        index = self.index
        timed = run.checks[index]
        exact = run.exactLatency
        sample = -1
        delivered = 0
        start = 0
        while start < count:
            last = changes.find(b"1", start)
            if last < 0:
                last = count - 1
            lines = last + 1 - start
            begin = start * width
            stop = begin + lines * width
            sender = senderByNick.get(data[begin + senderAt : begin + senderAt + NICK_WIDTH])
            if sender is None:
                break
            if sender == index:
                if self.relay:
                    break
                offset = self.echoed * width
                if compared[begin:stop] != streams[sender][offset : offset + lines * width]:
                    break
                self.echoed += lines
                start = last + 1
                continue
            got = progress[sender]
            first = got[index] + 1
            offset = (first - 1) * width
            if compared[begin:stop] != streams[sender][offset : offset + lines * width]:
                break
            start = last + 1
            got[index] = first + lines - 1
            totals[sender] += lines
            delivered += lines
            if not timed:
                continue
            if exact:
                run.recordLatencies(sender, first, first + lines, now)
            elif sample < 0:
                sample = now - run.sendTimes[sender][first - 1]
        if sample >= 0:
            run.latencies.append(sample)
        return delivered, start * width

    def _frames(self, data: bytes, start: int, now: int) -> int:
        """Whole frames from C{start}, one by one; the rest is kept for the next read."""
        delivered = 0
        size = len(data)
        at = start
        while at + 2 <= size:
            first, second = data[at], data[at + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                head = 4
                if at + head > size:
                    break
                length = int.from_bytes(data[at + 2 : at + 4], "big")
            elif length == 127:
                head = 10
                if at + head > size:
                    break
                length = int.from_bytes(data[at + 2 : at + 10], "big")
            if at + head + length > size:
                break
            payload = data[at + head : at + head + length]
            at += head + length
            opcode = first & 0x0F
            if second & 0x80 or not first & 0x80:
                self.run.error(self.nick, f"a frame masked or in pieces: {first:#x} {second:#x}")
            elif opcode == 0x1:
                delivered += self._message(payload, now)
            elif opcode == 0x9:
                assert self.transport is not None
                self.transport.write(maskedFrame(payload, 0xA))
            elif opcode == 0x8:
                if not self.run.ignoring:
                    self.run.error(self.nick, f"the server closed the WebSocket: {payload!r}")
            elif opcode != 0xA:
                self.run.error(self.nick, f"an unexpected frame, opcode {opcode}")
        if at < size:
            self._buffer = data[at:]
            if len(self._buffer) > MAX_BUFFER:
                self.run.error(self.nick, f"a frame longer than {MAX_BUFFER} bytes")
                self._buffer = b""
        return delivered

    def _message(self, payload: bytes, now: int) -> int:
        """One JSON message; the deliveries it makes (one chat message, or none)."""
        run = self.run
        try:
            message = json.loads(payload)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            run.error(self.nick, f"not a JSON object: {payload[:100]!r}")
            return 0
        kind = message.get("type")
        if kind == ("say" if self.relay else "said"):
            return self._chatMessage(message, payload, now)
        if not self.member:
            if kind == "hello" and not self.named:
                self.named = True
                assert self.transport is not None
                self.transport.write(
                    # The password logs in where the nickname is registered (the accounts
                    # target); a guest's is not looked at.
                    maskedFrame(
                        b'{"type":"name","nick":"' + self.nick + b'","password":"' + PASSWORD + b'"}'
                    )
                )
            elif kind == "welcome" and message.get("nick") == self.nick.decode():
                self._joined(now)
            else:
                self._refused(payload)
            return 0
        if kind == "joined":
            if str(message.get("nick")).encode() in run.nickSet:
                self.joins += 1
                run.joinsSeenAdd(1, now)
            else:
                run.foreignLines += 1
        elif kind == "crowd":
            self._crowd(payload, message, now)
        elif kind == "left":
            self._left(1, payload)
        elif kind == "room":
            count = message.get("count")
            if isinstance(count, int):
                self.position = count
            else:
                run.error(self.nick, f"a room without a count: {payload[:60]!r}")
        elif kind == "notice" and message.get("text") == WEB_FLOOD_NOTICE:
            run.floodNotices += 1
        elif kind in ("error", "bye", "say", "said"):
            run.error(self.nick, f"unexpected {payload[:100]!r}")
        else:
            run.notice(payload)
        return 0

    def _chatMessage(self, message: dict[str, Any], payload: bytes, now: int) -> int:
        """
        A chat message that is not simply the next one expected (or came among other frames):
        judged alone, as the line clients' are (see L{BenchClient._chatLines}).
        """
        run = self.run
        text = message.get("text")
        encoded = text.encode("utf-8") if isinstance(text, str) else b""
        sender = run.senderByNick.get(encoded[-NICK_WIDTH:])
        try:
            sequence = int(encoded[:9])
        except ValueError:
            sequence = 0
        if (
            sender is None
            or encoded != run.webText(sender, sequence)
            or message.get("room") != "lobby"
            or (not self.relay and message.get("nick") != run.nicks[sender].decode())
        ):
            run.error(self.nick, f"a chat message that was never sent: {payload[:200]!r}")
            return 0
        if sender == self.index:
            if self.relay:
                run.error(self.nick, f"its own message echoed back: {encoded[:40]!r}")
            elif sequence == self.echoed + 1:
                self.echoed = sequence
            else:
                run.error(self.nick, f"its own message {sequence} after {self.echoed}")
            return 0
        got = run.got[sender]
        last = got[self.index]
        if sequence > last:
            if sequence > last + 1:
                self.missing.setdefault(sender, set()).update(range(last + 1, sequence))
            got[self.index] = sequence
            run.progress[sender] += sequence - last
        else:
            gaps = self.missing.get(sender)
            if gaps is not None and sequence in gaps:
                gaps.discard(sequence)
                run.reordered += 1
            else:
                run.duplicated += 1
                return 0
        if run.checks[self.index]:
            run.latencies.append(now - run.sendTimes[sender][sequence - 1])
        return 1

    def _crowd(self, payload: bytes, message: dict[str, Any], now: int) -> None:
        """
        A crowded room's joins and leaves (C{crowd}): each client's nickname among the joins
        counts as a join notice seen, as in the line door's summaries; every member gets the
        same event, so each is counted once and remembered.
        """
        run = self.run
        counted = run.crowdCounts.get(payload)
        if counted is None:
            joins = foreign = leaves = 0
            for entry in message.get("runs") or ():
                nicks = [str(nick).encode() for nick in entry.get("nicks") or ()]
                if entry.get("joined"):
                    ours = sum(map(run.nickSet.__contains__, nicks))
                    joins += ours
                    foreign += len(nicks) - ours
                else:
                    leaves += len(nicks)
            counted = run.crowdCounts[payload] = (joins, foreign, leaves)
        joins, foreign, leaves = counted
        run.foreignLines += foreign
        if leaves:
            self._left(leaves, payload)
        if joins:
            self.joins += joins
            run.joinsSeenAdd(joins, now)


def splitIrc(line: bytes) -> tuple[bytes, bytes, bytes]:
    """An IRC line's source (without its C{:}; empty if it has none), command, and the rest."""
    source = b""
    if line.startswith(b":"):
        source, _, line = line[1:].partition(b" ")
    command, _, params = line.partition(b" ")
    return source, command, params


class IrcClient(BenchClient):
    """
    One client of chatsvc's IRC door: the generator's own minimal IRC client (no IRC library:
    a library's own costs would be the generator's limit). It registers with C{NICK} and
    C{USER}, asking for no capability (no C{CAP}: no tags, plain lines, no echo of its own
    messages), and is a member from the server's C{001}; the server puts it in C{#lobby} and
    tells it so (its own C{JOIN}, then C{353} and C{366}). It sends its chat as
    C{PRIVMSG #lobby :<text>} and answers C{PING} with C{PONG}.

    A chat line it receives, C{:<nick>!chat@chatsvc PRIVMSG #lobby :<text>}, is a line door's
    chat line with another prefix (see L{Run}), checked by the same code: in bulk, as bytes,
    against what its sender sent. Everything else is read here, line by line: another client's
    C{JOIN} is a join notice (a read of nothing but C{JOIN}s is counted in bulk, as the line
    door's C{joined!} lines are, once its own C{JOIN} has come: before, such a read could be
    its own), and so is each nickname of a crowded room's summary, C{NOTICE #lobby :*** Joined:
    <nick>, <nick>} (as the line door's are counted); a C{PART} or a C{*** Left: } summary is a
    leave. Its place in the room is the count of the names in its C{353} replies, or in a crowded
    room the count the server gives instead (C{NOTICE #lobby :*** #lobby has N members, too many
    to list on joining: ...}).
    """

    def __init__(self, run: Run, index: int) -> None:
        super().__init__(run, index)
        self.joinSuffix = None
        self.inRoom = False
        """Whether its own C{JOIN #lobby} has come."""
        self.names = 0
        """The names of C{#lobby} in its C{353} replies so far."""

    # Connection

    def connectionMade(self) -> None:
        """No Nagle; registration at once, as a client without capabilities does it."""
        transport = cast(ITCPTransport, self.transport)
        transport.setTcpNoDelay(True)
        nick = self.nick
        transport.write(b"NICK " + nick + b"\r\nUSER " + nick + b" 0 * :" + nick + b"\r\n")

    # Receiving

    def _handshake(self, data: bytes, now: int) -> bytes:
        # Registration's answer: 001 names us, and from there on this is a member; what follows
        # (the rest of the welcome, its JOIN, the names) is returned for the usual checks.
        start = 0
        while not self.member:
            end = data.find(b"\n", start)
            if end < 0:
                return b""
            line = data[start:end].rstrip(b"\r")
            start = end + 1
            fire(self.accepted)  # the server answered: it took the connection
            _, command, params = splitIrc(line)
            if command == b"001" and params.split(b" ", 1)[0] == self.nick:
                self.member = True
                self.run.handshakeDone(now)
                self.run.readers.add(self)
            elif command == b"PING":
                self._pong(params)
            else:
                self._refused(line)
                return b""
        return data[start:]

    def _pong(self, params: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(b"PONG " + params + b"\r\n")

    def _otherLine(self, line: bytes, now: int) -> None:
        """
        Everything but the clients' chat: joins (a C{JOIN} each, or a crowded room's summaries),
        leaves (C{PART}, or summaries), the names, pings, notices; anything that tells of trouble
        (an error numeric, C{ERROR}, C{FAIL}, a C{PRIVMSG} that is no client's chat line) is an
        error.
        """
        run = self.run
        if line[-1:] == b"\r":
            line = line[:-1]
        source, command, params = splitIrc(line)
        if command == b"JOIN":
            nick = source.partition(b"!")[0]
            if nick == self.nick and not self.inRoom and params == b"#lobby":
                self.inRoom = True
                self.joinSuffix = run.joinSuffix
            elif nick in run.nickSet and nick != self.nick:
                self.joins += 1
                run.joinsSeenAdd(1, now)
            elif nick == self.nick:
                run.error(self.nick, f"its own join again: {line[:60]!r}")
            else:
                run.foreignLines += 1
        elif command in (b"PART", b"QUIT"):
            self._left(1, line)
        elif command == b"PING":
            self._pong(params)
        elif command == b"353":
            # "<me> = #lobby :<nick> <nick> ..." (without the colon when there is one name).
            parts = params.split(b" ", 3)
            if len(parts) == 4 and parts[2] == b"#lobby":
                self.names += parts[3].count(b" ") + 1
            else:
                run.notice(line)
        elif command == b"366":
            if params.split(b" ", 2)[1:2] == [b"#lobby"]:
                if self.position is None:  # unless a crowded room's count came first
                    self.position = self.names
            else:
                run.notice(line)
        elif command == b"NOTICE":
            if params.startswith(IRC_JOINED):
                self._joinedSummary(params[len(IRC_JOINED) :], now)
            elif params.startswith(IRC_LEFT):
                self._left(params.count(SUMMARY_SEPARATOR) + 1, line)
            elif params.endswith(b" :" + IRC_FLOOD_NOTICE):
                run.floodNotices += 1
            else:
                crowded = IRC_CROWDED.match(params)
                if crowded:
                    # A crowded room's count, instead of every name: this client's place.
                    self.position = int(crowded.group(1))
                else:
                    run.notice(line)
        elif command in IRC_QUIET_REPLIES:
            pass
        elif command in (b"PRIVMSG", b"ERROR", b"FAIL", b"KICK") or (
            len(command) == 3 and command[:1] in (b"4", b"5")
        ):
            run.error(self.nick, f"unexpected line {line[:100]!r}")
        else:
            run.notice(line)


@dataclass
class Subject:
    """One target under one workload: its server, its clients' run, its results."""

    target: str
    server: ServerProcess
    run: Run
    results: dict[str, Any]
    began: float
    steps: list[dict[str, Any]] = field(default_factory=list)
    """Closed loop: the ramp's steps."""
    slices: list[dict[str, Any]] = field(default_factory=list)
    """Closed loop: the sustained measure's slices."""
    nodes: list[NodeProcess] = field(default_factory=list)
    """The cluster workload: every node of the subject's cluster (C{server} is the first)."""
    meter: ClusterMeter | None = None
    """The cluster workload: what measures its nodes and Redis over each window."""


class _OneClient(ClientFactory):
    """Connects one L{BenchClient} (straight to the transport: no wrapper on the hot path)."""

    noisy = False

    def __init__(self, client: BenchClient) -> None:
        self.client = client

    def buildProtocol(self, addr: IAddress | None) -> BenchClient:
        """The client, for its connection."""
        return self.client

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        """The connection could not be made."""
        self.client.connectFailed(reason)


# The workloads


class Bench:
    """Runs workloads against targets; every figure goes into the result dictionaries."""

    def __init__(self, reactor: IReactor, settings: Settings) -> None:
        self.reactor = reactor
        self.settings = settings
        self.cpusUsable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        self.serverCPU, self.generatorCPU = chooseCPUs(settings.pin)
        self.failed = False
        self.connectSeconds = 0.0

    def prepare(self, workload: Workload, target: str) -> Subject:
        """A server for C{target} (not started yet), its settings told, and a run for it."""
        log = None
        stem = f"{workload.kind}-{workload.clients}-{workload.door}-{target}"
        if self.settings.server_log is not None:
            self.settings.server_log.mkdir(parents=True, exist_ok=True)
            name = stem if workload.door != "line" else stem.replace("-line-", "-")
            log = self.settings.server_log / f"{name}.log"
        profile = None
        if self.settings.server_profile is not None:
            self.settings.server_profile.mkdir(parents=True, exist_ok=True)
            profile = self.settings.server_profile / f"{stem}.prof"
        server, reasons = makeServer(
            self.reactor, target, workload, self.serverCPU, log, history=target == "history",
            profile=profile,
            accounts=accountsDatabase(workload.clients + 16) if target == "accounts" else None,
        )
        say(f"--- {workload.name} against {target}")
        say("    server settings raised for this load (the defaults are for public servers):")
        for reason in reasons:
            say(f"      {reason}")
        senders = workload.senders if workload.kind in ("openloop", "closedloop") else 0
        door = runDoor(workload, target)
        layout = None if door in ("line", "irc") else WebLayout(target == "relay", workload.size)
        run = Run(
            self.reactor, workload.clients, senders, workload.size,
            exactLatency=workload.kind == "openloop", door=door, layout=layout,
        )
        if door == "web" and target == "relay":
            run.joinsExpected = 0  # the WebSocket relay tells nobody of anything but messages
        if door == "mixed":
            say("    every second client (in the order they join) uses the web door, the others "
                "the line door")
        if workload.door == "irc":
            say(f"    {workload.clients} IRC clients (NICK, USER; then PRIVMSG #lobby)"
                if door == "irc" else
                f"    {workload.clients} line clients: the IRC door's reference, in the same run")
        if workload.kind == "openloop" and workload.checked is not None:
            run.checkOnly(workload.checked)
            say(f"    {workload.checked} receivers (the senders, then others spread over the "
                f"room) check every line, the other {workload.clients - workload.checked} "
                "count theirs")
        results: dict[str, Any] = {"server_settings": reasons, "aborted": None}
        return Subject(target, server, run, results, time.monotonic())

    async def start(self, subject: Subject) -> dict[str, int]:
        """Start a subject's server; the port of each of its doors (C{line}, C{web}, C{irc})."""
        server = subject.server
        port = await within(self.reactor, server.start(), 60, f"{subject.target} to listen")
        subject.results["server_command"] = server.command
        subject.results["server_rss_kb_start"] = server.rssKB()
        if subject.run.door == "line" and server.name == "relay":
            return {"line": port}
        if server.name == "relay":
            return {"web": port}
        ports = dict(cast(DoorServer, server).ports)
        ports.setdefault("line", port)
        return ports

    async def finish(self, subject: Subject, workload: Workload) -> dict[str, Any]:
        """Cut every connection, stop the server, and complete the subject's results."""
        gc.unfreeze()
        server, run, results = subject.server, subject.run, subject.results
        alive = server.running()
        run.stop()
        results["server_stop"] = await stopServer(server, STOP_GRACE)
        results["server_exited_early"] = not alive
        results["server_log_trouble"] = server.troubleCount
        results["server_log_trouble_lines"] = server.trouble
        results["elapsed_seconds"] = round(time.monotonic() - subject.began, 1)
        results["errors"] = run.errorCount
        results["error_lines"] = run.errors
        results["other_notices"] = run.noticeCount
        results["other_notice_lines"] = run.notices
        if results["aborted"] is not None and not alive:
            results["server_log_tail"] = server.tail
        if not healthy(workload, results):
            self.failed = True
        say(
            f"    {subject.target}: {summaryLine(workload, results)}; server: "
            f"{results['server_stop']}; {results['elapsed_seconds']:g} s in all"
        )
        return results

    async def runOne(self, workload: Workload, target: str) -> dict[str, Any]:
        """One workload against one target, with a server of its own."""
        subject = self.prepare(workload, target)
        run, server, results = subject.run, subject.server, subject.results
        try:
            ports = await self.start(subject)
            if workload.kind == "openloop":
                await self.openLoop(run, server, ports, workload, results)
            elif workload.kind == "idle":
                await self.idle(run, server, ports, workload, results)
            else:
                await self.joinStorm(run, server, ports, workload, results)
        except Aborted as error:
            results["aborted"] = str(error)
            say(f"    ABORTED: {error}")
        finally:
            await self.finish(subject, workload)
        return results

    async def runClosedLoops(self, workload: Workload, targets: list[str]) -> dict[str, Any]:
        """
        The closed loop against every target at once: all servers running (on the same CPU),
        each with its own clients, and their steps taken in turn, so that a machine that speeds
        up or slows down over the run (a shared one does) weighs on every target alike.
        """
        subjects = [self.prepare(workload, target) for target in targets]
        try:
            for subject in subjects:
                ports = await self.start(subject)
                await self.join(subject.run, ports, subject.results)
                subject.run.phase = Phase.LOADING
            await self.closedLoop(workload, subjects)
        except Aborted as error:
            for subject in subjects:
                subject.results["aborted"] = str(error)
            say(f"    ABORTED: {error}")
        finally:
            for subject in subjects:
                await self.finish(subject, workload)
        return {subject.target: subject.results for subject in subjects}

    async def connect(
        self, run: Run, ports: dict[str, int], inFlight: int, timeout: float
    ) -> None:
        """
        Connect every client at once, at most C{inFlight} of them not yet greeted by the server
        (so the listen queue never overflows), and wait until every one has joined.
        """
        reactor = self.reactor
        semaphore = defer.DeferredSemaphore(inFlight)
        started = monotonicUs()
        run.firstConnectAt = started

        async def connectAll() -> None:
            for index in range(run.count):
                await semaphore.acquire()
                client: BenchClient
                if run.isWeb[index]:
                    port = ports["web"]
                    client = WebClient(run, index, port)
                elif run.door == "irc":
                    port = ports["irc"]
                    client = IrcClient(run, index)
                else:
                    port = ports["line"] if run.linePorts is None else run.linePorts[index]
                    client = BenchClient(run, index)
                run.clients.append(client)
                client.accepted.addCallback(lambda _: semaphore.release())
                reactor.connectTCP("127.0.0.1", port, _OneClient(client), timeout=30)
                if run.allHandshaked.called:  # a failure already: stop connecting
                    return
            await run.allHandshaked

        await within(
            reactor, defer.ensureDeferred(connectAll()), timeout,
            f"{run.count} clients to connect and join",
        )
        self.connectSeconds = (run.lastHandshakeAt - started) / 1e6

    async def settleJoins(self, run: Run, quiet: float, timeout: float) -> bool:
        """
        Wait until every join notice is delivered: the wait ends as soon as the last one arrives
        (alone or in a summary). If some never come, it ends once none has arrived for C{quiet}
        seconds (longer than a crowded room's interval between summaries), at most C{timeout};
        whether all arrived.
        """
        deadline = time.monotonic() + timeout
        while True:
            if run.joinsCompleteAt is not None:
                return True
            last = max(run.lastJoinAt or 0, run.lastHandshakeAt)
            now = time.monotonic()
            if now - last / 1e6 > quiet or now > deadline:
                return False
            await sleep(self.reactor, 0.02)

    async def serverQuiet(self, server: ServerProcess, timeout: float) -> None:
        """Wait (at most C{timeout}) until the server uses under 5% of a CPU for 0.25 s."""
        deadline = time.monotonic() + timeout
        before = server.cpuSeconds()
        while time.monotonic() < deadline:
            await sleep(self.reactor, 0.25)
            after = server.cpuSeconds()
            if before is None or after is None or after - before < 0.0125:
                return
            before = after

    async def drain(self, run: Run, quiet: float, timeout: float) -> bool:
        """
        Sending is over: wait for every expected delivery, until nothing has arrived for
        C{quiet} seconds or C{timeout} passes; whether all arrived.
        """
        run.expect()
        deadline = time.monotonic() + timeout
        while not run.drained.called:
            now = time.monotonic()
            last = run.lastDeliveryAt
            if now > deadline or (last is not None and now - last / 1e6 > quiet):
                return False
            await sleep(self.reactor, 0.02)
        return True

    async def join(self, run: Run, ports: dict[str, int], results: dict[str, Any]) -> None:
        """Connect everyone and wait until nobody's join notice is still on its way."""
        timeout = self.settings.timeout
        await self.connect(run, ports, min(run.count, 1000), timeout)
        results["connect_seconds"] = round(self.connectSeconds, 3)
        results["joins_settled"] = await self.settleJoins(run, 2.0, timeout)
        gc.collect()
        gc.freeze()

    def tally(self, run: Run, results: dict[str, Any]) -> None:
        """The delivery figures every loaded run reports."""
        expected = run.sent() * (run.count - 1)
        results.update(
            sent=run.sent(),
            expected_deliveries=expected,
            delivered=run.delivered,
            lost=expected - run.delivered,
            duplicated=run.duplicated,
            reordered=run.reordered,
            flood_notices=run.floodNotices,
            leaves=run.leaves,
            latency_ms=summaryMs(run.latencies),
        )
        if run.door in ("web", "mixed"):
            web = [client for client in run.clients if isinstance(client, WebClient)]
            results["own_messages_sent"] = sum(
                run.sentCounts[client.index] for client in web if client.index < run.senderCount
            )
            results["own_messages_received"] = sum(client.echoed for client in web)

    def probe(self, server: ServerProcess) -> Probe:
        """Start measuring CPU use for a phase."""
        return Probe(server, (self.serverCPU, self.generatorCPU))

    async def openLoop(
        self, run: Run, server: ServerProcess, ports: dict[str, int], workload: Workload,
        results: dict[str, Any], meter: ClusterMeter | None = None,
    ) -> None:
        """
        K senders at R lines/s each for D s; every delivery checked and timed. With a
        C{meter} (a cluster's), every node is also seen to hold every member before the load,
        and the nodes and Redis are measured from the load's start until the last delivery.
        """
        await self.join(run, ports, results)
        before = None
        if meter is not None:
            await meter.settle(run.count, self.settings.timeout)
            before = await meter.read()
        run.phase = Phase.LOADING
        period = 1 / workload.rate
        probe = self.probe(server)
        start = time.monotonic() + 0.05
        end = start + workload.duration
        for sender in range(workload.senders):
            run.clients[sender].startSending(start + random.uniform(0, period), period, end)
        await within(
            self.reactor, run.sendingDone, workload.duration + 60, "the senders to finish"
        )
        drained = await self.drain(run, quiet=10.0, timeout=self.settings.timeout)
        finished = time.monotonic()
        # Deliveries over the time they took: the load's duration, or longer if the server
        # fell behind and the last deliveries came after it.
        last = run.lastDeliveryAt
        span = max(workload.duration, 0 if last is None else last / 1e6 - start)
        self.tally(run, results)
        offered = results["expected_deliveries"] / workload.duration
        results.update(
            drained=drained,
            offered_deliveries_per_s=round(offered, 1),
            deliveries_per_s=round(run.delivered / span, 1),
            drain_seconds=round(max(0.0, finished - end), 3),
            send_lag_ms=summaryMs(run.sendLags),
            server_rss_kb=server.rssKB(),
            **probe.finish(),
        )
        if meter is not None and before is not None:
            window = meter.window(before, await meter.read())
            results["cluster"] = windowFigures([window])

    async def closedLoop(self, workload: Workload, subjects: list[Subject]) -> None:
        """
        Windows of lines in flight: each target's ramp to its best window, the targets' steps
        in turn; then the sustained measure at each one's best window, in slices of about a
        second that alternate between the targets, each target's figure the median of its
        slices.
        """
        windows: dict[str, int] = {}
        if workload.window is not None:
            windows = {subject.target: workload.window for subject in subjects}
        else:
            best: dict[str, dict[str, Any]] = {}
            flat = {subject.target: 0 for subject in subjects}
            ramping = list(subjects)
            for window in RAMP:
                for subject in list(ramping):
                    step = await self.closedStep(
                        subject.run, subject.server, window, workload.step, subject.meter
                    )
                    subject.steps.append(step)
                    say(
                        f"    {subject.target:>7} window {window:>3}: "
                        f"{step['deliveries_per_s']:>12,.0f} deliveries/s; CPU used (waiting): "
                        f"generator {step['generator_cpu_percent']:g}% "
                        f"({step['generator_wait_percent']}%), server "
                        f"{step['server_cpu_percent']}% ({step['server_wait_percent']}%)"
                    )
                    target = subject.target
                    if not step["drained"]:
                        ramping.remove(subject)
                        continue
                    rate = step["deliveries_per_s"]
                    previous = best.get(target)
                    improved = previous is None or rate > previous["deliveries_per_s"] * RAMP_GAIN
                    if previous is None or rate > previous["deliveries_per_s"]:
                        best[target] = step
                    flat[target] = 0 if improved else flat[target] + 1
                    if flat[target] >= 2 and window >= RAMP_AT_LEAST:
                        ramping.remove(subject)
                if not ramping:
                    break
            for subject in subjects:
                if subject.target not in best:
                    raise Aborted(f"{subject.target}: the first window already lost lines")
                windows[subject.target] = kneeWindow(subject.steps)
        count = max(1, round(workload.duration / CLOSED_SLICE))
        seconds = workload.duration / count
        for round_ in range(count):
            for subject in subjects if round_ % 2 == 0 else subjects[::-1]:
                step = await self.closedStep(
                    subject.run, subject.server, windows[subject.target], seconds, subject.meter
                )
                subject.slices.append(step)
            say(
                f"    sustained, slice {round_ + 1} of {count}: " + ", ".join(
                    f"{subject.target} {subject.slices[-1]['deliveries_per_s']:,.0f}"
                    for subject in subjects
                ) + " deliveries/s"
            )
        for subject in subjects:
            run, results, slices = subject.run, subject.results, subject.slices
            self.tally(run, results)
            rates = sorted(step["deliveries_per_s"] for step in slices)
            usage = {
                key: round(statistics.fmean(step[key] for step in slices), 1)
                for key in slices[0]
                if key.endswith("_percent") and all(step[key] is not None for step in slices)
            }
            results.update(
                window=windows[subject.target],
                deliveries_per_s=round(statistics.median(rates), 1),
                messages_per_s=round(statistics.median(rates) / (run.count - 1), 1),
                drained=all(step["drained"] for step in slices),
                slices=slices,
                ramp=subject.steps,
                best_step_deliveries_per_s=max(
                    [step["deliveries_per_s"] for step in subject.steps if step["drained"]]
                    or [0.0]
                ),
                server_rss_kb=subject.server.rssKB(),
                **usage,
            )
            if subject.meter is not None:
                results["cluster"] = windowFigures([step["cluster"] for step in slices])

    async def closedStep(
        self, run: Run, server: ServerProcess, window: int, seconds: float,
        meter: ClusterMeter | None = None,
    ) -> dict[str, Any]:
        """
        One window for C{seconds} (after a warm-up), then a drain; the step's figures. With a
        C{meter}, the cluster's nodes and Redis are measured over the same seconds (its
        C{cluster} figures: see L{ClusterMeter.window}).
        """
        run.window = window
        run.threshold = max(1, window // 2)
        run.sending = True
        run.expected = None
        run.drained = Deferred()
        run.pump()
        await sleep(self.reactor, min(0.5, max(0.1, seconds / 4)))
        before = None if meter is None else await meter.read()
        delivered, began = run.delivered, time.monotonic()
        probe = self.probe(server)
        await sleep(self.reactor, seconds)
        elapsed = time.monotonic() - began
        count = run.delivered - delivered
        usage = probe.finish(elapsed)
        extra: dict[str, Any] = {}
        if meter is not None and before is not None:
            extra["cluster"] = meter.window(before, await meter.read())
        run.sending = False
        drained = await self.drain(run, quiet=5.0, timeout=self.settings.timeout)
        perSecond = count / elapsed
        return {
            "window": window,
            "seconds": round(elapsed, 3),
            "deliveries_per_s": round(perSecond, 1),
            "messages_per_s": round(perSecond / (run.count - 1), 1),
            "drained": drained,
            **usage,
            **extra,
        }

    async def idle(
        self, run: Run, server: ServerProcess, ports: dict[str, int], workload: Workload,
        results: dict[str, Any],
    ) -> None:
        """C connections that complete the handshake: the time it takes, the memory they cost."""
        await self.serverQuiet(server, 10)
        before = server.rssKB()
        probe = self.probe(server)
        await self.connect(run, ports, listenBacklog(run.count), self.settings.timeout)
        results["connect_seconds"] = round(self.connectSeconds, 3)
        results.update(probe.finish())
        results["joins_settled"] = await self.settleJoins(run, 2.0, self.settings.timeout)
        await self.serverQuiet(server, 30)
        after = server.rssKB()
        results.update(
            connections=run.count,
            server_rss_kb_before=before,
            server_rss_kb_after=after,
            rss_per_connection_kb=(
                round((after - before) / run.count, 2)
                if before is not None and after is not None else None
            ),
            joins_seen=run.joinsSeen,
            joins_expected=run.joinsExpected,
        )

    async def joinStorm(
        self, run: Run, server: ServerProcess, ports: dict[str, int], workload: Workload,
        results: dict[str, Any],
    ) -> None:
        """C clients join one room at once: the time until every join notice is delivered."""
        await self.serverQuiet(server, 10)
        probe = self.probe(server)
        timeout = self.settings.timeout
        await self.connect(run, ports, listenBacklog(run.count), timeout)
        complete = await self.settleJoins(run, 3.0, timeout)
        usage = probe.finish()
        finished = (
            run.joinsCompleteAt if run.joinsCompleteAt is not None
            else max(run.lastJoinAt or 0, run.lastHandshakeAt)
        )
        seconds = (finished - run.firstConnectAt) / 1e6
        short = None
        if all(client.position is not None for client in run.clients):
            short = sum(
                max(0, run.count - cast(int, client.position) - client.joins)
                for client in run.clients
            )
        results.update(
            clients=run.count,
            join_seconds=round(seconds, 3),
            handshake_seconds=round(self.connectSeconds, 3),
            joins_complete=complete,
            joins_seen=run.joinsSeen,
            joins_expected=run.joinsExpected,
            joins_missing_by_member_list=short,
            server_rss_kb=server.rssKB(),
            **usage,
        )


    # The cluster workload

    def prepareCluster(
        self, workload: Workload, name: str, count: int, db: int, redis: RedisProcess
    ) -> Subject:
        """
        The nodes (not started yet) of a cluster of C{count} on C{redis}'s database C{db}, a
        run of C{workload}'s clients spread over them (client i on node i mod C{count}), and
        the meter of the nodes and Redis.
        """
        prefix = f"fanout-{workload.kind}:"
        label = name.split("_")[0]
        names = [f"{label}-{chr(ord('a') + index)}" for index in range(count)]
        options, reasons = clusterOptions(workload, listenBacklog(workload.clients))
        url = f"redis://127.0.0.1:{redis.port}/{db}"
        cluster = [
            "--redis", url, "--redis-prefix", prefix, "--lease", f"{CLUSTER_LEASE:g}",
            "--metrics-listen", "tcp:0:interface=127.0.0.1",
        ]
        reasons += [
            f"--redis {url} --redis-prefix {prefix}: Redis database {db} for this cluster alone "
            "(its keys are per database, and its channels are named by prefix and database, "
            f"{prefix}{db}:events), a prefix for this workload's, so no run meets another's "
            "nicknames or history",
            f"--lease {CLUSTER_LEASE:g} (the default), --node-name {'/'.join(names)}",
            "--metrics-listen tcp:0:interface=127.0.0.1: the counters of deliveries and "
            "published messages, read at each window's ends",
        ]
        nodes = []
        for nodeName in names:
            log = None
            if self.settings.server_log is not None:
                self.settings.server_log.mkdir(parents=True, exist_ok=True)
                log = self.settings.server_log / f"cluster-{workload.kind}-{nodeName}.log"
            command = chatroomCommand(
                [*options, *cluster, "--node-name", nodeName],
                listen="tcp:0:interface=127.0.0.1", twistdOptions=["--reactor=epoll"],
            )
            if self.settings.server_profile is not None:
                self.settings.server_profile.mkdir(parents=True, exist_ok=True)
                profile = self.settings.server_profile / f"cluster-{workload.kind}-{nodeName}.prof"
                program = command[1:] if command[0] == sys.executable else command
                command = [sys.executable, "-m", "cProfile", "-o", str(profile), *program]
            nodes.append(NodeProcess(
                self.reactor, nodeName, command, None, log, LISTENING,
                directoryPrefix=f"fanout-{nodeName}-", troubleKept=MAX_SAMPLES,
                nodeName=nodeName, peers=set(names) - {nodeName},
            ))
        say(f"--- cluster {workload.name} against {name}: {count} node(s) on Redis db {db}, "
            f"{workload.clients} line clients spread over them")
        say("    node settings (the same for every node; limits raised for this load):")
        for reason in reasons:
            say(f"      {reason}")
        run = Run(
            self.reactor, workload.clients, workload.senders, workload.size,
            exactLatency=workload.kind == "openloop",
        )
        results: dict[str, Any] = {
            "server_settings": reasons, "aborted": None, "nodes": names, "redis_db": db,
            "redis_prefix": prefix,
            "members_per_node": [len(range(index, workload.clients, count)) for index in range(count)],
        }
        meter = ClusterMeter(self.reactor, nodes, redis, f"{prefix}{db}:events")
        return Subject(name, nodes[0], run, results, time.monotonic(), nodes=nodes, meter=meter)

    async def startCluster(self, subject: Subject) -> dict[str, int]:
        """
        Start a cluster's nodes at once, and wait until each has joined it (its log's
        C{cluster_joined}) and heard from every other (C{cluster_peer_seen}); the line door's
        port of the first (each client's is in its run's C{linePorts}).
        """
        nodes, run, results = subject.nodes, subject.run, subject.results
        listening = [node.start() for node in nodes]
        for node, started in zip(nodes, listening):
            await within(self.reactor, started, 60, f"node {node.nodeName} to listen")
        for node in nodes:
            await within(self.reactor, node.ready, 60, f"node {node.nodeName} to join its cluster")
        run.linePorts = [nodes[index % len(nodes)].ports["line"] for index in range(run.count)]
        assert subject.meter is not None
        results["server_command"] = [node.command for node in nodes]
        results["subscribers"] = subject.meter.subscribers()
        say(f"    {subject.target}: " + ", ".join(
            f"{node.nodeName} (line door {node.ports['line']}, metrics {node.ports['metrics']})"
            for node in nodes
        ) + f" joined; {results['subscribers']} subscriber(s) to {subject.meter.channel}")
        return {"line": nodes[0].ports["line"]}

    async def finishCluster(self, subject: Subject, workload: Workload) -> dict[str, Any]:
        """Cut every connection, stop every node, and complete the subject's results."""
        gc.unfreeze()
        run, results, nodes = subject.run, subject.results, subject.nodes
        alive = [node.running() for node in nodes]
        run.stop()
        if subject.meter is not None:
            subject.meter.close()
        results["server_stop"] = [await stopServer(node, STOP_GRACE) for node in nodes]
        results["server_exited_early"] = not all(alive)
        results["server_log_trouble"] = sum(node.troubleCount for node in nodes)
        results["server_log_trouble_lines"] = [
            f"{node.nodeName}: {line}" for node in nodes for line in node.trouble
        ]
        results["server_log_expected_warnings"] = sum(len(node.expected) for node in nodes)
        results["node_log_events"] = {node.nodeName: node.eventCounts for node in nodes}
        results["node_log_event_lines"] = {node.nodeName: node.events for node in nodes}
        results["elapsed_seconds"] = round(time.monotonic() - subject.began, 1)
        results["errors"] = run.errorCount
        results["error_lines"] = run.errors
        results["other_notices"] = run.noticeCount
        results["other_notice_lines"] = run.notices
        if results["aborted"] is not None and not all(alive):
            results["server_log_tail"] = {node.nodeName: node.tail for node in nodes}
        if not healthy(workload, results) or results["server_log_trouble"]:
            self.failed = True
        say(
            f"    {subject.target}: {summaryLine(workload, results)}; node log trouble "
            f"{results['server_log_trouble']}; nodes: {', '.join(results['server_stop'])}; "
            f"{results['elapsed_seconds']:g} s in all"
        )
        for line in results["server_log_trouble_lines"]:
            say(f"      {line}")
        return results

    async def clusterOpenLoop(self, workload: Workload, redis: RedisProcess) -> dict[str, Any]:
        """The open loop against each cluster in turn, each with nodes of its own."""
        results = {}
        for name, count, db in CLUSTER_CONFIGS:
            subject = self.prepareCluster(workload, name, count, db, redis)
            try:
                ports = await self.startCluster(subject)
                await self.openLoop(
                    subject.run, subject.server, ports, workload, subject.results, subject.meter
                )
            except Aborted as error:
                subject.results["aborted"] = str(error)
                say(f"    ABORTED: {error}")
            finally:
                await self.finishCluster(subject, workload)
            results[name] = subject.results
        return results

    async def clusterClosedLoop(self, workload: Workload, redis: RedisProcess) -> dict[str, Any]:
        """
        The closed loop against both clusters at once (both on the same Redis, each with
        its own clients), their steps in turn as the other workloads' targets take theirs.
        """
        subjects = [
            self.prepareCluster(workload, name, count, db, redis)
            for name, count, db in CLUSTER_CONFIGS
        ]
        try:
            for subject in subjects:
                ports = await self.startCluster(subject)
                await self.join(subject.run, ports, subject.results)
                assert subject.meter is not None
                await subject.meter.settle(subject.run.count, self.settings.timeout)
                subject.run.phase = Phase.LOADING
            await self.closedLoop(workload, subjects)
            await self.subscriberCost(subjects[0], workload)
        except Aborted as error:
            for subject in subjects:
                subject.results["aborted"] = str(error)
            say(f"    ABORTED: {error}")
        finally:
            for subject in subjects:
                await self.finishCluster(subject, workload)
        return {subject.target: subject.results for subject in subjects}

    async def subscriberCost(self, subject: Subject, workload: Workload) -> None:
        """
        Redis' cost per subscriber at a closed loop's rate: the one-node cluster at the window
        of its sustained measure, in slices that take turns between its own subscriber alone
        (S=1) and with L{CLUSTER_LISTENERS} passive ones more; each slice's Redis CPU per
        published message, and the difference per extra subscriber. Every delivery is checked
        as ever (the run's tallies are taken again after).
        """
        meter, run, results = subject.meter, subject.run, subject.results
        assert meter is not None
        window = int(results["window"])
        count = max(2, round(workload.duration / CLOSED_SLICE))
        seconds = workload.duration / count
        timeout = self.settings.timeout
        alone: list[dict[str, Any]] = []
        joined: list[dict[str, Any]] = []
        listeners: list[Listener] = []
        base = meter.subscribers()
        try:
            for index in range(2 * count):
                extra = index % 2 == 1
                if extra and not listeners:
                    listeners = await meter.listen(CLUSTER_LISTENERS, timeout)
                elif not extra and listeners:
                    await meter.unlisten(listeners, timeout)
                    listeners = []
                step = await self.closedStep(run, subject.server, window, seconds, meter)
                step["subscribers"] = base + (CLUSTER_LISTENERS if extra else 0)
                (joined if extra else alone).append(step)
                cost = windowFigures([step["cluster"]])["redis_cpu_us_per_message"]
                say(f"    {subject.target}, {step['subscribers']} subscriber(s): "
                    f"{step['deliveries_per_s']:,.0f} deliveries/s, Redis {cost} us CPU per message")
        finally:
            if listeners:
                await meter.unlisten(listeners, timeout)
        without = windowFigures([step["cluster"] for step in alone])
        withMore = windowFigures([step["cluster"] for step in joined])
        perSubscriber = None
        if without["redis_cpu_us_per_message"] is not None and withMore["redis_cpu_us_per_message"] is not None:
            perSubscriber = round(
                (withMore["redis_cpu_us_per_message"] - without["redis_cpu_us_per_message"])
                / CLUSTER_LISTENERS, 3,
            )
        ownPerSubscriber = None
        if without["redis_own_cpu_us_per_message"] is not None and withMore["redis_own_cpu_us_per_message"] is not None:
            ownPerSubscriber = round(
                (withMore["redis_own_cpu_us_per_message"] - without["redis_own_cpu_us_per_message"])
                / CLUSTER_LISTENERS, 3,
            )
        results["subscriber_cost"] = {
            "window": window,
            "extra_subscribers": CLUSTER_LISTENERS,
            "subscribers_alone": base,
            "subscribers_with": base + CLUSTER_LISTENERS,
            "alone": without,
            "with": withMore,
            "deliveries_per_s_alone": round(statistics.median(step["deliveries_per_s"] for step in alone), 1),
            "deliveries_per_s_with": round(statistics.median(step["deliveries_per_s"] for step in joined), 1),
            "redis_us_per_extra_subscriber": perSubscriber,
            "redis_own_us_per_extra_subscriber": ownPerSubscriber,
            "slices_alone": alone,
            "slices_with": joined,
        }
        self.tally(run, results)

    async def runCluster(self, workloads: list[Workload], binary: str) -> tuple[
        list[dict[str, Any]], dict[str, Any]
    ]:
        """
        The cluster workload: a C{redis-server} of its own, then each workload against a
        one-node and a two-node cluster on it; the report, and what was seen of Redis.
        """
        log = None
        if self.settings.server_log is not None:
            self.settings.server_log.mkdir(parents=True, exist_ok=True)
            log = self.settings.server_log / "cluster-redis.log"
        redis = await startRedis(self.reactor, binary, log, 30.0)
        client = redis.client()
        try:
            server = client.info("server")
        finally:
            client.close()
        seen: dict[str, Any] = {
            "version": server.get("redis_version"),
            "port": redis.port,
            "command": redis.command,
        }
        say(f"--- redis-server {seen['version']} on 127.0.0.1:{redis.port} (pid {redis.pid}), "
            "--save '' --appendonly no: every node's Redis, one database per cluster")
        report = []
        try:
            for workload in workloads:
                if workload.kind == "openloop":
                    results = await self.clusterOpenLoop(workload, redis)
                else:
                    results = await self.clusterClosedLoop(workload, redis)
                report.append({"workload": asdict(workload), "name": workload.name, "results": results})
        finally:
            seen["stop"] = await stopServer(redis, 5.0)
            seen["log_tail"] = redis.tail
        return report, seen


def kneeWindow(steps: list[dict[str, Any]]) -> int:
    """
    The window to sustain: the smallest whose step came within L{KNEE} of the best one. Larger
    windows only add lines in flight, and with them queueing, and in some servers instability
    (a window that flies for a second can sink once buffers fill).
    """
    drained = [step for step in steps if step["drained"]]
    peak = max(step["deliveries_per_s"] for step in drained)
    return min(int(step["window"]) for step in drained if step["deliveries_per_s"] >= KNEE * peak)


def cpuPercent(before: float | None, after: float | None, wall: float) -> float | None:
    """CPU use between two readings as a percentage of one CPU over C{wall} seconds."""
    if before is None or after is None or wall <= 0:
        return None
    return round(100 * (after - before) / wall, 1)


def healthy(workload: Workload, results: dict[str, Any]) -> bool:
    """Whether a run completed correctly: nothing aborted, lost, duplicated, reordered or wrong."""
    if results["aborted"] is not None or results.get("errors"):
        return False
    if workload.kind in ("openloop", "closedloop"):
        return (
            results.get("lost") == 0
            and results.get("duplicated") == 0
            and results.get("reordered") == 0
        )
    return True


def summaryLine(workload: Workload, results: dict[str, Any]) -> str:
    """One line on how a run went."""
    if results["aborted"] is not None:
        return "aborted"
    if workload.kind in ("openloop", "closedloop"):
        return (
            f"{results['deliveries_per_s']:,.0f} deliveries/s, lost {results['lost']}, "
            f"duplicated {results['duplicated']}, reordered {results['reordered']}, "
            f"errors {results['errors']}"
        )
    if workload.kind == "idle":
        return (
            f"connected all in {results['connect_seconds']} s, "
            f"{results['rss_per_connection_kb']} KB per connection"
        )
    return (
        f"every join notice in {results['join_seconds']} s "
        f"({results['joins_seen']} of {results['joins_expected']})"
    )


# The report


Row = tuple[str, Callable[[dict[str, Any]], Any], str]
"""A table row: its label, how to get its figure from a run's results, and its format."""


def figure(*path: str) -> Callable[[dict[str, Any]], Any]:
    """Get the figure at C{path} in a run's results, or None."""

    def get(results: dict[str, Any]) -> Any:
        value: Any = results
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    return get


def losses(results: dict[str, Any]) -> str | None:
    """Lost / duplicated / reordered, as one cell."""
    if "lost" not in results:
        return None
    return f"{results['lost']}/{results['duplicated']}/{results['reordered']}"


def generatorCell(results: dict[str, Any]) -> str | None:
    """
    The generator's CPU use, and in brackets the time it waited for its CPU, marked SATURATED
    when the two together fill its CPU: then it may be what limited the figures.
    """
    used = results.get("generator_cpu_percent")
    if used is None:
        return None
    waited = results.get("generator_wait_percent") or 0.0
    text = f"{used:g}" + (f" (+{waited:g})" if waited >= 1 else "")
    return text + (" SATURATED" if generatorSaturated(results) else "")


def generatorSaturated(results: dict[str, Any]) -> bool:
    """Whether the generator used, or wanted, nearly all of its CPU in a phase."""
    used = results.get("generator_cpu_percent") or 0.0
    waited = results.get("generator_wait_percent") or 0.0
    return bool(used + waited >= SATURATED)


def otherLoad(results: dict[str, Any]) -> str | None:
    """
    How busy the server's and the generator's CPUs were with anything else (other processes,
    the kernel's own work), in % of each: high figures mean a noisy machine.
    """
    parts = []
    for role in ("server", "generator"):
        busy = results.get(f"{role}_cpu_busy_percent")
        used = results.get(f"{role}_cpu_percent")
        if busy is None or used is None:
            return None
        parts.append(f"{max(0.0, busy - used):.0f}")
    return "/".join(parts)


NO_RATIO = {"at window (lines per sender)", "Redis subscribers of each message"}
"""Rows whose figures are settings found, not measures: no ratio."""


def rowsFor(workload: Workload) -> list[Row]:
    """The table rows of a workload."""
    if workload.kind == "openloop":
        return [
            ("offered deliveries/s", figure("offered_deliveries_per_s"), ",.0f"),
            ("deliveries/s", figure("deliveries_per_s"), ",.0f"),
            ("latency p50 ms", figure("latency_ms", "p50"), ".2f"),
            ("latency p99 ms", figure("latency_ms", "p99"), ".2f"),
            ("latency max ms", figure("latency_ms", "max"), ".2f"),
            ("lost/duplicated/reordered", losses, "s"),
            ("server CPU %", figure("server_cpu_percent"), ".0f"),
            ("generator CPU % (+waiting)", generatorCell, "s"),
            ("other load on CPUs % (server/gen)", otherLoad, "s"),
        ]
    if workload.kind == "closedloop":
        return [
            ("peak deliveries/s, nothing lost", figure("deliveries_per_s"), ",.0f"),
            ("at window (lines per sender)", figure("window"), "d"),
            ("best ramp step deliveries/s", figure("best_step_deliveries_per_s"), ",.0f"),
            ("latency p50 ms (sampled)", figure("latency_ms", "p50"), ".2f"),
            ("lost/duplicated/reordered", losses, "s"),
            ("server CPU %", figure("server_cpu_percent"), ".0f"),
            ("generator CPU % (+waiting)", generatorCell, "s"),
            ("other load on CPUs % (server/gen)", otherLoad, "s"),
        ]
    if workload.kind == "idle":
        return [
            ("time to connect all s", figure("connect_seconds"), ".2f"),
            ("server RSS before KB", figure("server_rss_kb_before"), ",d"),
            ("server RSS after KB", figure("server_rss_kb_after"), ",d"),
            ("server RSS per connection KB", figure("rss_per_connection_kb"), ".1f"),
            ("server CPU % while connecting", figure("server_cpu_percent"), ".0f"),
            ("generator CPU % (+waiting)", generatorCell, "s"),
            ("other load on CPUs % (server/gen)", otherLoad, "s"),
        ]
    return [
        ("time until every join notice s", figure("join_seconds"), ".2f"),
        ("time until all handshakes s", figure("handshake_seconds"), ".2f"),
        ("join notices seen", figure("joins_seen"), ",d"),
        ("join notices expected", figure("joins_expected"), ",d"),
        ("other notices seen", figure("other_notices"), ",d"),
        ("server CPU %", figure("server_cpu_percent"), ".0f"),
        ("generator CPU % (+waiting)", generatorCell, "s"),
        ("other load on CPUs % (server/gen)", otherLoad, "s"),
    ]


def cell(value: Any, form: str) -> str:
    """One figure as text."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or form == "s":
        return str(value)
    try:
        return format(value, form)
    except (ValueError, TypeError):
        return str(value)


def ratio(chatsvc: Any, relay: Any) -> float | None:
    """chatsvc's figure over the relay's, when both are positive numbers."""
    if isinstance(chatsvc, bool) or isinstance(relay, bool):
        return None
    if isinstance(chatsvc, (int, float)) and isinstance(relay, (int, float)) and relay > 0:
        return round(chatsvc / relay, 3)
    return None


def table(report: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The comparison table as text, and its rows as data."""
    present = [t for t in TARGETS if any(t in entry["results"] for entry in report)]
    ratios = [(a, b) for a, b in RATIOS if a in present and b in present]
    header = ("workload / figure", *present, *(f"{a}/{b}" for a, b in ratios))
    lines: list[tuple[str, ...]] = []
    rows: list[dict[str, Any]] = []
    for entry in report:
        workload = Workload(**entry["workload"])
        runs = entry["results"]
        lines.append((workload.name, *("" for _ in header[1:])))
        for label, get, form in rowsFor(workload):
            values = {target: get(runs[target]) if target in runs else None for target in present}
            if any(runs.get(target, {}).get("aborted") for target in present):
                values = {
                    target: ("ABORTED" if runs.get(target, {}).get("aborted") else value)
                    for target, value in values.items()
                }
            shares = {
                f"{a}/{b}": ratio(values[a], values[b]) if label not in NO_RATIO else None
                for a, b in ratios
            }
            lines.append((
                f"  {label}",
                *(cell(values[target], form) if target in runs else "-" for target in present),
                *("" if share is None else f"{share:.3f}" for share in shares.values()),
            ))
            rows.append({
                "workload": workload.name, "figure": label, **values,
                # chatsvc/relay is "ratio", as it has always been; any other under its name.
                **{"ratio" if name == "chatsvc/relay" else name: share for name, share in shares.items()},
            })
    return alignedTable(header, lines), rows


def alignedTable(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    """C{header} and C{lines} as columns: the first left-aligned, the others right-aligned,
    a rule under the header."""
    widths = [max(len(line[column]) for line in [header, *lines]) for column in range(len(header))]
    text = [
        "  ".join(
            part.ljust(widths[column]) if column == 0 else part.rjust(widths[column])
            for column, part in enumerate(line)
        )
        for line in [header, *lines]
    ]
    text.insert(1, "-" * len(text[0]))
    return "\n".join(text)


def ircTargets(report: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    The IRC door's targets (see the module's docstring), for each IRC workload of C{report} run
    at the size its target is set at: what it is, the figure, and whether it was met.
    """
    checked = []
    for entry in report:
        workload = Workload(**entry["workload"])
        runs = entry["results"]
        irc, line = runs.get("irc"), runs.get("line")
        if workload.door != "irc" or irc is None or irc["aborted"] is not None:
            continue
        value: Any
        if workload.kind == "closedloop" and workload.clients == 100:
            if line is None or line["aborted"] is not None:
                continue
            goal = "peak deliveries/s at least 0.8x the line door's (irc/line)"
            value = ratio(irc.get("deliveries_per_s"), line.get("deliveries_per_s"))
            met = value is not None and value >= 0.8
        elif (
            workload.kind == "openloop" and workload.clients == 100
            and workload.senders == 100 and workload.rate == 5
        ):
            goal = "latency p99 at most 5 ms (ms)"
            value = irc["latency_ms"]["p99"]
            met = value <= 5.0
        elif workload.kind == "idle" and workload.clients == 2000:
            goal = "at most 6 KB of server RSS per idle member (KB)"
            value = irc["rss_per_connection_kb"]
            met = value is not None and value <= 6.0
        elif workload.kind == "joinstorm" and workload.clients == 5000:
            goal = "every join notice within 10 s (s)"
            value = irc["join_seconds"]
            met = bool(irc["joins_complete"]) and value <= 10.0
        else:
            continue
        checked.append({"workload": workload.name, "target": goal, "value": value, "met": met})
    return checked


CLUSTER_TARGETS = tuple(name for name, _, _ in CLUSTER_CONFIGS)


def eachNode(*path: str, form: str = ".1f") -> Callable[[dict[str, Any]], Any]:
    """A cluster's figure C{path} of each of its nodes, as one cell (C{one-a 12.3})."""

    def get(results: dict[str, Any]) -> Any:
        nodes = figure("cluster", "nodes")(results)
        if not nodes:
            return None
        return ", ".join(
            f"{node['name']} {cell(figure(*path)(node), form)}" for node in nodes
        )

    return get


def machineLoad(results: dict[str, Any]) -> str | None:
    """How busy the machine's CPUs were in all over a cluster's windows, and how much was stolen."""
    busy = figure("cluster", "machine_busy_percent")(results)
    steal = figure("cluster", "machine_steal_percent")(results)
    if busy is None:
        return None
    return f"{busy:g} ({steal:g})"


def clusterRows(workload: Workload) -> list[Row]:
    """The table rows of the cluster workload's open or closed loop."""
    costs: list[Row] = [
        ("node CPU us per delivery, all nodes", figure("cluster", "cpu_us_per_delivery"), ".2f"),
        ("  each node", eachNode("cpu_us_per_delivery", form=".2f"), "s"),
        ("node CPU % of a core, each node", eachNode("cpu_percent", form=".0f"), "s"),
        ("deliveries by the nodes (/metrics)", figure("cluster", "deliveries"), ",d"),
        ("messages published to Redis", figure("cluster", "published"), ",d"),
        ("Redis subscribers of each message", figure("subscribers"), "d"),
        ("Redis CPU us per published message", figure("cluster", "redis_cpu_us_per_message"), ".2f"),
        ("  by Redis' own count (INFO cpu)", figure("cluster", "redis_own_cpu_us_per_message"), ".2f"),
        ("Redis CPU % of a core", figure("cluster", "redis_cpu_percent"), ".1f"),
        ("generator CPU % (+waiting)", generatorCell, "s"),
        ("all CPUs busy % (stolen %)", machineLoad, "s"),
    ]
    if workload.kind == "openloop":
        return [
            ("offered deliveries/s", figure("offered_deliveries_per_s"), ",.0f"),
            ("deliveries/s", figure("deliveries_per_s"), ",.0f"),
            ("latency p50 ms", figure("latency_ms", "p50"), ".2f"),
            ("latency p99 ms", figure("latency_ms", "p99"), ".2f"),
            ("latency max ms", figure("latency_ms", "max"), ".2f"),
            ("lost/duplicated/reordered", losses, "s"),
            ("lag between nodes, mean ms (/metrics)", figure("cluster", "lag_mean_ms"), ".2f"),
            *costs,
        ]
    return [
        ("peak deliveries/s, nothing lost", figure("deliveries_per_s"), ",.0f"),
        ("at window (lines per sender)", figure("window"), "d"),
        ("best ramp step deliveries/s", figure("best_step_deliveries_per_s"), ",.0f"),
        ("lost/duplicated/reordered", losses, "s"),
        ("lag between nodes, mean ms (/metrics)", figure("cluster", "lag_mean_ms"), ".2f"),
        *costs,
        (
            "Redis us/message, its own subscriber",
            figure("subscriber_cost", "alone", "redis_cpu_us_per_message"), ".2f",
        ),
        (
            f"  with {CLUSTER_LISTENERS} passive subscribers more",
            figure("subscriber_cost", "with", "redis_cpu_us_per_message"), ".2f",
        ),
        (
            "  Redis us per extra subscriber",
            figure("subscriber_cost", "redis_us_per_extra_subscriber"), ".2f",
        ),
        (
            "    by Redis' own count (INFO cpu)",
            figure("subscriber_cost", "redis_own_us_per_extra_subscriber"), ".2f",
        ),
    ]


def clusterTable(report: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The cluster workload's table (one node, two nodes, two/one) as text, and its rows."""
    header = ("cluster workload / figure", "one node", "two nodes", "two/one")
    lines: list[tuple[str, ...]] = []
    rows: list[dict[str, Any]] = []
    for entry in report:
        workload = Workload(**entry["workload"])
        runs = entry["results"]
        lines.append((workload.name, "", "", ""))
        for label, get, form in clusterRows(workload):
            values = {
                target: (
                    "ABORTED" if runs.get(target, {}).get("aborted")
                    else get(runs[target]) if target in runs else None
                )
                for target in CLUSTER_TARGETS
            }
            share = None if label in NO_RATIO else ratio(values["two_nodes"], values["one_node"])
            lines.append((
                f"  {label}",
                *(cell(values[target], form) for target in CLUSTER_TARGETS),
                "" if share is None else f"{share:.3f}",
            ))
            rows.append({"workload": workload.name, "figure": label, **values, "two/one": share})
    return alignedTable(header, lines), rows


def clusterTargets(report: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cluster workload's targets, met or missed (a miss is said, not a failure)."""
    checked = []
    for entry in report:
        workload = Workload(**entry["workload"])
        for target, results in entry["results"].items():
            if results["aborted"] is not None or workload.kind not in ("openloop", "closedloop"):
                continue
            value = losses(results)
            checked.append({
                "workload": workload.name, "cluster": target,
                "target": "nothing lost, duplicated or reordered (lost/duplicated/reordered)",
                "value": value, "met": value == "0/0/0",
            })
            if workload.kind == "openloop" and target == "two_nodes":
                p99 = results["latency_ms"]["p99"]
                checked.append({
                    "workload": workload.name, "cluster": target,
                    "target": f"latency p99 at most {CLUSTER_P99_TARGET_MS:g} ms (ms)",
                    "value": p99, "met": p99 <= CLUSTER_P99_TARGET_MS,
                })
    return checked


def clusterCosts(report: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """
    The per-event costs measured by the workload C{kind} (C{openloop} or C{closedloop}): CPU
    seconds per delivery on the two-node cluster's nodes and on the one node, Redis' CPU
    seconds per published message on each cluster and the subscribers each message had; None
    if that workload did not measure them all.
    """
    for entry in report:
        if entry["workload"]["kind"] != kind:
            continue
        runs = entry["results"]
        try:
            one, two = runs["one_node"], runs["two_nodes"]
            figures = {
                "workload": entry["name"],
                "members": entry["workload"]["clients"],
                "node_seconds_per_delivery_one": one["cluster"]["cpu_seconds_per_delivery"],
                "node_seconds_per_delivery_two": two["cluster"]["cpu_seconds_per_delivery"],
                "redis_seconds_per_message_one": one["cluster"]["redis_cpu_seconds_per_message"],
                "redis_seconds_per_message_two": two["cluster"]["redis_cpu_seconds_per_message"],
                "subscribers_one": one["subscribers"],
                "subscribers_two": two["subscribers"],
            }
        except (KeyError, TypeError):
            return None
        if one["aborted"] or two["aborted"] or not all(figures.values()):
            return None  # a figure missing, or too small for the CPU clock's ticks (0)
        figures["how"] = f"{kind}, one node and two nodes" + (
            ", the same messages/s on both" if kind == "openloop" else ", each at its own peak"
        )
        return figures
    return None


def subscriberCosts(report: list[dict[str, Any]]) -> dict[str, Any] | None:
    """
    Redis' cost per published message with the one node's subscriber alone and with
    L{CLUSTER_LISTENERS} more (L{Bench.subscriberCost}), as L{clusterCosts} gives Redis'; None
    if it was not measured.
    """
    for entry in report:
        if entry["workload"]["kind"] != "closedloop":
            continue
        one = entry["results"].get("one_node")
        cost = None if one is None or one["aborted"] else one.get("subscriber_cost")
        if cost is None:
            return None
        alone = cost["alone"]["redis_cpu_seconds_per_message"]
        more = cost["with"]["redis_cpu_seconds_per_message"]
        if not alone or not more:
            return None
        return {
            "workload": entry["name"],
            "how": (
                f"closedloop, one node at its peak, its subscriber alone and with "
                f"{cost['extra_subscribers']} passive ones more, in turns"
            ),
            "redis_seconds_per_message_one": alone,
            "redis_seconds_per_message_two": more,
            "subscribers_one": cost["subscribers_alone"],
            "subscribers_two": cost["subscribers_with"],
        }
    return None


def clusterProjection(nodeCosts: dict[str, Any], redisCosts: dict[str, Any]) -> dict[str, Any]:
    """
    The capacity of larger clusters, from measured per-event costs (L{clusterCosts}: the
    nodes' from C{nodeCosts}, Redis' from C{redisCosts}), each node and Redis given a core of
    its own:

      - a node's fan-out: c CPU seconds per delivery to its own members (the two-node
        cluster's, which include applying the other node's messages), so a message of the
        room costs a node c * m, m its members;
      - Redis: r(S) = r0 + rs * S CPU seconds per published message, S its subscribers, fitted
        to the one-node and the two-node clusters' costs (S as measured: 1 and 2, every node
        subscribing to the events channel, the publisher too); S grows with the nodes;
      - a cluster of N nodes carries at most min(1 / (c * m), 1 / r(S(N))) messages a second
        in one room: its nodes' fan-out, or Redis' one core, whichever gives out first.

    Projected for a room of the measured size spread over N nodes (m = M / N), and for a room
    that grows with the cluster (L{CLUSTER_MEMBERS_ON_A_NODE} members a node), with where each
    stops growing.
    """
    c = float(nodeCosts["node_seconds_per_delivery_two"])
    r1 = float(redisCosts["redis_seconds_per_message_one"])
    r2 = float(redisCosts["redis_seconds_per_message_two"])
    s1 = float(redisCosts["subscribers_one"])
    s2 = float(redisCosts["subscribers_two"])
    members = int(nodeCosts["members"])
    notes = []
    perNode = float(nodeCosts["subscribers_two"]) / 2  # the two-node cluster's, per node
    rs = (r2 - r1) / (s2 - s1) if s2 != s1 else 0.0
    r0 = r1 - rs * s1
    if rs <= 0:
        notes.append(
            "Redis' cost per message did not grow from one subscriber to two in this run "
            "(within the noise): projected at the two-node cluster's, whatever the subscribers"
        )
        rs, r0 = 0.0, r2
    elif r0 < 0:
        notes.append(
            "Redis' fitted cost per message without subscribers came out below zero (noise): "
            "taken as 0, and all of the two-node cluster's cost as per subscriber"
        )
        r0, rs = 0.0, r2 / s2
    k = rs * perNode  # Redis' cost per message per node of the cluster

    def redis(nodes: int) -> float:
        return r0 + k * nodes

    rows = []
    for nodes in CLUSTER_PROJECTED:
        row: dict[str, Any] = {"nodes": nodes, "subscribers": round(perNode * nodes, 2)}
        redisBound = 1 / redis(nodes)
        row["redis_bound_messages_per_s"] = round(redisBound, 1)
        for scenario, onNode, room in (
            ("spread", members / nodes, members),
            ("grown", float(CLUSTER_MEMBERS_ON_A_NODE), CLUSTER_MEMBERS_ON_A_NODE * nodes),
        ):
            nodeBound = 1 / (c * onNode)
            messages = min(nodeBound, redisBound)
            row[scenario] = {
                "room_members": room,
                "members_per_node": round(onNode, 2),
                "node_bound_messages_per_s": round(nodeBound, 1),
                "messages_per_s": round(messages, 1),
                "deliveries_per_s": round(messages * (room - 1)),
                "limited_by": "nodes" if nodeBound <= redisBound else "Redis",
            }
        rows.append(row)
    # A room of M over N nodes: the nodes' bound N / (c M) grows, Redis' 1 / (r0 + k N) falls;
    # the room's capacity peaks where they meet, k N^2 + r0 N - c M = 0.
    if k > 0:
        spreadPeak = (-r0 + (r0 * r0 + 4 * k * c * members) ** 0.5) / (2 * k)
    else:
        spreadPeak = c * members / r0
    spreadMessages = spreadPeak / (c * members)
    # A room of m a node: the nodes' bound 1 / (c m) stays, Redis' falls: they meet at
    # N = (c m - r0) / k; past it the room's messages/s fall, its deliveries/s approach m / k.
    onNode = CLUSTER_MEMBERS_ON_A_NODE
    grownPeak = (c * onNode - r0) / k if k > 0 else None
    return {
        "node_costs_from": nodeCosts["workload"],
        "redis_costs_from": redisCosts["workload"],
        "node_costs": nodeCosts,
        "redis_costs": redisCosts,
        "node_us_per_delivery": round(c * 1e6, 3),
        "redis_us_per_message_without_subscribers": round(r0 * 1e6, 3),
        "redis_us_per_subscriber": round(rs * 1e6, 3),
        "subscribers_per_node": perNode,
        "members": members,
        "grown_members_per_node": onNode,
        "rows": rows,
        "spread_peak_nodes": round(spreadPeak, 1),
        "spread_peak_messages_per_s": round(spreadMessages, 1),
        "spread_peak_deliveries_per_s": round(spreadMessages * (members - 1)),
        "grown_redis_bound_from_nodes": None if grownPeak is None else round(grownPeak, 1),
        "grown_deliveries_per_s_limit": round(onNode / k) if k > 0 else None,
        "notes": notes,
    }


def projectionText(projection: dict[str, Any], cores: int | None) -> list[str]:
    """The projection as lines to print: the reasoning, the table, where it stops growing."""
    nodeCosts, redisCosts = projection["node_costs"], projection["redis_costs"]
    c = projection["node_us_per_delivery"]
    r0 = projection["redis_us_per_message_without_subscribers"]
    rs = projection["redis_us_per_subscriber"]
    members = projection["members"]
    onNode = projection["grown_members_per_node"]
    lines = [
        f"Projection (each node and Redis on a core of its own; here {cores or '?'} cores held them "
        "all and the generator):",
        f"  a node: c = {c:.2f} us of CPU per delivery to its own members (two nodes, "
        f"{projection['node_costs_from'].split(' ')[0]}; one node "
        f"{nodeCosts['node_seconds_per_delivery_one'] * 1e6:.2f}): a message costs a node c x m, "
        "m its members;",
        f"  Redis: {redisCosts['redis_seconds_per_message_one'] * 1e6:.2f} us per published message "
        f"with {redisCosts['subscribers_one']} subscriber(s), "
        f"{redisCosts['redis_seconds_per_message_two'] * 1e6:.2f} with "
        f"{redisCosts['subscribers_two']} ({redisCosts['how']}): r(S) = {r0:.2f} + {rs:.2f} x S us;"
        f" every node subscribes, the publisher too (it drops its own): S = "
        f"{projection['subscribers_per_node']:g} x N;",
        "  one room carries min(1 / (c x m), 1 / r(N)) messages/s: nodes' fan-out or Redis' core.",
    ]
    for note in projection["notes"]:
        lines.append(f"  NOTE: {note}")
    header = (
        "nodes", "Redis-bound msg/s", f"room {members}: m", "msg/s", "deliveries/s", "limit",
        f"{onNode} a node: room", "msg/s", "deliveries/s", "limit",
    )
    table = [header]
    for row in projection["rows"]:
        spread, grown = row["spread"], row["grown"]
        table.append((
            str(row["nodes"]), f"{row['redis_bound_messages_per_s']:,.0f}",
            f"{spread['members_per_node']:g}", f"{spread['messages_per_s']:,.0f}",
            f"{spread['deliveries_per_s']:,}", spread["limited_by"],
            str(grown["room_members"]), f"{grown['messages_per_s']:,.0f}",
            f"{grown['deliveries_per_s']:,}", grown["limited_by"],
        ))
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    for line in table:
        lines.append("    " + "  ".join(part.rjust(widths[column]) for column, part in enumerate(line)))
    lines.append(
        f"  Stops growing: a room of {members} gains from nodes (fewer members each) until Redis' "
        f"cost per message, growing with N, meets the nodes' falling one, at about "
        f"{projection['spread_peak_nodes']:g} nodes ({projection['spread_peak_messages_per_s']:,.0f} "
        f"msg/s, {projection['spread_peak_deliveries_per_s']:,} deliveries/s); past it, more nodes "
        "lower it."
    )
    bound, limit = projection["grown_redis_bound_from_nodes"], projection["grown_deliveries_per_s_limit"]
    if bound is not None and limit is not None:
        where = "from the first node" if bound <= 1 else f"from about {bound:g} nodes"
        lines.append(
            f"  With {onNode} members a node the room's msg/s hold until Redis saturates {where}; "
            f"then they fall as 1 / r(N), and its deliveries/s tend to {limit:,} at most."
        )
    lines.append(
        "  c includes each node's per-message work (decoding, dispatch), folded in at "
        f"{members / 2:g} members a node: with fewer (the spread room at 8, 16) the nodes' bound "
        "is optimistic."
    )
    return lines


def machine(bench: Bench) -> dict[str, Any]:
    """What the figures were measured on."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import twisted

    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": bench.cpusUsable,
        "cpu_model": model,
        "pinned": {"server": bench.serverCPU, "generator": bench.generatorCPU},
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "twisted": twisted.__version__,
        "platform": platform.platform(),
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


# The command line


def targetList(text: str) -> str:
    """The C{--target} argument, checked."""
    if text != "both" and (
        not text or any(target not in TARGETS for target in text.split(","))
    ):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give both, or a list of {', '.join(TARGETS)} separated by commas"
        )
    return text


class Settings(argparse.Namespace):
    """The command line."""

    workload: str
    target: str
    clients: int | None
    senders: int | None
    rate: float
    duration: float | None
    size: int
    window: int | None
    step: float
    timeout: float
    json: Path | None
    server_log: Path | None
    server_profile: Path | None
    pin: bool
    seed: int | None
    checked: int | None
    door: str


STANDARD_DURATION = 6.0
STANDARD_CLOSED_DURATION = 4.0


def standardSuite(settings: Settings) -> list[Workload]:
    """The standard suite: the sizes the project's figures are quoted at."""
    size = settings.size
    openSeconds = settings.duration or STANDARD_DURATION
    closedSeconds = settings.duration or STANDARD_CLOSED_DURATION
    return [
        Workload("openloop", 100, senders=100, rate=5, duration=openSeconds, size=size),
        Workload(
            "openloop", 500, senders=50, rate=10, duration=openSeconds, size=size,
            checked=settings.checked if settings.checked is not None else 100,
        ),
        Workload(
            "closedloop", 100, senders=100, duration=closedSeconds, size=size, step=settings.step
        ),
        Workload("idle", 2000, size=size),
        Workload("joinstorm", 5000, size=size),
    ]


def webSuite(settings: Settings) -> list[Workload]:
    """
    The web door's suite: open loop N=100 all sending 5 lines/s, closed loop N=100 all sending
    and idle C=2000, each against chatsvc's web door and the WebSocket relay; then the closed
    loop N=100 in a room of both doors' members, half each, against rooms of each door's alone.
    """
    size = settings.size
    openSeconds = settings.duration or STANDARD_DURATION
    closedSeconds = settings.duration or STANDARD_CLOSED_DURATION
    return [
        Workload("openloop", 100, senders=100, rate=5, duration=openSeconds, size=size, door="web"),
        Workload(
            "closedloop", 100, senders=100, duration=closedSeconds, size=size, step=settings.step,
            door="web",
        ),
        Workload("idle", 2000, size=size, door="web"),
        Workload(
            "closedloop", 100, senders=100, duration=closedSeconds, size=size, step=settings.step,
            door="mixed",
        ),
    ]


def ircSuite(settings: Settings) -> list[Workload]:
    """
    The IRC door's suite: open loop N=100 all sending 5 lines/s, closed loop N=100 all sending,
    idle C=2000 and the join storm C=5000, each with IRC clients against a room of as many line
    clients (the targets C{irc} and C{line}; the closed loop's two servers at once).
    """
    size = settings.size
    openSeconds = settings.duration or STANDARD_DURATION
    closedSeconds = settings.duration or STANDARD_CLOSED_DURATION
    return [
        Workload("openloop", 100, senders=100, rate=5, duration=openSeconds, size=size, door="irc"),
        Workload(
            "closedloop", 100, senders=100, duration=closedSeconds, size=size, step=settings.step,
            door="irc",
        ),
        Workload("idle", 2000, size=size, door="irc"),
        Workload("joinstorm", 5000, size=size, door="irc"),
    ]


DEFAULT_CLIENTS = {"openloop": 100, "closedloop": 100, "idle": 2000, "joinstorm": 5000}
CLUSTER_DURATION = 10.0
CLUSTER_CLOSED_DURATION = 5.0


def clusterSuite(settings: Settings) -> list[Workload]:
    """
    The cluster workload's two measures, each against a one-node and a two-node cluster: the
    open loop, N=100 all sending 5 lines/s (by default), and the closed loop, N=100 all sending.
    """
    clients = settings.clients or 100
    senders = min(settings.senders or clients, clients)
    return [
        Workload(
            "openloop", clients, senders=senders, rate=settings.rate,
            duration=settings.duration or CLUSTER_DURATION, size=settings.size,
        ),
        Workload(
            "closedloop", clients, senders=senders, duration=settings.duration or CLUSTER_CLOSED_DURATION,
            size=settings.size, window=settings.window, step=settings.step,
        ),
    ]


def workloadsFor(settings: Settings) -> list[Workload]:
    """The workloads the command line asks for."""
    if settings.workload == "standard":
        return standardSuite(settings)
    if settings.workload == "web":
        return webSuite(settings)
    if settings.workload == "irc":
        return ircSuite(settings)
    if settings.workload == "cluster":
        return clusterSuite(settings)
    clients = settings.clients or DEFAULT_CLIENTS[settings.workload]
    senders = min(settings.senders or clients, clients)
    return [
        Workload(
            settings.workload,
            clients,
            senders=senders if settings.workload in ("openloop", "closedloop") else 0,
            rate=settings.rate,
            duration=settings.duration or 10.0,
            size=settings.size,
            window=settings.window,
            step=settings.step,
            checked=settings.checked,
            door=settings.door,
        )
    ]


def parseArguments(argv: list[str]) -> Settings:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Fan-out benchmark: chatsvc and a reference relay under the same load.",
        epilog="Exit status 0 only if every run completed with nothing lost, duplicated or "
        "reordered and no error.",
    )
    parser.add_argument(
        "--workload", choices=[*WORKLOADS, "standard", "web", "irc", "cluster"], default="standard",
        help="what to run (default: the standard suite; web: the web door's suite; irc: the "
        "IRC door's; cluster: chatsvc as one node and as two nodes of a cluster on a Redis of "
        "its own, open and closed loop, with the CPU cost of each delivery and each message "
        "and a projection to larger clusters)",
    )
    parser.add_argument(
        "--door", choices=DOORS, default="line",
        help="how one workload's clients connect: line (TCP lines, the default), web (a "
        "WebSocket speaking JSON, against chatsvc's web door and benchmarks/wsrelay.py), "
        "mixed (one room, half of each, against chatsvc with a room of each door's alone), or "
        "irc (IRC clients in chatsvc's IRC door, against a room of line clients in the same run)",
    )
    parser.add_argument(
        "--target", type=targetList, default="both",
        help="which servers to measure, in the same run, with ratios: both (chatsvc and the "
        "relay, the default), or a comma-separated list of chatsvc, history (chatsvc storing "
        "history, as it does by default) and relay; with --door mixed, of mixed, line and web "
        "(chatsvc with a room of both doors, of the line door's alone, of the web door's alone: "
        "all three by default); with --door irc, of irc and line (both by default)",
    )
    parser.add_argument("--clients", type=int, help="N (or C): clients in the room")
    parser.add_argument("--senders", type=int, help="K: how many of them send (default all)")
    parser.add_argument("--rate", type=float, default=5.0, help="R: lines/s per open-loop sender")
    parser.add_argument(
        "--duration", type=float,
        help=f"D: seconds of load (default 10; standard: {STANDARD_DURATION:g} open loop, "
        f"{STANDARD_CLOSED_DURATION:g} for the closed loop's sustained run)",
    )
    parser.add_argument(
        "--size", type=int, default=80, help="bytes of text in a chat line (default 80)"
    )
    parser.add_argument(
        "--window", type=int, help="closed loop: measure this window only (default: a ramp)"
    )
    parser.add_argument(
        "--step", type=float, default=1.0, help="closed loop: seconds per ramp step (default 1)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0,
        help="seconds any one phase may take before the run is abandoned (default 120)",
    )
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument(
        "--server-log", type=Path, metavar="DIR", help="copy each server's output to a file here"
    )
    parser.add_argument(
        "--server-profile", type=Path, metavar="DIR",
        help="run each server under cProfile, its figures written to a file here as it exits "
        "(the figures measured are then the profiled servers', slower: for finding where the "
        "time goes, not for quoting)",
    )
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false",
        help="do not pin the server and the generator to separate CPUs",
    )
    parser.add_argument("--seed", type=int, help="seed for the open loop's send phases")
    parser.add_argument(
        "--checked", type=int, metavar="K",
        help="open loop: K receivers (the senders first, then others spread evenly over the "
        "room) check every line and its latency, the others count theirs (default: all check; "
        "standard suite: 100 of the 500)",
    )

    settings = parser.parse_args(argv, namespace=Settings())
    if settings.clients is not None and settings.clients < 2:
        parser.error("--clients must be at least 2")
    if settings.senders is not None and settings.senders < 1:
        parser.error("--senders must be at least 1")
    if settings.checked is not None and settings.checked < 1:
        parser.error("--checked must be at least 1")
    if not settings.rate > 0 or (settings.duration is not None and not settings.duration > 0):
        parser.error("--rate and --duration must be positive")
    if settings.size < MIN_SIZE:
        parser.error(f"--size must be at least {MIN_SIZE} (the sequence number and timestamp)")
    if settings.workload == "standard" and settings.door != "line":
        parser.error(
            "the standard suite is the line door's: use --workload web for the web door, "
            "--workload irc for the IRC door"
        )
    if (settings.door in ("web", "mixed") or settings.workload == "web") and (
        settings.size < WEB_MIN_SIZE
    ):
        parser.error(
            f"--size must be at least {WEB_MIN_SIZE} for the web door (the sequence number, "
            "timestamp and nickname)"
        )
    if (settings.door == "irc" or settings.workload == "irc") and settings.size > IRC_MAX_SIZE:
        parser.error(
            f"--size must be at most {IRC_MAX_SIZE} for the IRC door (a longer text would reach "
            "IRC clients cut in several PRIVMSGs, each within IRC's 512 bytes)"
        )
    if settings.workload == "cluster":
        if settings.door != "line" or settings.target != "both" or settings.checked is not None:
            parser.error(
                "the cluster workload has its own targets (a one-node and a two-node cluster) "
                "and line clients that all check every line: no --door, --target or --checked"
            )
        # Nodes, Redis and the generator are more processes than there are CPUs to pin to.
        settings.pin = False
    if settings.window is not None and settings.window < 1:
        parser.error("--window must be at least 1")
    if not settings.step > 0 or not settings.timeout > 0:
        parser.error("--step and --timeout must be positive")
    if settings.clients is not None and settings.clients > 9_999_999:
        parser.error("--clients: at most 9999999")
    return settings


def installReactor() -> IReactor:
    """The epoll reactor, installed before anything else asks for one."""
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    return cast(IReactor, reactor)


async def runSuite(bench: Bench, workloads: list[Workload], targets: list[str]) -> list[
    dict[str, Any]
]:
    """Every workload against every target, the relay first, each with a server of its own."""
    report = []
    for workload in workloads:
        chosen = targetsFor(workload, targets)
        if not chosen:
            say(f"--- {workload.name}: none of the targets asked for applies; skipped")
            continue
        if workload.kind == "closedloop":
            results = await bench.runClosedLoops(workload, chosen)
        else:
            results = {target: await bench.runOne(workload, target) for target in chosen}
        report.append({"workload": asdict(workload), "name": workload.name, "results": results})
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status."""
    settings = parseArguments(sys.argv[1:] if argv is None else argv)
    if settings.seed is not None:
        random.seed(settings.seed)
    workloads = workloadsFor(settings)
    targets = ["relay", "chatsvc"] if settings.target == "both" else settings.target.split(",")
    files = raiseFileLimit()
    needed = max(workload.clients for workload in workloads) + SPARE_FILES
    if files < needed:
        say(f"the open-files limit {files} is too low for {needed - SPARE_FILES} clients "
            "(raise the hard limit: ulimit -Hn)")
        return 1
    if settings.workload == "cluster":
        return clusterMain(settings, workloads)
    reactor = installReactor()
    bench = Bench(reactor, settings)
    if bench.generatorCPU is not None:
        os.sched_setaffinity(0, {bench.generatorCPU})
        say(f"servers pinned to CPU {bench.serverCPU}, the generator to CPU {bench.generatorCPU}")
    else:
        say("not pinned: fewer than two CPUs (or --no-pin); servers and generator share CPUs")
    started = time.monotonic()
    try:
        report = runUntilDone(reactor, lambda: runSuite(bench, workloads, targets))
    except Unfinished:
        return 1
    text, rows = table(report)
    print()
    print(text)
    goals = ircTargets(report)
    if goals:
        print()
        print("The IRC door's targets:")
        for goal in goals:
            print(f"  {'met   ' if goal['met'] else 'MISSED'}  {goal['workload']}: "
                  f"{goal['target']}: {goal['value']}")
    elapsed = time.monotonic() - started
    noisy: list[str] = []
    for entry in report:
        for target, results in entry["results"].items():
            if generatorSaturated(results):
                say(f"NOTE: {entry['name']} against {target}: the generator used (or waited "
                    "for) nearly all of its CPU, so it may be what limited these figures")
            other = otherLoad(results)
            if other is not None and max(float(part) for part in other.split("/")) >= 20:
                noisy.append(f"{entry['name']} ({target}: {other}%)")
            if results.get("errors"):
                say(f"{entry['name']} against {target}: {results['errors']} errors, first ones:")
                for line in results["error_lines"]:
                    say(f"  {line}")
            if results.get("other_notices"):
                say(f"{entry['name']} against {target}: {results['other_notices']} other "
                    f"notices, e.g. {results['other_notice_lines'][:3]}")
    if noisy:
        say("NOTE: other load took 20% or more of the server's or the generator's CPU (server/"
            "generator) in: " + "; ".join(noisy) + ". Absolute figures are lower for it; the "
            "ratios hold better.")
    say(f"total time {elapsed:.0f} s; " + ("some runs FAILED" if bench.failed else "all runs OK"))
    if settings.json is not None:
        document = {
            "machine": machine(bench),
            "command": [sys.executable, *sys.argv],
            "settings": {
                key: str(value) if isinstance(value, Path) else value
                for key, value in vars(settings).items()
            },
            "seconds": round(elapsed, 1),
            "passed": not bench.failed,
            "workloads": report,
            "table": rows,
            "irc_targets": goals,
        }
        settings.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        say(f"figures written to {settings.json}")
    return 1 if bench.failed else 0


def sharedCores() -> int | None:
    """How many CPUs this process may run on (the nodes, Redis and itself share them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def clusterMain(settings: Settings, workloads: list[Workload]) -> int:
    """Run the cluster workload (see the module's docstring); the exit status."""
    binary = redisBinary()
    if binary is None:
        say("the cluster workload needs redis-server (Debian's package redis-server; "
            "scripts/setup-redis installs it), and there is none on the PATH")
        return 1
    cores = sharedCores()
    reactor = installReactor()
    bench = Bench(reactor, settings)
    sharing = (
        f"nothing pinned: the nodes, Redis and the load generator share this machine's "
        f"{cores} cores, so each figure is measured with all of them competing for the CPUs"
    )
    say(sharing)
    started = time.monotonic()
    try:
        report, redis = runUntilDone(reactor, lambda: bench.runCluster(workloads, binary))
    except Unfinished:
        return 1
    text, rows = clusterTable(report)
    print()
    print(text)
    print()
    print(f"NOTE: {sharing}.")
    goals = clusterTargets(report)
    print()
    print("The cluster's targets:")
    for goal in goals:
        print(f"  {'met   ' if goal['met'] else 'MISSED'}  {goal['workload']} ({goal['cluster']}): "
              f"{goal['target']}: {goal['value']}")
    projections: dict[str, Any] = {}
    closed, opened = clusterCosts(report, "closedloop"), clusterCosts(report, "openloop")
    listened = subscriberCosts(report)
    # The nodes' cost at the peak (the closed loop); Redis' at the one node's peak with more
    # subscribers and without, so that what differs is only its subscribers (else the open
    # loop's, where both clusters publish as many messages a second).
    for name, nodeCosts, redisCosts in (
        ("chosen", closed or opened, listened or opened or closed),
        ("closedloop", closed, closed),
        ("openloop", opened, opened),
    ):
        if nodeCosts is not None and redisCosts is not None:
            projections[name] = clusterProjection(nodeCosts, redisCosts)
    print()
    if "chosen" in projections:
        for line in projectionText(projections["chosen"], cores):
            print(line)
        if closed is not None and opened is not None:
            print(
                "  (Redis' cost per message falls as its rate rises (more batched): "
                f"{opened['redis_seconds_per_message_one'] * 1e6:.1f} and "
                f"{opened['redis_seconds_per_message_two'] * 1e6:.1f} us in the open loops, "
                f"{closed['redis_seconds_per_message_one'] * 1e6:.1f} and "
                f"{closed['redis_seconds_per_message_two'] * 1e6:.1f} in the closed loops, one node "
                "and two, each at its own rate. Each regime alone: projection.openloop, "
                "projection.closedloop in the JSON.)"
            )
    else:
        print("No projection: some measure is missing (an aborted run, or too little CPU for the "
              "clock's ticks).")
    for entry in report:
        for target, results in entry["results"].items():
            if generatorSaturated(results):
                say(f"NOTE: {entry['name']} against {target}: the generator used (or waited "
                    "for) nearly all of a CPU, so it may be what limited these figures")
            if results.get("errors"):
                say(f"{entry['name']} against {target}: {results['errors']} errors, first ones:")
                for line in results["error_lines"]:
                    say(f"  {line}")
            if results.get("server_log_trouble"):
                say(f"{entry['name']} against {target}: {results['server_log_trouble']} lines of "
                    "trouble in the nodes' logs, first ones:")
                for line in results["server_log_trouble_lines"]:
                    say(f"  {line}")
            if results.get("other_notices"):
                say(f"{entry['name']} against {target}: {results['other_notices']} other "
                    f"notices, e.g. {results['other_notice_lines'][:3]}")
    elapsed = time.monotonic() - started
    say(f"total time {elapsed:.0f} s; " + ("some runs FAILED" if bench.failed else "all runs OK"))
    if settings.json is not None:
        document = {
            "machine": {**machine(bench), "shared_cores": cores, "pinned": None},
            "command": [sys.executable, *sys.argv],
            "settings": {
                key: str(value) if isinstance(value, Path) else value
                for key, value in vars(settings).items()
            },
            "seconds": round(elapsed, 1),
            "passed": not bench.failed,
            "workloads": report,
            "table": rows,
            "cluster": {
                "note": sharing,
                "redis": redis,
                "targets": goals,
                "projection": projections,
            },
        }
        settings.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        say(f"figures written to {settings.json}")
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
