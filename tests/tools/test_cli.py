"""The command line as a user runs it: subprocesses, exit codes, stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def run_qa(*args: str, stdin: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "qa", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def test_index_command_builds_then_updates(docs_dir: Path, tmp_path: Path) -> None:
    (docs_dir / "broken.txt").write_bytes(b"\x00\x01binary")
    first = run_qa("index", str(docs_dir), "--index", str(tmp_path / "idx"))
    assert first.returncode == 0, first.stderr
    assert "3 added" in first.stdout and "1 skipped" in first.stdout
    assert "broken.txt" in first.stderr and "binary" in first.stderr
    second = run_qa("index", str(docs_dir), "--index", str(tmp_path / "idx"))
    assert "0 added, 0 changed, 0 removed, 3 unchanged" in second.stdout


def test_index_command_on_missing_folder_fails_cleanly(tmp_path: Path) -> None:
    result = run_qa("index", str(tmp_path / "nope"), "--index", str(tmp_path / "idx"))
    assert result.returncode != 0
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "idx").exists() or not any((tmp_path / "idx").glob("gen-*"))


def test_empty_paths_are_refused_by_name_and_nothing_is_written(tmp_path: Path, docs_dir: Path) -> None:
    """An unset shell variable gives ``--index ""``: refused, never read as the current folder."""
    for args, named in (
        (("index", str(docs_dir), "--index", ""), "argument --index: is empty"),
        (("index", "", "--index", str(tmp_path / "idx")), "argument docs_dir: is empty"),
        (("add", " ", "--index", str(tmp_path / "idx")), "argument paths: is empty"),
        (("ask", "Who?", "--index", ""), "argument --index: is empty"),
    ):
        result = run_qa(*args)
        assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "idx").exists()
    assert not any(p.name.startswith(("gen-", "seg-", "CURRENT", ".lock")) for p in ROOT.iterdir())


def test_index_into_a_named_index_needs_its_folder(tmp_path: Path) -> None:
    """Without a folder, `qa index` builds the default index over seeds/; into an index the user
    names it would add the project's sample article to their documents, so it asks for the folder."""
    result = run_qa("index", "--index", str(tmp_path / "idx"))
    assert result.returncode != 0 and "name the documents folder" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "idx").exists()


