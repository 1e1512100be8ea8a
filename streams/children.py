"""Child processes that do not outlive the process that started them.

`loopwise up` runs the broker, the worker and the API as children. If `up` itself is
killed (SIGKILL, an OOM kill, a supervisor giving up), nothing would stop them: they
would keep the ports, the RocksDB locks and a core busy. On Linux each child asks the
kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), set between fork and
exec; elsewhere this is a no-op. The children also run in process groups of their own,
so a terminal's Ctrl-C (sent to the whole foreground group) reaches `up` alone, and `up`
stops them in order: the API and the worker first, while the broker still takes their
last writes, then the broker.

When `up` dies, though, the broker gets its SIGTERM at the same moment as the worker, and
a Faust worker's graceful stop then waits on a broker that is gone. So a supervised part
(SUPERVISED in its environment) also exits hard a grace period after its parent is gone:
the worker and the API are crash-safe by design, so a hard exit costs only the last
moments of work that a restart replays.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
SUPERVISED = "LOOPWISE_SUPERVISED"  # set by loopwise.supervisor for the parts it starts


def die_with_parent() -> None:
    """For `subprocess.Popen(preexec_fn=...)`: SIGTERM this child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def exit_after_parent(grace_seconds: float) -> None:
    """In a supervised part: once the parent is gone, exit within `grace_seconds` even if
    the graceful stop its SIGTERM began hangs. Does nothing outside a supervisor."""
    if not os.environ.get(SUPERVISED):
        return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        time.sleep(grace_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-after-parent", daemon=True).start()
