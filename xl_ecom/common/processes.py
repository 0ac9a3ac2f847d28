"""Whether a process still runs on this host: the workbook lock and the atomic writer's stale
temporary files both ask."""

from __future__ import annotations

import os
import sys


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (an unknown answer counts as alive)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it exists
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_freed_memory() -> None:
    """Let the memory pandas' text columns free go back to the process's allocator.

    pandas keeps text in Arrow arrays, whose default pool (mimalloc) holds on to the pages it freed:
    refreshing 400,000 rows then peaks some 100 MB higher than the data ever needs.  Arrow's system
    pool (malloc) reuses and returns them.  Process-wide and harmless to call more than once; does
    nothing when pyarrow is not installed.  Garbage in reference cycles a previous run left (pandas
    frames hold some) is collected first, so a second refresh in the same process (the ribbon's) does
    not run on top of the first one's."""
    import gc

    gc.collect()
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pandas then keeps text as Python objects
        return
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
