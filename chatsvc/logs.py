"""
Logging: structlog for the application's events, carried by Twisted's logging system.

Every structlog event becomes one C{twisted.logger} event, so it goes wherever twistd sends logs
(C{-l FILE}, stdout with C{-n}, C{--logger}), keeps its level, and is seen by trial and by
L{twisted.logger} observers in tests. Two formats:

  - C{console}: twistd's own text lines, with the event written as C{name key=value ...};
  - C{json}: one JSON object per line, the structlog fields at the top level, for log shippers.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, MutableMapping
from datetime import datetime, timezone
from typing import IO, Any

import structlog
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    formatEvent,
)
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile

__all__ = [
    "LOG_FORMATS",
    "configureLogging",
    "formatJSONEvent",
    "jsonFileLogObserver",
    "renderFields",
]

LOG_FORMATS = ("console", "json")

_TEXT_KEY = "chatsvc_text"
_FIELDS_KEY = "chatsvc_fields"


def renderFields(fields: MutableMapping[str, Any]) -> str:
    """
    Render a structlog event as one readable line: its name, then C{key=value} pairs
    (strings quoted with C{repr}, so a nickname with odd characters cannot forge a field).
    """
    parts = [str(fields.get("event", ""))]
    parts.extend(f"{key}={value!r}" for key, value in fields.items() if key != "event")
    return " ".join(parts)


class _TwistedLogger:
    """
    The object structlog writes to: one method per level, each emitting a Twisted log event.

    The rendered text travels as a field referenced from a constant format string, never as the
    format string itself, whose braces Twisted would try to interpret.
    """

    def __init__(self, namespace: str) -> None:
        self._logger = Logger(namespace=namespace)

    def _emit(self, level: LogLevel, fields: MutableMapping[str, Any]) -> None:
        failure = None
        excInfo = fields.pop("exc_info", None)
        if isinstance(excInfo, BaseException):
            failure = Failure(excInfo, type(excInfo), excInfo.__traceback__)
        elif excInfo:
            failure = Failure()
        extra: dict[str, Any] = {_TEXT_KEY: renderFields(fields), _FIELDS_KEY: dict(fields)}
        if failure is not None:
            extra["log_failure"] = failure
        self._logger.emit(level, "{" + _TEXT_KEY + "}", **extra)

    def debug(self, fields: MutableMapping[str, Any]) -> None:
        self._emit(LogLevel.debug, fields)

    def info(self, fields: MutableMapping[str, Any]) -> None:
        self._emit(LogLevel.info, fields)

    def warning(self, fields: MutableMapping[str, Any]) -> None:
        self._emit(LogLevel.warn, fields)

    def error(self, fields: MutableMapping[str, Any]) -> None:
        self._emit(LogLevel.error, fields)

    def critical(self, fields: MutableMapping[str, Any]) -> None:
        self._emit(LogLevel.critical, fields)

    msg = info
    exception = error
    fatal = critical


def _loggerFactory(*args: Any) -> _TwistedLogger:
    namespace = str(args[0]) if args and args[0] else "chatsvc"
    return _TwistedLogger(namespace)


def _toTwisted(
    logger: object, methodName: str, fields: MutableMapping[str, Any]
) -> tuple[tuple[MutableMapping[str, Any]], dict[str, Any]]:
    # The last processor: hand the whole event to _TwistedLogger, which renders it.
    return (fields,), {}


def configureLogging(level: int = logging.INFO) -> None:
    """
    Route structlog through Twisted's logging. Events below C{level} are dropped before any
    processing, so debug calls on a hot path cost almost nothing.
    """
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, _toTwisted],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_loggerFactory,
        cache_logger_on_first_use=True,
    )


def formatJSONEvent(event: LogEvent) -> str:
    """
    Format one Twisted log event as a line of JSON: C{time}, C{level}, C{namespace}, then the
    structlog fields (or, for events from Twisted itself, C{event} with the formatted text), and
    C{traceback} when the event carries a failure.
    """
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0), timezone.utc).isoformat(),
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", "-"),
    }
    fields = event.get(_FIELDS_KEY)
    if fields is not None:
        record.update(fields)
    else:
        record["event"] = formatEvent(event)
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        record["traceback"] = failure.getTraceback()
    return json.dumps(record, default=str, ensure_ascii=False) + "\n"


def jsonFileLogObserver(outFile: IO[str]) -> ILogObserver:
    """A log observer writing one JSON object per line to C{outFile}."""
    return FileLogObserver(outFile, formatJSONEvent)


def jsonObserverFactory(
    logfile: str | None, nodaemon: bool
) -> Callable[[], ILogObserver]:
    """
    The JSON observer for twistd, writing where twistd itself would have written: the C{-l} file
    (C{-} for stdout), else stdout with C{-n}, else C{twistd.log}.
    """

    def makeObserver() -> ILogObserver:
        path = logfile or (None if nodaemon else "twistd.log")
        if path is None or path == "-":
            return jsonFileLogObserver(sys.stdout)
        return jsonFileLogObserver(LogFile.fromFullPath(path))

    return makeObserver
