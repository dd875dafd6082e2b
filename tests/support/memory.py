"""Peak memory of the current process, as the memory tests and benchmarks measure it.

``getrusage``'s ``ru_maxrss`` (and ``os.wait4``'s) is inherited across ``fork`` and kept across
``execve``: a child started by a 500 MiB pytest process reports at least 500 MiB, whatever it does.
``VmHWM`` in ``/proc/self/status`` is the high-water mark of the process's own address space, which
``execve`` starts afresh, so a child measures only itself.
"""

from __future__ import annotations

__all__ = ["peak_rss_kib"]


def peak_rss_kib() -> int:
    """The peak resident set size of this process since its ``execve``, in KiB (``VmHWM``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmHWM line")
