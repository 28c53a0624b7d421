"""glibc's allocator around a fit: numpy's temporaries without a page fault each.

numpy makes a new array for every operation, and a fit makes tens of thousands of them, each of one
value per row.  glibc serves a block above its mmap threshold (128 KiB at start, raised only as
mapped blocks are freed) with a fresh mapping, and gives the top of its heap back to the system
above its trim threshold, so many of those temporaries cost page faults: up to the time of the
arithmetic itself at 1e5 rows (measured: 190 ms against 70 ms for one 25-node AGQ gradient).
`fast_allocation` sets the two thresholds, once per process, to the values glibc's own adjustment
moves towards (32 MiB for mmap, 64 MiB for trim), and after a fit on many rows gives the freed memory
back to the system (``malloc_trim``), so the process does not keep its peak.  After a smaller fit the
freed temporaries (a few tens of MiB at most) stay for the next one: the trim (~0.6 ms after a fit
on 1e5 rows) and the page faults of the next fit would cost more than the fit itself gains.  Where
the C library is not glibc, or ``ENABLED`` is False, it does nothing.
"""
import ctypes
import ctypes.util
import platform
import threading
from contextlib import contextmanager

#: set False to leave the C library's allocator settings alone
ENABLED = True
#: glibc's mallopt parameters and the values set (its dynamic adjustment's ceilings on 64-bit)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
#: fits on at least this many rows (a column of 2 MiB) give their freed memory back
TRIM_ROWS = 1 << 18

_STATE = {"libc": None, "set": False, "depth": 0}
_LOCK = threading.Lock()


def _glibc():
    """The process's glibc (ctypes), or None elsewhere."""
    if _STATE["libc"] is None:
        libc = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                found = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                found.mallopt.argtypes, found.malloc_trim.argtypes = [ctypes.c_int, ctypes.c_int], [ctypes.c_size_t]
                libc = found
            except (OSError, AttributeError):
                libc = False
        _STATE["libc"] = libc
    return _STATE["libc"] or None


def set_thresholds():
    """Raise glibc's mmap and trim thresholds for the process (once); True when they are set."""
    libc = _glibc() if ENABLED else None
    if libc is None:
        return False
    with _LOCK:
        if not _STATE["set"]:
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            _STATE["set"] = True
    return True


@contextmanager
def fast_allocation(rows=None):
    """Within: the raised thresholds (`set_thresholds`); at the end of the outermost one: ``malloc_trim(0)``,
    unless it was given fewer than `TRIM_ROWS` ``rows``."""
    active = set_thresholds() and (rows is None or rows >= TRIM_ROWS)
    _STATE["depth"] += 1
    try:
        yield
    finally:
        _STATE["depth"] -= 1
        if active and _STATE["depth"] == 0:
            _glibc().malloc_trim(0)
