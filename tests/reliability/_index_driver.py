"""Run ``qa.indexing.index_folder`` with a fast fake encoder, optionally slowed down, printing
its phase as it goes (``phase: ...`` lines) so a test that kills it knows where it was.

Usage: python _index_driver.py DOCS INDEX [--rebuild] [--delay S] [--slow-fsync S] [--wait S]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def phase(name: str) -> None:
    print(f"phase: {name} {time.time():.3f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("docs")
    parser.add_argument("index")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds slept per encoder batch")
    parser.add_argument("--slow-fsync", type=float, default=0.0, help="seconds slept before each fsync while saving")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the writer lock")
    args = parser.parse_args()
    phase("start")

    import embeddings.index as index_module
    from qa.indexing import index_folder
    from tests.reliability.helpers import FastEncoder

    if args.slow_fsync:
        real_fsync = index_module._fsync

        def slow_fsync(path):  # noqa: ANN001, ANN202
            time.sleep(args.slow_fsync)
            real_fsync(path)

        index_module._fsync = slow_fsync
    real_save = index_module.VectorIndex.save

    def save(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        phase("saving")
        out = real_save(self, *a, **k)
        phase("committed")
        return out

    index_module.VectorIndex.save = save

    class Encoder(FastEncoder):
        def encode(self, texts, **kwargs):  # noqa: ANN001, ANN201
            if not self.calls:
                phase("encoding")  # the writer lock is held from here on
            return super().encode(texts, **kwargs)

    phase("imported")
    try:
        report = index_folder(args.docs, args.index, encoder=Encoder(delay_s=args.delay), rebuild=args.rebuild, lock_wait_s=args.wait)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.summary(), flush=True)
    phase("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
