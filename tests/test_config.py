"""qa.config: numbers from the environment are checked, and a bad one is an error, not a default."""

from __future__ import annotations

import math
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
    assert config._env_number("QA_TEST_NUMBER", 0.2, 0.0, 1.0) == expected


@pytest.mark.parametrize("raw", ["abc", "1.5", "-0.1", "nan", "inf", "0,8", "80%"])
def test_anything_else_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("QA_TEST_NUMBER", raw)
    with pytest.raises(ValueError, match=r"QA_TEST_NUMBER=.* must be a number from 0 to 1; unset it or set e\.g\. QA_TEST_NUMBER=0\.8"):
        config._env_number("QA_TEST_NUMBER", None, 0.0, 1.0, example=0.8)


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
