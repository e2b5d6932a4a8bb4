"""Rows for bench/RESULTS.md: every benchmark stamps its row alike and appends it on --record."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def row(*cells: object) -> str:
    """| date (UTC) | machine | cells... |"""
    machine = (f"{platform.machine()} {os.cpu_count()} cores, "
               f"Python {platform.python_version()}")
    return " | ".join(["", f"{datetime.now(UTC):%Y-%m-%d %H:%M}", machine,
                       *(str(cell) for cell in cells), ""]).strip()


def publish(rows: Iterable[str], record: bool) -> None:
    """Print the rows; with `record`, append them to RESULTS.md (move them into their table)."""
    text = "\n".join(rows)
    print(text)
    if record:
        with RESULTS.open("a") as results:
            results.write(text + "\n")
