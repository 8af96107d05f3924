"""qa.config: numbers from the environment are checked, and a bad one is an error, not a default."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qa import config
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", 0.2), ("  ", 0.2), ("0", 0.0), ("1", 1.0), (" 0.85 ", 0.85)],
)
def test_a_number_in_range_is_read(monkeypatch: pytest.MonkeyPatch, raw: str, expected: float) -> None:
    monkeypatch.setenv("QA_TEST_NUMBER", raw)
    assert config.env_number("QA_TEST_NUMBER", 0.2, 0.0, 1.0) == expected


@pytest.mark.parametrize("raw", ["abc", "1.5", "-0.1", "nan", "inf", "0,8", "80%"])
def test_anything_else_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("QA_TEST_NUMBER", raw)
    with pytest.raises(ValueError, match=r"QA_TEST_NUMBER=.* must be a number from 0 to 1; unset it or set e\.g\. QA_TEST_NUMBER=0\.8"):
        config.env_number("QA_TEST_NUMBER", None, 0.0, 1.0, example=0.8)


def test_whole_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_TEST_COUNT", "12")
    assert config._env_int("QA_TEST_COUNT", 4, 1) == 12 and isinstance(config._env_int("QA_TEST_COUNT", 4, 1), int)
    for raw in ("2.5", "0", "many"):
        monkeypatch.setenv("QA_TEST_COUNT", raw)
        with pytest.raises(ValueError, match=r"QA_TEST_COUNT=.* must be a whole number, at least 1; .*QA_TEST_COUNT=4"):
            config._env_int("QA_TEST_COUNT", 4, 1)


def test_the_shipped_defaults_are_in_range() -> None:
    assert config.READER_THRESHOLD is None or 0 <= config.READER_THRESHOLD <= 1
    assert config.PG_HNSW_EF_SEARCH >= config.FUSION_DEPTH  # fewer and HNSW returns fewer rows than are fused
    assert all(math.isfinite(v) and v > 0 for v in (config.READER_LOAD_TIMEOUT_S, config.EXTRACT_TIMEOUT_S, config.PG_POOL_TIMEOUT_S))


def _run(*command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(list(command), cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_commands_print_a_bad_setting_as_an_error_line() -> None:
    bad = {"QA_READER_THRESHOLD": "80"}
    message = "error: environment variable QA_READER_THRESHOLD='80' must be a number from 0 to 1; unset it or set e.g. QA_READER_THRESHOLD=0.8"
    script = shutil.which("qa", path=str(Path(sys.executable).parent))
    assert script, "the `qa` console script is missing: pip install -e ."
    for command in ([sys.executable, "-m", "qa", "list"], [script, "list"], [sys.executable, "-m", "ui", "--help"]):
        result = _run(*command, env=bad)
        assert result.returncode != 0 and result.stderr.strip() == message and result.stdout == "", command
    # The library raises it where it is imported, with the same words.
    lib = _run(sys.executable, "-c", "import qa.pipeline", env=bad)
    assert lib.returncode != 0 and "ValueError: environment variable QA_READER_THRESHOLD='80'" in lib.stderr


def test_a_choice_is_one_of_its_values_or_refused_naming_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_TEST_MODE", " int8 ")
    assert config._env_choice("QA_TEST_MODE", "auto", config.READER_QUANTIZE_MODES) == "int8"
    monkeypatch.setenv("QA_TEST_MODE", "")
    assert config._env_choice("QA_TEST_MODE", "auto", config.READER_QUANTIZE_MODES) == "auto"
    monkeypatch.setenv("QA_TEST_MODE", "fp16")
    with pytest.raises(ValueError, match=r"QA_TEST_MODE='fp16' must be one of auto, bf16, int8, none, onnx-q8; unset it or set e\.g\. QA_TEST_MODE=auto"):
        config._env_choice("QA_TEST_MODE", "auto", config.READER_QUANTIZE_MODES)


def test_the_choices_are_the_ones_the_code_serves() -> None:
    from qa.reader.transformers_reader import QUANTIZE_MODES
    from qa.retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    assert QUANTIZE_MODES == config.READER_QUANTIZE_MODES
    assert sorted(r.name for r in (DenseRetriever, BM25Retriever, HybridRetriever)) == sorted(config.RETRIEVERS)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QA_RETRIEVER": "bm26"}, "QA_RETRIEVER='bm26' must be one of dense, bm25, hybrid"),
        ({"QA_READER_QUANTIZE": "fp16"}, "QA_READER_QUANTIZE='fp16' must be one of auto, bf16, int8, none, onnx-q8"),
        ({"QA_READER_LOAD_TIMEOUT": "inf"}, "QA_READER_LOAD_TIMEOUT='inf' must be a number from 1 to 86400"),
    ],
)
def test_named_settings_are_checked_at_start(env: dict[str, str], message: str) -> None:
    result = _run(sys.executable, "-m", "qa", "list", env=env)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr


def test_a_blank_docs_dir_is_the_default_not_the_current_folder() -> None:
    result = _run(sys.executable, "-c", "from qa import config; print(config.DEFAULT_DOCS_DIR)", env={"QA_DOCS_DIR": " "})
    assert result.stdout.strip() == str(config.PROJECT_ROOT / "seeds"), result.stderr


def test_ui_help_never_shows_a_database_password() -> None:
    result = _run(sys.executable, "-m", "ui", "--help", env={"QA_INDEX_DIR": "postgresql://qa:s3cret-pw@db.example/qa"})
    assert result.returncode == 0 and "s3cret-pw" not in result.stdout and "qa:***@db.example" in result.stdout


@pytest.mark.parametrize("raw", ["two", "0", "-3", "1.5"])
def test_thread_counts_are_refused_naming_the_variable_not_the_checkpoint(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    """Read when a session starts (tests and deployments set them per process); a mistyped one is
    an error naming it -- it was the checkpoint's load error, or silently 1, or the CPU count."""
    from embeddings.encoders.onnx_encoder import encoder_threads
    from qa.reader.onnx_reader import reader_threads

    for name, threads in (("QA_READER_THREADS", reader_threads), ("QA_ENCODER_THREADS", encoder_threads)):
        monkeypatch.setenv(name, raw)
        with pytest.raises(ValueError, match=rf"{name}='{re.escape(raw)}' must be a whole number, at least 1"):
            threads()
        monkeypatch.setenv(name, " 3 ")
        assert threads() == 3
