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
