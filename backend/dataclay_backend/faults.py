"""Test-only fault injection: `DC_FAULT_POINT=<name>` makes the backend kill itself (SIGKILL,
as `kill -9` would) when it reaches the named point. Unset in production; the points are named
where they are hit (e.g. "move.after_commit")."""
from __future__ import annotations

import logging
import os
import signal

_POINT = os.environ.get("DC_FAULT_POINT")


def hit(point: str) -> None:
    if _POINT == point:
        logging.getLogger(__name__).warning("fault point %s reached: killing this process", point)
        os.kill(os.getpid(), signal.SIGKILL)
