"""
A real IRC client for end-to-end tests: WeeChat, headless (C{weechat-headless}), with no
terminal. Commands go in through WeeChat's fifo plugin; what WeeChat shows comes out through its
logger plugin, one file per buffer, read back by L{WeeChat.waitFor}. Skipped, saying why, when
WeeChat or its fifo plugin is missing; under C{CI=true}, failed instead (C{scripts/setup-irc}
installs both: the Debian packages C{weechat-headless} and C{weechat-plugins}).

Tested with WeeChat 3.8 (Debian 12's C{weechat-headless} and C{weechat-plugins} 3.8-1). The
option names for 4.0 and later (C{tls} for C{ssl}, C{anti_flood} for C{anti_flood_prio_*}) are
chosen by the version WeeChat reports, but were not tried.

How it runs:

  - C{weechat-headless --dir DIR --no-connect --no-script --plugins irc,logger,fifo
    --run-command ...}, in DIR, a fresh directory of the test's (L{SynchronousTestCase.mktemp});
    C{--dir} makes DIR WeeChat's config, data, cache and runtime directory at once, so no file
    of the user's (C{~/.config/weechat}, C{WEECHAT_HOME}) is read, and the defaults are written
    there afresh. Only the three plugins are loaded (no script manager, no relay, no spell
    checker, no xfer). stdin is C{/dev/null}; stdout and stderr (WeeChat writes a few terminal
    escapes there even headless) go to C{DIR/output.txt}. Stopped in the test's cleanup:
    SIGTERM (WeeChat quits cleanly, sending QUIT), then SIGKILL if it is still running.
  - The C{--run-command} commands (L{STARTUP}) run after the plugins are loaded and before the
    main loop, hence before anything read from the fifo. WeeChat evaluates them (C{${...}}) and
    splits them on C{;}, which is why only this module's own constants go there; everything
    that comes from a test (server names, hosts, passwords) goes through the fifo, where
    neither happens.

The file layout it relies on (WeeChat 3.8, with the options set here):

  - C{DIR/weechat_fifo_PID}: the fifo plugin's pipe (C{fifo.file.path}, by default
    C{${weechat_runtime_dir}/weechat_fifo_${info:pid}}), PID being weechat's process id. WeeChat
    opens it read-write and non-blocking, so it never sees an end of file, and a writer may
    open, write and close it for every command. Each line is C{BUFFER *TEXT}: TEXT is run in
    the buffer whose full name is BUFFER (C{core.weechat}, C{irc.server.NAME},
    C{irc.NAME.#channel}, C{irc.NAME.nick} for a private buffer) exactly as if typed there: a
    command if it starts with C{/}, else a message to send (C{//text} sends C{/text}). A line
    C{*TEXT} runs in the current buffer, which WeeChat changes on its own (a join switches to
    the channel), so L{command} always names a buffer. A buffer that does not exist only
    prints an error (C{fifo: buffer "..." not found}) in the core buffer.
  - C{DIR/logs/BUFFER.weechatlog}: the logger plugin's file for the buffer whose full name is
    BUFFER (C{logger.file.mask} C{$plugin.$name.weechatlog}, names kept as they are with
    C{logger.file.name_lower_case off}; a C{/} in a name would become C{_}). Created at the
    buffer's first line. Each line is C{TIME<tab>PREFIX<tab>MESSAGE}, TIME as
    C{%Y-%m-%d %H:%M:%S} (L{TIME_FORMAT}), PREFIX the nick for a message (with its mode
    character if it has one, as displayed: C{@bob}), C{-->}, C{<--} or C{--} for joins, parts and the network, empty for
    C{/print}; colours stripped. C{logger.file.flush_delay 0} writes every line at once
    (the default is 120 seconds).
  - C{DIR/weechat.log}: WeeChat's own log (configuration files read and written, crashes).
  - C{DIR/*.conf}: the configuration, written with the defaults at start (never saved at exit).

Nothing but the test's own servers is ever connected to: C{--no-connect}, C{autoconnect off},
a fresh C{irc.conf} (WeeChat 3.8 defines no server of its own), no script plugin (nothing
downloaded), no relay.

Gotchas:

  - C{weechat-headless} alone has no fifo plugin: that is in Debian's C{weechat-plugins},
    which it only recommends (and C{scripts/apt-common.sh} installs without recommends).
  - WeeChat 3.8 sends at most one message every 2 seconds to a server by default
    (C{anti_flood_prio_high} and C{_low}); L{addServer} sets both to 0, so that a test's lines
    go out at once.
  - IRC server buffers are merged with the core buffer by default
    (C{irc.look.server_buffer merge_with_core}); they are made independent here, which changes
    nothing of the logs (each buffer has its file either way) but keeps the display plain.
  - Values set with C{/set} are taken whole between double quotes (only the outer pair is
    removed), but WeeChat evaluates some options when it uses them, C{sasl_password} among
    them, so a value must not contain C{${}.
  - L{connect} knows that registration is done from the server's C{command} option (run on
    001), set by L{addServer} to a C{/print} of a marker; replacing it through C{options}
    leaves L{connect} nothing to wait for (pass C{wait=False}).
  - WeeChat's trusted authorities are global (C{weechat.network.gnutls_ca_user}): with C{ca},
    the last server added decides for all of one WeeChat's TLS servers.
  - If a server offers no C{sasl} capability while SASL is configured, WeeChat 3.8 shows
    C{SASL not supported} and, with C{sasl_fail disconnect}, disconnects.
  - Registration, as WeeChat 3.8 does it: C{CAP LS 302}, C{NICK}, C{USER}, then (after the
    server's C{CAP * LS}, even an empty one) C{CAP REQ} for what it wants among what is offered,
    C{AUTHENTICATE} for SASL, and C{CAP END} (seen only after the server's C{CAP * LS}
    answer, so a fake server that waits for C{CAP END} must answer C{CAP LS}).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.processes import TIMEOUT, environment

__all__ = ["WeeChat", "Line", "TIME_FORMAT", "fifoPlugin"]

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""How the log files write times (C{logger.file.time_format})."""

