"""Waiting on another process's state in tests: on a condition, with a deadline, never a
fixed sleep."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable


def stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP, or a fault point with DC_FAULT_ACTION=stop)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def poll(condition: Callable[[], object], seconds: float = 30.0) -> None:
    """Until condition() is true; AssertionError after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds:.0f}s"
        time.sleep(0.05)
