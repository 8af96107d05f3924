"""``python -m qa`` and the ``qa`` command: the command line (see :mod:`qa.tools.cli`)."""

import sys


def run() -> int:
    """The ``qa`` command's entry point: :func:`qa.tools.cli.main`, or an error line when a
    ``QA_*`` environment variable is refused while :mod:`qa.config` is imported."""
    try:
        from qa.tools.cli import main
    except ValueError as exc:  # e.g. QA_READER_THRESHOLD=abc: named by qa.config, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return main()


if __name__ == "__main__":
    sys.exit(run())
