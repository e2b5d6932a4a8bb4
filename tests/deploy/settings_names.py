"""The MSGKPI_* variables msgkpi reads, learnt from the code itself: `Settings.from_env`
and `UiSettings.from_env` (msgkpi ui) are given an environment that records every name looked
up."""

from __future__ import annotations

from typing import Any

from processor.config import Settings
from processor.ui.settings import UiSettings


class RecordingEnv(dict[str, str]):
    """An environment that remembers every name the code looks up."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)


def variables_the_code_reads() -> set[str]:
    env = RecordingEnv()
    Settings.from_env(env)
    UiSettings.from_env(env)
    return env.read
