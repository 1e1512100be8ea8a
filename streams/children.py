"""Child processes that do not outlive the process that started them.

`loopwise up` runs the broker, the worker and the API as children. If `up` itself is
killed (SIGKILL, an OOM kill, a supervisor giving up), nothing would stop them: they
would keep the ports, the RocksDB locks and a core busy. On Linux each child asks the
kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), set between fork and
exec; elsewhere this is a no-op. The children also run in process groups of their own,
so a terminal's Ctrl-C (sent to the whole foreground group) reaches `up` alone, and `up`
stops them in order: the API and the worker first, while the broker still takes their
last writes, then the broker.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For `subprocess.Popen(preexec_fn=...)`: SIGTERM this child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
