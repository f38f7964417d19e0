"""The test suite keeps its caches out of the user's home (tests/conftest.py)."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from normgan.eval.evaluation import default_cache_dir

HOME_CACHE = Path("~/.cache/normgan").expanduser()


def test_the_suites_cache_is_a_session_temp_folder_not_the_users():
    session = Path(os.environ["NORMGAN_TESTS_TMP"])
    assert session.is_dir() and session.is_relative_to(Path(tempfile.gettempdir()))
    assert default_cache_dir() == session / "normgan-cache" != HOME_CACHE


def test_commands_the_tests_start_use_the_same_cache():
    code = "from normgan.eval.evaluation import default_cache_dir; print(default_cache_dir())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()
    assert Path(out) == Path(os.environ["NORMGAN_TESTS_TMP"]) / "normgan-cache"
