"""deploy/install-tools.sh installs what is missing and leaves the host's processes alone."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "deploy" / "install-tools.sh"
HIDDEN = {"promtool", "amtool"}


def _path_without_tools(tmp_path: Path) -> str:
    """A PATH with every command of the system except promtool and amtool, so the script
    takes its install branch (apt-get sees the packages installed and changes nothing)."""
    sandbox = tmp_path / "bin"
    sandbox.mkdir()
    for folder in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            target = sandbox / entry.name
            if entry.name not in HIDDEN and not target.exists():
                target.symlink_to(entry.path)
    return str(sandbox)


@pytest.fixture
def host_prometheus(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process named ``prometheus`` that the project did not start."""
    binary = tmp_path / "host" / "prometheus"
    binary.parent.mkdir()
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    process = subprocess.Popen([str(binary), "300"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.mark.skipif(
    os.geteuid() != 0 and shutil.which("sudo") is None, reason="installing needs root or sudo"
)
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="Debian's apt-get is not available")
def test_install_leaves_a_running_prometheus_alone(
    tmp_path: Path, host_prometheus: subprocess.Popen[bytes]
) -> None:
    policy = Path("/usr/sbin/policy-rc.d")
    policy_before = policy.read_bytes() if policy.exists() else None
    env = {**os.environ, "PATH": _path_without_tools(tmp_path)}
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300
    )
    assert "installing prometheus prometheus-alertmanager" in result.stderr, result.stderr
    assert host_prometheus.poll() is None, "install-tools.sh killed a prometheus it did not start"
    after = policy.read_bytes() if policy.exists() else None
    assert after == policy_before, "the service policy was not restored"
