"""ChangelogWriter's safety net: a changelog write Kafka refuses ends the process (so the
records that caused it are not committed); a delivered or cancelled one does not."""

from __future__ import annotations

import subprocess
import sys

from processor.worker.delivery import EXIT_UNPROCESSED

SCRIPT = """
import asyncio, logging
logging.basicConfig()
from processor.worker.tables import _stop_if_refused

async def main():
    loop = asyncio.get_running_loop()
    delivered, cancelled, refused = loop.create_future(), loop.create_future(), loop.create_future()
    for fut in (delivered, cancelled, refused):
        fut.add_done_callback(_stop_if_refused)
    delivered.set_result("metadata")
    cancelled.cancel()
    await asyncio.sleep(0)
    print("alive after delivered and cancelled", flush=True)
    refused.set_exception(RuntimeError("NotLeaderForPartition"))
    await asyncio.sleep(0.1)
    print("still running", flush=True)

asyncio.run(main())
"""


def test_a_refused_changelog_write_stops_the_worker() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert "alive after delivered and cancelled" in done.stdout
    assert "still running" not in done.stdout
    assert done.returncode == EXIT_UNPROCESSED
    assert "NotLeaderForPartition" in done.stderr
