"""The built wheel works outside the checkout: schemas ship as package data."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

CHECK_EVENT = """
import processor, processor.events as events
assert 'site-packages' in processor.__file__, processor.__file__
event = events.event_from_dict({"event_id": "e1", "type": "message", "channel": "whatsapp",
    "conversation_id": "c1", "occurred_at": 1767225600000, "author": "customer"})
assert event.conversation_id == "c1"
try:
    events.event_from_dict({"event_id": "e2", "type": "message", "channel": "whatsapp"})
except Exception as error:
    assert "conversation_id" in str(error), error
else:
    raise AssertionError("an event without conversation_id was accepted")
print(processor.__file__)
"""


CHECK_PAGE = """
from importlib import resources
from processor.ui.web import create_app
create_app(dict, lambda: True, None)
for name in ("index.html", "app.js", "app.css"):
    print(name, len(resources.files("processor.ui").joinpath("static", name).read_bytes()))
"""
"""The live page's files ship in the wheel: create_app reads them all at start."""


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env}, check=False)


def test_the_wheel_installed_in_a_fresh_venv_runs_outside_the_checkout(tmp_path: Path) -> None:
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                 "-q", "-w", str(tmp_path / "dist"), str(REPO_ROOT)], tmp_path)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("msgkpi-*.whl"))
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)], tmp_path).returncode == 0
    installed = run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                     str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr
    # The dependencies come from this venv's site-packages, which PYTHONPATH adds without its
    # .pth files, so the editable install of the checkout stays invisible.
    deps = {"PYTHONPATH": sysconfig.get_paths()["purelib"]}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    helped = run([str(venv / "bin" / "msgkpi"), "--help"], outside, **deps)
    assert helped.returncode == 0, helped.stderr
    for command in ("gateway", "worker", "simulate", "replay", "ui"):
        assert command in helped.stdout
    checked = run([str(venv / "bin" / "python"), "-c", CHECK_EVENT], outside, **deps)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip().startswith(str(venv))
    page = run([str(venv / "bin" / "python"), "-c", CHECK_PAGE], outside, **deps)
    assert page.returncode == 0, page.stderr
    sizes = dict(line.split() for line in page.stdout.splitlines())
    assert sorted(sizes) == ["app.css", "app.js", "index.html"]
    assert all(int(size) > 500 for size in sizes.values()), sizes
