"""Crash safety: SIGKILL an index rebuild, an add, a remove and a compaction at random
moments, many times; run two writers at once.

After every kill the previous index (or the complete new one) loads and retrieves exactly
as before (or exactly as after); a final run completes and leaves no debris. Two writers
never corrupt the index: one fails with the lock message or, given ``--wait``, waits its turn.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from embeddings.stores.index import VectorIndex, current_generation
from qa.ingest.indexing import index_folder
from qa.retrieval.retrievers import BM25Retriever, DenseRetriever
from tests.reliability.helpers import HERE, PY, ROOT, FastEncoder, record_figure, subprocess_env, write_corpus

DRIVER = str(HERE / "_index_driver.py")
QUERIES = ["topic3 karab telix", "topic17 monol", "Document 29 about topic29", "visem dorun palar"]
KILLS = 20
DELAY_PER_BATCH = 0.15
SLOW_FSYNC = 0.03

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and flock are POSIX")


def snapshot(index_dir: Path) -> dict:
    """What a reader sees: documents, chunk ids and the top hits of both retrievers."""
    index = VectorIndex.load(index_dir)
    dense, sparse = DenseRetriever(index, FastEncoder()), BM25Retriever(index)
    return {
        "documents": {d: r.sha256 for d, r in index.documents.items()},
        "chunks": [(c.chunk_id, c.start, c.end) for c in index.chunks],
        "dense": [[p.chunk_id for p in dense.retrieve(q, 5)] for q in QUERIES],
        "bm25": [[p.chunk_id for p in sparse.retrieve(q, 5)] for q in QUERIES],
    }


def assert_no_debris(index: Path) -> None:
    """Only the live generation, the one before it (readers may be opening it) and their
    segments; and exactly the originals of the live generation's added documents."""
    import json

    assert_originals_complete(index)
    names = {p.name for p in index.iterdir()} - {"CURRENT", ".lock", "originals"}
    generations = {n for n in names if n.startswith("gen-")}
    assert current_generation(index).name in generations and len(generations) <= 2, names
    used = set()
    for gen in generations:
        used |= {s["name"] for s in json.loads((index / gen / "manifest.json").read_text())["segments"]}
    assert names - generations == used, names


def assert_originals_complete(index: Path, *, exact: bool = True) -> None:
    """Every added document of the live generation has its kept original and, with ``exact``
    (after a writer has run to the end), no other file (nor a temporary one) is in
    ``originals/``: a writer killed after its commit may leave the originals it replaced for
    the next writer to collect, like its old segments."""
    import json

    docs = json.loads((current_generation(index) / "manifest.json").read_text())["documents"]
    named = {e["original"] for e in docs.values() if e.get("original")}
    assert all(e.get("original") for e in docs.values() if e.get("origin") == "added"), "an added document without its original"
    on_disk = {p.name for p in (index / "originals").iterdir()} if (index / "originals").is_dir() else set()
    assert named <= on_disk, named - on_disk
    if exact:
        assert on_disk == named, (on_disk - named, named - on_disk)