_T = TypeVar("_T")

POLL = 0.02
"""Seconds between two reads of the log files while waiting."""

STOP_TIMEOUT = 5.0
"""Seconds WeeChat may take to quit after SIGTERM before it is killed."""

PLUGINS = "irc,logger,fifo"

STARTUP = ";".join(
    [
        # The logs: every line written at once, with a time that can be parsed, one file per
        # buffer named by its full name, no old lines shown again in new buffers.
        "/set logger.file.auto_log on",
        "/set logger.file.flush_delay 0",
        f'/set logger.file.time_format "{TIME_FORMAT}"',
        '/set logger.file.mask "$plugin.$name.weechatlog"',
        "/set logger.file.name_lower_case off",
        "/set logger.file.color_lines off",
        "/set logger.file.info_lines off",
        "/set logger.look.backlog 0",
        "/set irc.look.server_buffer independent",
        # Never connect anywhere unless a test says so.
        "/set irc.server_default.autoconnect off",
        "/set irc.server_default.autoreconnect off",
        # Nothing written back into the directory at exit.
        "/set weechat.look.save_config_on_exit off",
        "/set weechat.look.save_layout_on_exit none",
        "/set weechat.plugin.save_config_on_unload off",
    ]
)
"""The C{--run-command} commands: this module's constants only (WeeChat evaluates them)."""

_REMOVED = ("WEECHAT_HOME", "WEECHAT_PASSPHRASE", "WEECHAT_EXTRA_LIBDIR")
"""Environment variables of the user's WeeChat that must not reach the test's."""


@dataclass(frozen=True)
class Line:
    """One line of a buffer, as the logger wrote it."""

    buffer: str
    time: datetime
    prefix: str
    message: str

    @property
    def text(self) -> str:
        """What L{WeeChat.waitFor} searches: C{PREFIX<tab>MESSAGE}."""
        return f"{self.prefix}\t{self.message}"


