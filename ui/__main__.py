"""``python -m ui``: serve the browser chat (loopback only unless ``--host`` says otherwise)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from embeddings.stores import index_location
from qa import config
from ui import DEFAULT_HOST, DEFAULT_PORT


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m ui`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m ui", description="Browser chat over your documents: answers, confidence and highlighted citations."
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="interface to listen on (default: %(default)s, this machine only)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)")
    parser.add_argument(
        "--index",
        type=index_location,
        default=None,
        help=f"index directory or postgresql:// URL (default: the index over {config.DEFAULT_DOCS_DIR}, built on first use at {config.DEFAULT_INDEX_DIR})",
    )
    parser.add_argument("--reader", default=None, help="transformers (the only reader; pick its checkpoint with --reader-model)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and model loading")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Build the app and serve it until interrupted; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from ui.app import build_app, launch

    try:
        demo = build_app(args.index, reader=args.reader)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Serving on http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    launch(demo, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