def test_index_command_fails_when_every_file_is_refused(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    refused = run_qa("index", str(docs), "--index", str(tmp_path / "idx"))
    assert refused.returncode == 1 and "skipped" in refused.stderr and "broken.pdf" in refused.stderr
    assert "Traceback" not in refused.stderr
    # One readable file beside it: the folder is indexed, the refusal reported, exit 0.
    (docs / "notes.txt").write_text("The harbour master is Piet Smit.", encoding="utf-8")
    taken = run_qa("index", str(docs), "--index", str(tmp_path / "idx"))
    assert taken.returncode == 0 and "broken.pdf" in taken.stderr and "1 added" in taken.stdout


def test_ask_json_and_stdin_mode(tmp_path: Path) -> None:
    import json

    index = str(tmp_path / "idx")
    assert run_qa("index", "seeds", "--index", index).returncode == 0
    one = run_qa("ask", "Which European country joined the drone coalition alongside Turkey?", "--index", index, "--json")
    assert one.returncode == 0, one.stderr
    assert one.stderr == ""  # quiet by default: no warnings, no "Loading weights" bars
    data = json.loads(one.stdout)
    # Passages in rank order, each with the score the ranking used and its named components.
    ranks = data["passages"]
    assert [p["rank"] for p in ranks] == list(range(1, len(ranks) + 1))
    assert [p["score"] for p in ranks] == sorted((p["score"] for p in ranks), reverse=True)
    assert all(set(p["components"]) == {"rrf", "dense", "bm25"} and p["score"] == p["components"]["rrf"] for p in ranks)
    assert data["answer"] == "Belgium" and data["reader"] == "minilm-squad (shipped)"
    assert data["citations"][0]["doc_id"] == "japan_defense_minister_turkey_visit.txt"
    many = run_qa("ask", "--index", index, "--json", stdin="When did the Kizilelma make its first flight?\n\nWhat is the population of Tokyo?\n")
    lines = [json.loads(line) for line in many.stdout.splitlines()]
    assert [d["answer"] for d in lines] == ["December 2022", None]
    # A refused line still gets its line of output, naming the question and why.
    mixed = run_qa("ask", "--index", index, "--json", stdin="?\nWhen did the Kizilelma make its first flight?\n" + "x " * 600 + "\n")
    out = [json.loads(line) for line in mixed.stdout.splitlines()]
    assert mixed.returncode == 1 and [d["question"][:10] for d in out] == ["?", "When did t", "x x x x x "]
    assert "error" in out[0] and out[1]["answer"] == "December 2022" and "limit" in out[2]["error"], out
    dash = run_qa("ask", "-", "--index", index, "--json", stdin="When did the Kizilelma make its first flight?\n")
    assert dash.returncode == 0, dash.stderr
    assert [json.loads(line)["answer"] for line in dash.stdout.splitlines()] == ["December 2022"]
    human = run_qa("ask", "When did the Kizilelma make its first flight?", "--index", index)
    assert "A: December 2022" in human.stdout and ">>December 2022<<" in human.stdout
    # --threshold 1: nothing is certain, so the same span comes back as a guess, not an answer.
    strict = json.loads(run_qa("ask", "When did the Kizilelma make its first flight?", "--index", index, "--json", "--threshold", "1").stdout)
    assert strict["answer"] is None and strict["guess"]["text"] == "December 2022"


def test_ask_bad_input_fails_without_traceback(tmp_path: Path) -> None:
    empty = run_qa("ask", "   ", "--index", str(tmp_path))
    assert empty.returncode != 0 and "empty" in empty.stderr and "Traceback" not in empty.stderr
    huge = run_qa("ask", "why " * 25_000, "--index", str(tmp_path))
    assert huge.returncode != 0 and "limit" in huge.stderr and "Traceback" not in huge.stderr
    # A bad threshold fails before the index or any model loads (the index here does not exist).
    strict = run_qa("ask", "Who?", "--threshold", "80", "--index", str(tmp_path / "nope"))
    assert strict.returncode != 0 and "threshold=80.0 must be a chance from 0 to 1" in strict.stderr and "Traceback" not in strict.stderr
    missing = run_qa("ask", "Who?", "--index", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "no index at" in missing.stderr and "Traceback" not in missing.stderr
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "CURRENT").write_text("gen-missing\n")
    bad = run_qa("ask", "Who?", "--index", str(corrupt))
    assert bad.returncode != 0 and "rebuild" in bad.stderr and "Traceback" not in bad.stderr


def test_qa_console_script_is_installed() -> None:
    import shutil
    import subprocess
    import sys

    script = shutil.which("qa", path=str(Path(sys.executable).parent))
    assert script, "the `qa` console script is missing: pip install -e . creates it from [project.scripts]"
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "eval-reader" in done.stdout and done.stdout.startswith("usage: qa")


def test_start_up_is_quiet_behind_a_socks_proxy() -> None:
    """ALL_PROXY=socks5://... (common on corporate networks) must not warn or break start-up."""
    import subprocess
    import sys

    env = {**os.environ, "ALL_PROXY": "socks5://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import gradio, ui.app, qa.tools.cli"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_the_parser_loads_without_faiss_torch_or_the_encoder() -> None:
    """Building the parser (every command, ``train-reader`` and ``calibrate-reader`` too) imports
    none of the heavy libraries: a machine without FAISS (a lent GPU) can train, and ``qa -h``
    is quick. The package names stay importable (lazily)."""
    code = (
        "import sys\n"
        "from qa.tools.cli import build_parser\n"
        "build_parser()\n"
        "heavy = sorted(m for m in ('faiss', 'torch', 'transformers', 'sentence_transformers', 'onnxruntime', 'bm25s') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "import embeddings\n"
        "assert embeddings.VectorIndex.__name__ == 'VectorIndex' and 'faiss' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_calibrate_reader_sets_are_the_projects_or_a_users_folder(tmp_path: Path) -> None:
    import pytest

    from qa.tools.cli import _question_sets, build_parser

    parse = build_parser().parse_args
    assert parse(["calibrate-reader", "f.json"]).sets is None
    assert parse(["calibrate-reader", "f.json", "--sets"]).sets == ""
    assert parse(["calibrate-reader", "f.json", "--sets", str(tmp_path)]).sets == str(tmp_path)
    assert "seeds_dev" in _question_sets("")  # the project's own
    # A user's folder: each sub-folder with docs/ and questions.jsonl is a set; others are not.
    for name in ("hr", "legal", "half"):
        (tmp_path / name / "docs").mkdir(parents=True)
    for name in ("hr", "legal"):
        (tmp_path / name / "questions.jsonl").write_text('{"question": "Q?", "answers": ["A"]}\n')
    sets = _question_sets(str(tmp_path))
    assert sets == {n: (tmp_path / n / "docs", tmp_path / n / "questions.jsonl") for n in ("hr", "legal")}
    assert _question_sets(str(tmp_path / "hr")) == {".": (tmp_path / "hr" / "docs", tmp_path / "hr" / "questions.jsonl")}
    with pytest.raises(ValueError, match="neither it nor a sub-folder"):
        _question_sets(str(tmp_path / "half"))
    with pytest.raises(ValueError, match="is not a folder"):
        _question_sets(str(tmp_path / "missing"))


def test_a_crlf_passage_prints_its_context_on_one_line() -> None:
    """A CRLF .txt keeps its line endings (offsets are the file's): a CR in the printed context
    would send the cursor back and overwrite it."""
    from qa.answer import Answer, Citation
    from qa.tools.cli import format_answer

    passage = "The harbour\r\nmaster is\rPiet\tSmit.\r\nShips dock at dawn."
    start = passage.index("Piet")
    citation = Citation("h.txt", "/docs/h.txt", "h.txt#0", passage, 0, len(passage), start, start + len("Piet\tSmit"))
    printed = format_answer(Answer("Who is the harbour master?", "Piet\tSmit", 0.9, "fake", [citation]))
    context = printed.splitlines()[-1]
    assert "\r" not in printed and "\t" not in context
    assert context == "    The harbour master is >>Piet Smit<<. Ships dock at dawn."
