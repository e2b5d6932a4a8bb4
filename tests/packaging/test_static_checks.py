"""`make lint` holds for the whole tree: ruff and mypy strict over processor/, tests/ and bench/.

Run inside `make test` so a type error in a test or a benchmark fails CI like one in the code."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKED = ["processor", "tests", "bench"]


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def test_mypy_strict_covers_tests_and_bench() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    assert config["files"] == CHECKED


def test_mypy_finds_no_errors() -> None:
    result = subprocess.run([_tool("mypy")], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_finds_nothing() -> None:
    result = subprocess.run([_tool("ruff"), "check", *CHECKED], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:]
