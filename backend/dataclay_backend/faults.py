"""Test-only fault injection: `DC_FAULT_POINT=<name>` makes the backend kill itself (SIGKILL,
as `kill -9` would) when it reaches the named point. With `DC_FAULT_ACTION=stop` it stops itself
there instead (SIGSTOP, as a paused container), each time it reaches it: the test changes the
world meanwhile (e.g. kills a peer) and lets it go on (SIGCONT), so an interleaving that is rare
under load happens every time. With `DC_FAULT_ACTION=hold` only the thread that reaches it waits
there, for good (a background task that never gets its turn; the rest of the process serves on). Unset in production; the points are named where they are hit
(e.g. "move.after_commit")."""
from __future__ import annotations

import logging
import os
import signal
import threading

_POINT = os.environ.get("DC_FAULT_POINT")
_STOP = os.environ.get("DC_FAULT_ACTION") == "stop"
_HOLD = os.environ.get("DC_FAULT_ACTION") == "hold"


def hit(point: str) -> None:
    if _POINT == point and _HOLD:
        logging.getLogger(__name__).warning("fault point %s reached: holding this thread", point)
        threading.Event().wait()
    if _POINT == point:
        logging.getLogger(__name__).warning("fault point %s reached: %s this process", point,
                                            "stopping" if _STOP else "killing")
        # raise(), not kill(getpid()): the calling thread gets the signal and acts on it before it
        # returns, where a signal sent to the process may let this thread run on for a moment
        signal.raise_signal(signal.SIGSTOP if _STOP else signal.SIGKILL)
