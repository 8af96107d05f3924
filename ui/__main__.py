"""``python -m ui``: serve the browser chat and the HTTP API on one port (loopback only
unless ``--host`` says otherwise; then only with sign-in, see :mod:`ui.auth`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

try:
    from embeddings.stores import display_location
    from qa import config
    from qa.tools.cli import index_argument
    from ui import DEFAULT_HOST, DEFAULT_PORT
except ValueError as exc:  # e.g. QA_READER_THRESHOLD=abc: qa.config names it; no traceback when run
    if __name__ != "__main__":
        raise
    sys.exit(f"error: {exc}")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m ui`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m ui",
        description="Browser chat over your documents (answers, confidence and highlighted citations) and its HTTP "
        "API (/api/v1, docs at /api/docs), on one port.",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="interface to listen on (default: %(default)s, this machine only)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)")
    parser.add_argument(
        "--index",
        type=index_argument,  # an empty one (an unset shell variable) is refused, not the current folder
        default=None,
        # display_location: a QA_INDEX_DIR URL's password stays out of --help.
        help=f"index directory or postgresql:// URL (default: the index over {config.DEFAULT_DOCS_DIR}, built on first use at "
        f"{display_location(config.DEFAULT_INDEX_DIR)})",
    )
    parser.add_argument("--reader", default=None, help="transformers (the only reader; pick its checkpoint with QA_READER_MODEL)")
    parser.add_argument(
        "--auth-file",
        type=Path,
        default=None,
        help="credentials file of the users who may sign in (qa auth add-user); default: QA_AUTH_FILE, else auth.json "
        "beside the index directory. When it exists, the chat and the API require sign-in",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without sign-in even on a non-loopback --host (anyone who can reach it can ask, upload and remove)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and model loading")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Build the app and serve it until interrupted; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from ui.auth import check_exposure, open_auth

    # Decided before anything loads: a refused exposure fails in well under a second.
    auth_file = args.auth_file or config.auth_file_for(args.index)
    try:
        auth = None if args.no_auth else open_auth(auth_file)
        warning = check_exposure(args.host, auth, no_auth=args.no_auth)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if warning:
        logging.getLogger("ui").warning(warning)
    from ui.app import build_app, launch

    try:
        demo = build_app(args.index, reader=args.reader, auth=auth)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if auth is not None:
        n = len(auth.users())
        signin = f"sign-in required ({n} user{'' if n == 1 else 's'} in {auth_file})"
    else:
        # Where it looked: a server started from another folder than `qa auth add-user` (the
        # default for a postgresql:// index is ./auth.json) would otherwise be open unawares.
        signin = "no sign-in (--no-auth)" if args.no_auth else f"no sign-in (no credentials file at {Path(auth_file).resolve()})"
    print(f"Serving the chat on http://{args.host}:{args.port}/ and the API on /api/v1 (docs: /api/docs); {signin}. Ctrl+C to stop", flush=True)
    launch(demo, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
