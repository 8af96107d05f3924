"""Run one index update with a fast fake encoder, optionally slowed down, printing its phase
as it goes (``phase: ...`` lines) so a test that kills it knows where it was.

``--op index`` (default) syncs INDEX with the folder DOCS (``index_folder``); ``--op add`` adds
the files/folder DOCS (``add_files``); ``--op remove`` removes the document ids listed in DOCS
(comma-separated); ``--op compact`` merges INDEX's segments (DOCS is ignored).

Usage: python _index_driver.py DOCS INDEX [--op OP] [--rebuild] [--delay S] [--slow-fsync S] [--wait S]
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
    parser.add_argument("--op", choices=["index", "add", "remove", "compact"], default="index")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds slept per encoder batch")
    parser.add_argument("--slow-fsync", type=float, default=0.0, help="seconds slept before each fsync while saving")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the writer lock")
    args = parser.parse_args()
    phase("start")

    import embeddings.stores.index as index_module
    from qa.ingest.indexing import add_files, compact_index, index_folder, remove_documents
    from tests.reliability.helpers import FastEncoder

    if args.slow_fsync:
        real_fsync = index_module._fsync

        def slow_fsync(path):  # noqa: ANN001, ANN202
            time.sleep(args.slow_fsync)
            real_fsync(path)

        index_module._fsync = slow_fsync
    real_segment = index_module._write_new_segment
    real_publish = index_module._publish

    def write_segment(*a, **k):  # noqa: ANN002, ANN003, ANN202
        phase("saving")
        return real_segment(*a, **k)

    def publish(*a, **k):  # noqa: ANN002, ANN003, ANN202
        phase("saving")  # a removal writes no segment: the manifest is all it saves
        out = real_publish(*a, **k)
        phase("committed")
        return out

    index_module._write_new_segment = write_segment
    index_module._publish = publish

    class Encoder(FastEncoder):
        def encode(self, texts, **kwargs):  # noqa: ANN001, ANN201
            if not self.calls:
                phase("encoding")  # the writer lock is held from here on
            return super().encode(texts, **kwargs)

    phase("imported")
    try:
        encoder = Encoder(delay_s=args.delay)
        if args.op == "index":
            report = index_folder(args.docs, args.index, encoder=encoder, rebuild=args.rebuild, lock_wait_s=args.wait)
        elif args.op == "add":
            report = add_files(args.index, [args.docs], encoder=encoder, lock_wait_s=args.wait)
        elif args.op == "remove":
            report = remove_documents(args.index, args.docs.split(","), lock_wait_s=args.wait)
        else:
            report = compact_index(args.index, lock_wait_s=args.wait)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.summary(), flush=True)
    phase("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
