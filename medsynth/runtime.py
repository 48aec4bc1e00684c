"""Where and how fast things run: the allocator, the device and the autocast precision.

>>> from medsynth.runtime import tune_allocator
>>> tune_allocator()  # doctest: +SKIP
{'M_MMAP_THRESHOLD': 1073741824, 'M_TRIM_THRESHOLD': 2147483647}

glibc's malloc hands every block above a (dynamic) threshold to ``mmap`` and gives freed
memory back to the OS. A 3D network allocates and frees tensors of tens to hundreds of MB
every step, so by default each step pays for fresh pages again (page faults, zeroing). Telling
glibc to keep such blocks in the heap made GAN/VAE training steps 1.3-1.6x and whole-case
generation 1.65-1.86x faster here, for 5-20% more peak memory (reports/performance.md). The
``medsynth`` command applies this at start-up; library users call :func:`tune_allocator`
themselves. ``MEDSYNTH_MALLOC=default`` turns it off; a user's own ``MALLOC_*_`` environment
variables are respected (then nothing is changed).

:func:`select_device`, :func:`cpu_has_bf16` and :func:`autocast_dtype` choose the device and the
precision for training, synthesis and the benchmark alike. The module imports torch only inside
them: the ``medsynth`` command imports it at start-up, and ``medsynth --help`` must stay fast.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap, not mmap
TRIM_THRESHOLD = (1 << 31) - 1  # give memory back to the OS only above 2 GiB of free heap top (int max)


def tune_allocator() -> dict[str, int]:
    """Keep freed memory in glibc's heap (see the module docstring); returns what was set.

    A no-op (empty dict) off Linux/glibc, with ``MEDSYNTH_MALLOC=default``, or when the user
    set ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` already.
    """
    if platform.system() != "Linux" or os.environ.get("MEDSYNTH_MALLOC", "").lower() == "default":
        return {}
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return {}
    name = ctypes.util.find_library("c")
    if not name or platform.libc_ver()[0] != "glibc":
        return {}
    libc = ctypes.CDLL(name)
    applied = {}
    for key, param, value in (
        ("M_MMAP_THRESHOLD", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    ):
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1:
            applied[key] = value
    return applied


def select_device(name: str = "auto") -> torch.device:
    """``name`` as a device; ``auto``: CUDA when present (the local rank's GPU under torchrun), else CPU."""
    import torch

    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision: str, device: torch.device, cpu_auto: torch.dtype | None = None) -> torch.dtype | None:
    """The autocast dtype: bf16 when asked or on CUDA; for ``auto`` on CPU, ``cpu_auto`` (fp32 if None).

    ``None`` means no autocast (fp32).
    """
    import torch

    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    if precision == "auto" and device.type == "cpu":
        return cpu_auto
    return None
