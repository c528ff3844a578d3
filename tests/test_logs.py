"""
Tests for L{chatsvc.logs}: structlog events carried by Twisted's logging, and the JSON format.
"""

from __future__ import annotations

import io
import json

import structlog
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import Logger, LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.logs import formatJSONEvent, jsonObserverFactory, renderFields


class BridgeTests(SynchronousTestCase):
    """structlog events become Twisted log events."""

    def setUp(self) -> None:
        self.observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]  # any trial test case works
        )

    def test_levelsAndFields(self) -> None:
        """Each structlog level maps to Twisted's, with the fields kept and rendered safely."""
        log = structlog.get_logger("chatsvc.test")
        log.info("member_joined", nick="{evil}", members=2)
        log.warning("slow")
        log.debug("not shown at the default level")
        events = list(self.observer)
        self.assertEqual([e["log_level"] for e in events], [LogLevel.info, LogLevel.warn])
        joined = events[0]
        self.assertEqual(joined["log_namespace"], "chatsvc.test")
        self.assertEqual(
            joined["chatsvc_fields"], {"event": "member_joined", "nick": "{evil}", "members": 2}
        )
        from twisted.logger import formatEvent

        # Braces in a value are text, not a format string.
        self.assertEqual(formatEvent(joined), "member_joined nick='{evil}' members=2")

    def test_exception(self) -> None:
        """log.exception() carries the exception as a Failure, which trial reports."""
        log = structlog.get_logger("chatsvc.test")
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("it_broke")
        (event,) = self.observer
        self.assertEqual(event["log_level"], LogLevel.error)
        self.assertTrue(event["log_failure"].check(ZeroDivisionError))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_renderFields(self) -> None:
        """Fields render as name, then key=repr(value)."""
        self.assertEqual(
            renderFields({"event": "x", "peer": "1.2.3.4:5", "n": 3}), "x peer='1.2.3.4:5' n=3"
        )


class JSONTests(SynchronousTestCase):
    """The JSON log format."""

    def test_structlogEvent(self) -> None:
        """A structlog event becomes one JSON line with its fields at the top level."""
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]
        )
        structlog.get_logger("chatsvc.test").info("member_left", nick="Zoë", members=0)
        (event,) = observer
        line = formatJSONEvent(event)
        self.assertTrue(line.endswith("\n"))
        self.assertEqual(line.count("\n"), 1)
        record = json.loads(line)
        self.assertEqual(record["event"], "member_left")
        self.assertEqual(record["nick"], "Zoë")
        self.assertEqual(record["members"], 0)
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["namespace"], "chatsvc.test")
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")

    def test_twistedEvent(self) -> None:
        """An event from Twisted itself is formatted, and a failure becomes a traceback."""
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]
        )
        log = Logger(namespace="twisted.test")
        log.info("Port {port} closed", port=5051)
        try:
            raise ValueError("bad")
        except ValueError:
            log.failure("while {doing}", doing="testing")
        first, second = (json.loads(formatJSONEvent(e)) for e in observer)
        self.assertEqual(first["event"], "Port 5051 closed")
        self.assertEqual(second["level"], "critical")
        self.assertIn("ValueError: bad", second["traceback"])
        self.flushLoggedErrors(ValueError)

    def test_observerWritesFile(self) -> None:
        """The twistd observer for -l FILE writes JSON lines to that file."""
        path = self.mktemp()
        observer = jsonObserverFactory(path, nodaemon=True)()
        observer({"log_time": 0, "log_level": LogLevel.info, "log_namespace": "x",
                  "log_format": "hello {who}", "who": "world"})
        with open(path, encoding="utf-8") as log:
            self.assertEqual(json.loads(log.read())["event"], "hello world")

    def test_observerStdout(self) -> None:
        """With -n and no -l (or -l -), JSON goes to stdout."""
        import sys

        buffer = io.StringIO()
        self.patch(sys, "stdout", buffer)
        jsonObserverFactory(None, nodaemon=True)()(
            {"log_time": 0, "log_level": LogLevel.info, "log_format": "hi"}
        )
        jsonObserverFactory("-", nodaemon=False)()(
            {"log_time": 0, "log_level": LogLevel.info, "log_format": "there"}
        )
        self.assertEqual(
            [json.loads(line)["event"] for line in buffer.getvalue().splitlines()], ["hi", "there"]
        )
