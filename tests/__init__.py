"""
Tests for chatsvc; they run under both pytest and trial.

Logging is configured as the server configures it, so that structlog events reach Twisted's log
system, where tests can observe them and where trial reports logged errors.
"""

from chatsvc.logs import configureLogging

configureLogging()