def fifoPlugin(weechat: str) -> Path | None:
    """
    The fifo plugin of the C{weechat-headless} at C{weechat}, or L{None}: in the C{lib}
    directory next to its C{bin} (Debian's C{/usr/lib/x86_64-linux-gnu/weechat/plugins}), where
    C{scripts/setup-irc} looks too.
    """
    for binary in (Path(weechat), Path(weechat).resolve()):
        prefix = binary.parent.parent
        for plugin in (*sorted(prefix.glob("lib/*/weechat/plugins/fifo.so")),
                       prefix / "lib" / "weechat" / "plugins" / "fifo.so"):
            if plugin.exists():
                return plugin
    return None


def _unavailable(test: SynchronousTestCase, reason: str) -> SkipTest:
    # What to raise when WeeChat cannot be had: a skip, but under CI=true a failure.
    if os.environ.get("CI") == "true":
        test.fail(f"{reason} (CI=true: required)")
    return SkipTest(reason)


class WeeChat:
    """One C{weechat-headless}, in a directory of C{test}'s, stopped after the test."""

    def __init__(self, test: SynchronousTestCase, timeout: float = TIMEOUT) -> None:
        weechat = shutil.which("weechat-headless")
        if weechat is None:
            raise _unavailable(test, "weechat-headless is not installed (scripts/setup-irc installs it)")
        if fifoPlugin(weechat) is None:
            raise _unavailable(
                test,
                f"WeeChat's fifo plugin is not installed next to {weechat} "
                "(scripts/setup-irc installs it, with the weechat-plugins package)",
            )
        self.test = test
        self.binary = weechat
        self.version = self._version()
        self.directory = Path(test.mktemp()).resolve()
        if ":" in str(self.directory):
            # --dir would take it for the list "config:data:cache:runtime".
            test.fail(f"WeeChat's directory may not contain ':': {self.directory}")
        self.directory.mkdir(parents=True)
        self.logs = self.directory / "logs"
        env = {
            **{name: value for name, value in environment().items() if name not in _REMOVED},
            "LC_ALL": "C.UTF-8",
        }
        self._output = (self.directory / "output.txt").open("wb")
        self.process = subprocess.Popen(
            [
                weechat,
                "--dir", str(self.directory),
                "--no-connect",
                "--no-script",
                "--plugins", PLUGINS,
                "--run-command", STARTUP,
            ],
            cwd=self.directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        test.addCleanup(self.stop)
        self.fifo = self.directory / f"weechat_fifo_{self.process.pid}"
        self._waitReady(timeout)

    def _version(self) -> tuple[int, ...]:
        finished = subprocess.run(
            [self.binary, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=TIMEOUT,
        )
        found = re.match(r"(\d+)\.(\d+)", finished.stdout.strip())
        if finished.returncode != 0 or found is None:
            self.test.fail(f"weechat-headless --version: {finished.stdout!r} {finished.stderr!r}")
        return tuple(int(part) for part in found.groups())

    def _waitReady(self, timeout: float) -> None:
        # The pipe appears while the plugins load; a line printed through it shows that the
        # startup commands ran (the fifo is read in the main loop only) and that the logs work.
        deadline = time.monotonic() + timeout
        while not self.fifo.exists():
            self._checkRunning()
            if time.monotonic() > deadline:
                self.test.fail(f"no fifo {self.fifo} after {timeout:g} s\n{self.report()}")
            time.sleep(POLL)
        token = uuid.uuid4().hex
        self.command(f"/print harness ready {token}", timeout=max(0.0, deadline - time.monotonic()))
        self.waitFor("core.weechat", f"harness ready {token}", timeout=max(0.0, deadline - time.monotonic()))

    # Commands

    def command(self, text: str, buffer: str = "core.weechat", timeout: float = TIMEOUT) -> None:
        """
        Run C{text} in C{buffer} (a full name: C{core.weechat}, C{irc.server.NAME},
        C{irc.NAME.#channel}), as if typed there: a command if it starts with C{/}, else a
        message. WeeChat runs it soon after, not before this returns; its output is to be waited
        for with L{waitFor}.
        """
        if "\n" in text or "\r" in text or "\n" in buffer or " *" in buffer:
            raise ValueError(f"cannot send through the fifo: {buffer!r} {text!r}")
        self._write(f"{buffer} *{text}\n".encode("utf-8"), timeout)

    def say(self, buffer: str, text: str) -> None:
        """Send C{text} as a message in C{buffer} (C{irc.NAME.#channel}), even if it starts with C{/}."""
        self.command("/" + text if text.startswith("/") else text, buffer)

    def set(self, option: str, value: str) -> None:
        """C{/set OPTION "VALUE"}."""
        self.command(f'/set {option} "{value}"')

    def addServer(
        self,
        name: str,
        host: str,
        port: int,
        nick: str,
        sasl: tuple[str, str] | None = None,
        tls: bool = False,
        capabilities: str = "*",
        ca: str | Path | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        """
        Add the server C{name} at C{host}:C{port}, for C{nick} (its nick, user name and real
        name), requesting the IRCv3 C{capabilities} (WeeChat's syntax: C{*} for all it knows,
        C{""} for none, C{*,!away-notify}).

        @param sasl: a user name and password to log in with SASL PLAIN; if SASL fails,
            WeeChat disconnects (C{sasl_fail disconnect}) rather than retry.
        @param tls: connect with TLS. The certificate is checked against C{ca} (a PEM file,
            made WeeChat's only authority with C{weechat.network.gnutls_ca_user}, the system's
            being left out), or not at all without C{ca}.
        @param options: more of the server's options (C{irc.server.NAME.OPTION}), set last.
        """
        major = self.version[0]
        tlsOption = "tls" if major >= 4 else "ssl"
        settings: dict[str, str] = {
            "nicks": nick,
            "username": nick,
            "realname": nick,
            "capabilities": capabilities,
            "autoconnect": "off",
            "autoreconnect": "off",
            "autojoin": "",
            "connection_timeout": str(int(TIMEOUT)),
            tlsOption: "on" if tls else "off",
            f"{tlsOption}_verify": "on" if tls and ca is not None else "off",
            # The marker L{connect} waits for, printed in the server buffer on 001.
            "command": "/print harness registered on $server as $nick",
        }
        if major >= 4:
            settings["anti_flood"] = "0"
        else:
            settings["anti_flood_prio_high"] = "0"
            settings["anti_flood_prio_low"] = "0"
        if sasl is not None:
            settings.update(
                sasl_mechanism="plain", sasl_username=sasl[0], sasl_password=sasl[1],
                sasl_fail="disconnect", sasl_timeout=str(int(TIMEOUT)),
            )
        settings.update(options or {})
        if tls and ca is not None:
            self.set("weechat.network.gnutls_ca_system", "off")
            self.set("weechat.network.gnutls_ca_user", str(Path(ca).resolve()))
        self.command(f"/server add {name} {host}/{port}")
        for option, value in settings.items():
            self.set(f"irc.server.{name}.{option}", value)

    def connect(self, name: str, wait: bool = True, timeout: float = TIMEOUT) -> None:
        """
        C{/connect NAME}; unless not C{wait}, wait until registered (the server's 001), which
        the server buffer shows as C{harness registered on NAME as NICK}. Fails the test at
        once if WeeChat shows an error of its own first (C{=!= irc: connection refused},
        C{irc: TLS handshake failed}) or is disconnected (SASL failed, closed by the server).
        """
        buffer = f"irc.server.{name}"
        registered = rf"^\tharness registered on {re.escape(name)} as "
        # WeeChat's own errors (refused, no such host, TLS handshake failed, timeout) and a
        # disconnection (SASL failed, closed by the server).
        disconnected = r"^(--\tirc: disconnected from server|=!=\tirc: )"
        seen = len(self.matching(buffer, registered)), len(self.matching(buffer, disconnected))
        self.command(f"/connect {name}")
        if not wait:
            return

        def check() -> bool | None:
            if len(self.matching(buffer, disconnected)) > seen[1]:
                self.test.fail(f"WeeChat failed to connect to {name} (no 001)\n{self.report(buffer)}")
            return True if len(self.matching(buffer, registered)) > seen[0] else None

        self._until(check, f"no 001 from {name}", buffer, timeout)

    # What WeeChat shows

    def buffers(self) -> list[str]:
        """The full names of the buffers that have a log file (that have shown a line)."""
        suffix = ".weechatlog"
        if not self.logs.is_dir():
            return []
        return sorted(path.name[: -len(suffix)] for path in self.logs.glob(f"*{suffix}"))

    def lines(self, buffer: str) -> list[Line]:
        """
        Every whole line logged so far in the buffers C{buffer} names: one full name, or a glob
        pattern over full names if it has C{*} or C{?} (C{irc.local.*}).
        """
        if "*" in buffer or "?" in buffer:
            names = [name for name in self.buffers() if fnmatch.fnmatchcase(name, buffer)]
        else:
            names = [buffer]
        found: list[Line] = []
        for name in names:
            path = self.logs / f"{name.replace('/', '_')}.weechatlog"
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            # A line still being written has no end yet.
            for raw in data.decode("utf-8", "replace").split("\n")[:-1]:
                parts = raw.split("\t", 2)
                if len(parts) != 3:
                    continue
                try:
                    when = datetime.strptime(parts[0], TIME_FORMAT)
                except ValueError:
                    continue
                found.append(Line(name, when, parts[1], parts[2]))
        return found

    def matching(self, buffer: str, pattern: str) -> list[Line]:
        """The lines of L{lines} whose C{PREFIX<tab>MESSAGE} the regular expression C{pattern} matches (searched)."""
        compiled = re.compile(pattern)
        return [line for line in self.lines(buffer) if compiled.search(line.text)]

    def waitFor(self, buffer: str, pattern: str, timeout: float = TIMEOUT, count: int = 1) -> Line:
        """
        Poll the logs of C{buffer} (as in L{lines}) until C{count} lines match C{pattern} (as in
        L{matching}); the C{count}-th. Fails the test, showing what was logged, if C{timeout}
        seconds pass first or WeeChat exits.
        """
        def check() -> Line | None:
            found = self.matching(buffer, pattern)
            return found[count - 1] if len(found) >= count else None

        return self._until(check, f"no {pattern!r} (x{count}) in {buffer}", buffer, timeout)

    def _until(self, check: Callable[[], _T | None], what: str, buffer: str, timeout: float) -> _T:
        # Poll check until it gives something, WeeChat exits, or the deadline passes.
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found is not None:
                return found
            self._checkRunning()
            if time.monotonic() > deadline:
                self.test.fail(f"{what} after {timeout:g} s\n{self.report(buffer)}")
            time.sleep(POLL)

    def report(self, buffer: str | None = None) -> str:
        """What was logged: C{buffer}'s lines (all buffers' if L{None}), then the core buffer's."""
        parts = [f"WeeChat {'.'.join(map(str, self.version))} in {self.directory}; logs of: {', '.join(self.buffers()) or 'none'}"]
        for shown in dict.fromkeys([buffer or "*", "core.weechat"]):
            lines = self.lines(shown)
            parts.append(f"--- {shown} ({len(lines)} lines)")
            parts.extend(f"{line.buffer}\t{line.text}" for line in lines[-200:])
        return "\n".join(parts)

    # The process

    def _checkRunning(self) -> None:
        code = self.process.poll()
        if code is not None:
            output = (self.directory / "output.txt").read_bytes().decode("utf-8", "replace")
            self.test.fail(f"weechat-headless exited with status {code}:\n{output[-4000:]}\n{self.report()}")

    def _write(self, data: bytes, timeout: float) -> None:
        # Non-blocking: an open with no reader, or a write to a full pipe, fails at once instead
        # of hanging, and is tried again until the deadline.
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                if error.errno not in (errno.ENXIO, errno.ENOENT):
                    raise
            else:
                try:
                    while data:
                        try:
                            data = data[os.write(fd, data):]
                        except BlockingIOError:
                            self._checkDeadline(deadline, timeout)
                            time.sleep(POLL)
                    return
                finally:
                    os.close(fd)
            self._checkRunning()
            self._checkDeadline(deadline, timeout)
            time.sleep(POLL)

    def _checkDeadline(self, deadline: float, timeout: float) -> None:
        if time.monotonic() > deadline:
            self.test.fail(f"could not write to WeeChat's fifo {self.fifo} in {timeout:g} s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if WeeChat is still running after L{STOP_TIMEOUT} (for cleanups)."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(TIMEOUT)
        finally:
            self._output.close()
