"""
What the server is doing, for Prometheus: C{--metrics-listen ENDPOINT} serves C{/metrics} in
Prometheus' text exposition format (version 0.0.4), and C{/healthz}. docs/metrics.md lists every
metric.

The figures are read when C{/metrics} is asked for, from what the server keeps anyway (the open
connections, the hub's members and rooms, the store's queue) and from a few counters kept where
things happen (a message said, a flood delay, a send queue cut): nothing on the path of a message
but an integer added to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

__all__ = ["Histogram", "Metric", "makeMetricsSite", "render"]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    """What a histogram metric reads: how many observations fell at or below each bound."""

    def __init__(self, bounds: Sequence[float], counts: Sequence[int], total: float) -> None:
        """
        @param bounds: the buckets' upper bounds, increasing; the last may be infinity.
        @param counts: how many observations fell in each bucket (not counted up).
        @param total: the sum of every observation.
        """
        self.bounds = bounds
        self.counts = counts
        self.total = total

    def lines(self, name: str) -> list[str]:
        """The histogram's lines: cumulative buckets, then its sum and count."""
        lines = []
        running = 0
        for bound, count in zip(self.bounds, self.counts):
            running += count
            if bound != float("inf"):
                lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {running}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {running}')
        lines.append(f"{name}_sum {_number(self.total)}")
        lines.append(f"{name}_count {running}")
        return lines


class Metric:
    """One metric: its name, kind (C{gauge}, C{counter} or C{histogram}), help, and how to
    read its values."""

    def __init__(
        self,
        name: str,
        kind: str,
        help: str,
        read: Callable[[], float | Histogram | Mapping[tuple[tuple[str, str], ...], float]],
    ) -> None:
        """
        @param read: the metric's value now; or, for one with labels, its value for each set
            of labels (C{(("door", "irc"),)}); or, for a histogram, its L{Histogram}.
        """
        self.name = name
        self.kind = kind
        self.help = help
        self.read = read


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(metrics: Iterable[Metric]) -> bytes:
    """Every metric's values now, in Prometheus' text format."""
    lines = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        value = metric.read()
        if isinstance(value, Histogram):
            lines.extend(value.lines(metric.name))
        elif isinstance(value, Mapping):
            for labels, number in value.items():
                shown = ",".join(f'{key}="{_escape(label)}"' for key, label in labels)
                lines.append(f"{metric.name}{{{shown}}} {_number(number)}")
        else:
            lines.append(f"{metric.name} {_number(value)}")
    return ("\n".join(lines) + "\n").encode("utf-8")


class _Metrics(Resource):
    isLeaf = True

    def __init__(self, metrics: Callable[[], Iterable[Metric]]) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE)
        return render(self._metrics())


class _Health(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        # Answering at all is the health: the reactor turns, and the doors are listening.
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"ok\n"


def makeMetricsSite(metrics: Callable[[], Iterable[Metric]]) -> Site:
    """The site at C{--metrics-listen}: C{/metrics} and C{/healthz}, and nothing else."""
    root = Resource()
    root.putChild(b"metrics", _Metrics(metrics))
    root.putChild(b"healthz", _Health())
    site = Site(root)
    site.noisy = False
    site.displayTracebacks = False
    return site
