#!/usr/bin/env python3
"""
How fast the terminal client draws a busy room: lines from the server shown above a half-typed
input line, each neutralized, time-stamped, coloured, wrapped and followed by the input line
drawn again, exactly as on a terminal; the bytes go to memory instead of a tty.

    python benchmarks/terminal.py                 # 20,000 lines, 3 runs, 80 columns
    python benchmarks/terminal.py --lines 50000 --columns 40 --json /tmp/terminal.json

Printed: lines drawn per second and bytes written per line, for each run and their median. A
room rarely sends more than a few hundred lines a second; a terminal emulator itself draws
some tens of thousands.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from twisted.internet.testing import StringTransport

from chatsvc.client.terminal import TerminalConsole

_LINES = [
    "Bob: has anyone tried the new build on the lab machines yet?",
    "[games] Carol: Alice, your move",
    "*** Dave joined!",
    "Erin: 李雷 and 韩梅梅 say hello 👋 — with a line long enough to wrap on a terminal of eighty columns",
    "*** Error: you are sending too fast",
]


def run(lines: int, columns: int) -> tuple[float, float]:
    """Lines drawn per second, and bytes written per line."""
    console = TerminalConsole("Alice", lambda line: None, lambda: None, lambda: columns)
    output = StringTransport()
    console.makeConnection(output)
    console.inRoom("lobby")
    console.dataReceived(b"half a line typed")
    output.clear()
    started = time.perf_counter()
    for number in range(lines):
        console.show(_LINES[number % len(_LINES)])
    elapsed = time.perf_counter() - started
    return lines / elapsed, len(output.value()) / lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--columns", type=int, default=80)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    options = parser.parse_args()
    rates, sizes = [], []
    for number in range(options.runs):
        rate, size = run(options.lines, options.columns)
        rates.append(rate)
        sizes.append(size)
        print(f"run {number + 1}: {rate:,.0f} lines/s, {size:.0f} bytes a line")
    median = statistics.median(rates)
    print(f"median: {median:,.0f} lines/s")
    if options.json:
        with open(options.json, "w") as file:
            json.dump({"lines_per_second": rates, "median": median, "bytes_per_line": sizes}, file)


if __name__ == "__main__":
    main()
