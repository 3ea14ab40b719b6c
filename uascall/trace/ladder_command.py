"""``uascall ladder FILE.pcapng [--call N] [--html OUT.html]``: its options and its run.

Kept apart from :mod:`uascall.trace.ladder` so that the ``uascall`` command knows it by
name only: the decoders (Q.931, SIP, numpy's FFT) are imported when it runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_ladder_command(subparsers: Any) -> argparse.ArgumentParser:
    """``uascall ladder``'s parser, added to the ``uascall`` command's subparsers."""
    parser = subparsers.add_parser(
        "ladder", help="draw the calls of a trace (pcapng) as ladders",
        description="Draw each call of a trace (uascall's --trace, or any pcapng with "
        "LINUX_LAPD or raw IP interfaces): Q.931 and SIP messages in time order with the "
        "in-band audio between them.")
    parser.add_argument("trace", metavar="FILE.pcapng")
    parser.add_argument("--call", type=int, metavar="N", help="only call N (from 1)")
    parser.add_argument("--html", metavar="OUT.html",
                        help="also write a self-contained page with the ladders and, per "
                        "call, the level and spectrum of the in-band audio over time")
    parser.set_defaults(func=run_ladder)
    return parser


def run_ladder(args: argparse.Namespace) -> int:
    """Print the ladders (and write the page); 0 on success, 2 when the trace cannot be
    read or has no call ``--call``."""
    from uascall.trace.ladder import LadderError, read_calls, render_html, render_text

    try:
        calls = read_calls(args.trace)
        text = render_text(calls, args.call)
        if args.html:
            page = render_html(calls, args.call, title=args.trace)
            with open(args.html, "w", encoding="utf-8") as file:
                file.write(page)
    except LadderError as exc:
        print(f"uascall ladder: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"uascall ladder: cannot write {args.html}: {exc.strerror}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
