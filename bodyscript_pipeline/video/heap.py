"""The C heap of a process that handles video frame by frame: frame-sized buffers reused, not mapped anew.

Every frame allocates buffers of a frame's size (the decoder's RGB conversion and its copy: 5 MB each at
1768 x 994). glibc's malloc hands blocks that large to the kernel (mmap) and gives them back when freed, and in
a pose worker its adaptive threshold does not keep up: each frame then faulted in 500-1,300 fresh pages (about
900 in the pose service's ranges), 10 % of a worker's time on the real clip (40.8 → 36.9 ms a frame, measured
alternately). Served from the heap and kept there once freed, the next frame reuses the last one's memory. The
heap keeps a few frames' buffers more (peak RSS 377 → 399 MB in that loop), and stays flat in video length.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20  # bytes: a 4K RGB frame (25 MB) still comes from the heap
TRIM_THRESHOLD = 128 << 20  # bytes of free heap kept for the next frames before any goes back


def reuse_frame_buffers() -> bool:
    """Serve frame-sized blocks from the heap and keep them there once freed, for this process and those it
    forks. Returns whether the C library took the settings (glibc only; elsewhere nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
