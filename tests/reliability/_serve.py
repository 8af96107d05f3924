"""Serve the chat exactly as ``python -m ui`` does (same entry point, default host), with
one test hook: a question starting with ``[slow N]`` sleeps N seconds before answering, so
a test can hold a request in flight and disconnect its client.

Usage: python _serve.py [python -m ui arguments]
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

_SLOW = re.compile(r"^\[slow (\d+(?:\.\d+)?)\]\s*")


def main() -> int:
    import ui.app
    from ui.__main__ import main as ui_main

    real_ask = ui.app.ask

    def ask(question, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        match = _SLOW.match(question) if isinstance(question, str) else None
        if match:
            time.sleep(float(match.group(1)))
            question = question[match.end() :]
        return real_ask(question, *args, **kwargs)

    ui.app.ask = ask
    return ui_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
