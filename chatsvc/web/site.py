"""
The browser door's web site: the chat page at C{/}, its assets under C{/static/}, and the
WebSocket at C{/ws}, from one origin, served from the installed package. Every response carries
the headers that keep a member's text from ever running as code in another member's page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web import http
from twisted.web.server import Request, Site
from twisted.web.static import File

from chatsvc.web.protocol import WebFactory
from chatsvc.web.websocket import WebSocketResource

__all__ = ["SECURITY_HEADERS", "STATIC", "ChatSite", "makeSite"]

STATIC = Path(__file__).parent / "static"
"""Where the page and its assets are, in the installed package."""

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self' ws: wss:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "object-src 'none'",
    ]
)
"""Scripts and styles from this server's own files only: no inline script, no eval, nothing
from elsewhere; and the page may not be framed by another."""

SECURITY_HEADERS = {
    b"Content-Security-Policy": CONTENT_SECURITY_POLICY.encode("ascii"),
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
    b"Cross-Origin-Opener-Policy": b"same-origin",
    b"Permissions-Policy": b"camera=(), microphone=(), geolocation=()",
}
"""Set on every response of the site."""

HTTP_IDLE_TIMEOUT = 60
"""Seconds an HTTP connection may stay idle between requests (the WebSocket has its own pings)."""


class _StaticFiles(File):
    """The page's assets: files only, never a listing of the directory."""

    def directoryListing(self) -> IResource:
        return notFound()

    def createSimilarFile(self, path: str) -> File:
        similar = _StaticFiles(path, self.defaultType, self.ignoredExts, self.registry)
        similar.processors = self.processors
        similar.indexNames = []
        return similar


class _Page(Resource):
    """C{/}: the chat page itself (any other path at the top is not found)."""

    isLeaf = False

    def __init__(self, static: Path) -> None:
        super().__init__()
        self._index = _StaticFiles(str(static / "index.html"), defaultType="text/html")

    def getChild(self, path: bytes, request: Request) -> IResource:
        if path == b"":
            return self._index
        return notFound()

    def render_GET(self, request: Request) -> bytes:
        request.redirect(b"/")
        request.finish()
        return b""


class ChatSite(Site):
    """A L{Site} whose every response carries L{SECURITY_HEADERS}, and which keeps no access log."""

    def getResourceFor(self, request: Request) -> Any:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        if not request.prepath and request.path in (b"/", b"/index.html"):
            request.setHeader(b"Cache-Control", b"no-cache")
        return super().getResourceFor(request)

    def log(self, request: http.Request) -> None:
        """Page loads are not logged: members are logged by the sessions, as on every door."""


def makeSite(factory: WebFactory, static: Path = STATIC) -> ChatSite:
    """The site of the browser door: the page, C{/static/}, and C{/ws} speaking to C{factory}."""
    root = _Page(static)
    assets = _StaticFiles(str(static))
    assets.indexNames = []
    root.putChild(b"static", assets)
    root.putChild(b"ws", WebSocketResource(factory))
    site = ChatSite(root, timeout=HTTP_IDLE_TIMEOUT, reactor=factory.clock)
    site.displayTracebacks = False
    site.noisy = False
    return site