def start_driver(docs: Path, index: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, DRIVER, str(docs), str(index), *extra],
        cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_phase(proc: subprocess.Popen, name: str, timeout_s: float = 60.0) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(f"phase: {name}"):
            return lines
    raise AssertionError(f"driver never reached {name!r}: {lines} {proc.stderr.read() if proc.poll() is not None else ''}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("crash") / "docs", n_docs=30)


def test_sigkill_during_rebuild_never_loses_the_index(corpus, tmp_path):
    index = tmp_path / "index"
    index_folder(corpus, index, encoder=FastEncoder())
    before = snapshot(index)
    assert len(before["documents"]) == 30 and all(before["dense"]) and all(before["bm25"])

    # One undisturbed run to learn how long a rebuild takes, so kills spread over all of it.
    t = time.monotonic()
    proc = start_driver(corpus, index, "--rebuild", "--delay", str(DELAY_PER_BATCH), "--slow-fsync", str(SLOW_FSYNC))
    out, err = proc.communicate(timeout=120)
    duration = time.monotonic() - t
    assert proc.returncode == 0, err
    assert snapshot(index) == before

    rng = random.Random(int(os.environ.get("QA_KILL_SEED", "20240607")))
    outcomes: dict[str, int] = {}
    generations = {current_generation(index).name}
    for n in range(KILLS):
        proc = start_driver(corpus, index, "--rebuild", "--delay", str(DELAY_PER_BATCH), "--slow-fsync", str(SLOW_FSYNC))
        time.sleep(rng.uniform(0.05, duration * 1.05))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        phases = [line.split()[1] for line in out.splitlines() if line.startswith("phase: ")]
        where = "finished" if proc.returncode == 0 else (phases[-1] if phases else "interpreter start")
        outcomes[where] = outcomes.get(where, 0) + 1
        # The index always loads and answers as before, whether or not the new generation committed.
        assert snapshot(index) == before, f"kill {n} at phase {where!r} changed what readers see"
        generations.add(current_generation(index).name)

    final = start_driver(corpus, index, "--rebuild")
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert "30 added" in out
    assert snapshot(index) == before
    assert_no_debris(index)

    figures = {
        "kills": KILLS,
        "rebuild_seconds": round(duration, 2),
        "killed_in_phase": outcomes,
        "generations_committed_during_kills": len(generations) - 1,
        "index_loaded_and_retrieved_as_before": f"{KILLS}/{KILLS}",
        "final_rerun": "completed",
    }
    print("\nkill test:", figures)
    record_figure("sigkill_rebuild", figures)
    # The kills must have landed in the interesting places, not only at interpreter start.
    assert outcomes.get("encoding", 0) + outcomes.get("saving", 0) >= 5, outcomes


def test_two_writers_one_fails_clearly_one_waits(corpus, tmp_path):
    index = tmp_path / "index"
    index_folder(corpus, index, encoder=FastEncoder())
    before = snapshot(index)

    first = start_driver(corpus, index, "--rebuild", "--delay", "0.5")
    wait_for_phase(first, "encoding")  # it holds the writer lock now
    t0 = time.monotonic()

    # The real command line, no --wait: fails at once with the lock message.
    cli = subprocess.run(
        [PY, "-m", "qa", "index", str(corpus), "--index", str(index), "--rebuild"],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    assert "being updated by another process" in cli.stderr and "--wait" in cli.stderr
    assert "Traceback" not in cli.stderr and cli.stderr.count("\n") == 1
    assert time.monotonic() - t0 < 30  # it did not load a model or wait

    # Readers are not blocked by the writer.
    assert snapshot(index) == before

    # A second writer with --wait queues behind the first and then completes.
    second = start_driver(corpus, index, "--rebuild", "--wait", "60")
    out2, err2 = second.communicate(timeout=120)
    rest, err1 = first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    done1 = float([line for line in rest.splitlines() if line.startswith("phase: committed")][0].split()[2])
    start2 = float([line for line in out2.splitlines() if line.startswith("phase: encoding")][0].split()[2])
    assert start2 >= done1, "the waiting writer started encoding before the first one committed"
    assert snapshot(index) == before
    assert_no_debris(index)


KILLS_PER_OP = 8


@pytest.fixture(scope="module")
def segmented(corpus, tmp_path_factory) -> tuple[Path, Path]:
    """An index of several segments with tombstones, and a folder of 4 more documents to add."""
    work = tmp_path_factory.mktemp("segmented")
    index = work / "index"
    index_folder(corpus, index, encoder=FastEncoder())
    more = write_corpus(work / "more", n_docs=34, seed=5)
    for path in sorted(more.rglob("doc*.txt")):
        if int(path.stem[3:]) < 30:
            path.unlink()  # keep doc30..doc33: new ids
    extra = work / "extra"
    write_corpus(extra, n_docs=33, seed=7)
    for path in sorted(extra.rglob("doc*.txt")):
        if int(path.stem[3:]) < 30:
            path.unlink()
    from qa.ingest.indexing import add_files, remove_documents

    add_files(index, [extra], encoder=FastEncoder())  # a second segment
    remove_documents(index, ["part0/doc00.txt", "part1/doc04.txt"])  # tombstones in the first
    return index, more


@pytest.mark.parametrize("op", ["add", "remove", "compact"])
def test_sigkill_during_add_remove_compact_leaves_before_or_after(op, segmented, tmp_path):
    template, more = segmented
    arg = {"add": str(more), "remove": "part2/doc02.txt,part0/doc30.txt", "compact": "-"}[op]
    slow = ("--op", op, "--delay", str(DELAY_PER_BATCH), "--slow-fsync", str(SLOW_FSYNC))
    before = snapshot(template)
    # One undisturbed run on a copy: the state after, and how long its commit takes.
    reference = tmp_path / "reference"
    shutil.copytree(template, reference)
    proc = start_driver(Path(arg), reference, *slow)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    after = snapshot(reference)
    if op != "compact":
        assert after != before
    stamps = {line.split()[1]: float(line.split()[2]) for line in out.splitlines() if line.startswith("phase: ")}
    first_save = min(float(line.split()[2]) for line in out.splitlines() if line.startswith("phase: saving"))
    window = stamps["committed"] - first_save

    rng = random.Random(int(os.environ.get("QA_KILL_SEED", "20240607")) + len(op))
    outcomes = {"before": 0, "after": 0}
    for n in range(KILLS_PER_OP):
        index = tmp_path / f"kill{n}"
        shutil.copytree(template, index)
        proc = start_driver(Path(arg), index, *slow)
        wait_for_phase(proc, "saving")  # the writer is writing its segment or manifest now
        time.sleep(rng.uniform(0.0, window * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        seen = snapshot(index)  # always loads
        assert seen in (before, after), f"{op}: kill {n} left a state that is neither before nor after"
        outcomes["before" if seen == before else "after"] += 1
        if seen == after and op == "add":
            assert_originals_complete(index, exact=False)  # a document that made it has its original too
        if seen == before and op != "compact" or op == "compact":
            # Running the same update again completes it and clears the debris of the killed one.
            rerun = start_driver(Path(arg), index, "--op", op)
            _, err = rerun.communicate(timeout=120)
            assert rerun.returncode == 0, err
            assert snapshot(index) == after
            assert not list(index.glob(".tmp-*"))
            assert_no_debris(index)
        shutil.rmtree(index)
    print(f"\nkill test ({op}):", outcomes)
    record_figure(f"sigkill_{op}", {"kills": KILLS_PER_OP, "commit_window_s": round(window, 3), **outcomes})
