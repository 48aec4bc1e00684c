"""Runtime settings: the allocator (applied on glibc, skipped when the user opts out or set them), the
device and precision helpers (torch imported only when called)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from medsynth.runtime import (
    MMAP_THRESHOLD,
    TRIM_THRESHOLD,
    autocast_dtype,
    cpu_has_bf16,
    select_device,
    tune_allocator,
)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tune_allocator_applies_on_glibc(monkeypatch):
    monkeypatch.delenv("MEDSYNTH_MALLOC", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert tune_allocator() == {"M_MMAP_THRESHOLD": MMAP_THRESHOLD, "M_TRIM_THRESHOLD": TRIM_THRESHOLD}


def test_tune_allocator_respects_opt_out_and_user_settings(monkeypatch):
    monkeypatch.setenv("MEDSYNTH_MALLOC", "default")
    assert tune_allocator() == {}
    monkeypatch.delenv("MEDSYNTH_MALLOC")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000")
    assert tune_allocator() == {}


def test_importing_runtime_does_not_import_torch():
    code = "import sys, medsynth.runtime; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_inference_and_benchmark_do_not_import_the_trainer():
    code = (
        "import sys, medsynth.models.generator, medsynth.benchmark.segmenter; "
        "print('medsynth.models.train' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("precision", "device", "cpu_auto", "expected"),
    [
        ("auto", "cpu", None, None),
        ("auto", "cpu", "bfloat16", "bfloat16"),
        ("auto", "cuda", None, "bfloat16"),
        ("bf16", "cpu", None, "bfloat16"),
        ("fp32", "cpu", "bfloat16", None),
        ("fp32", "cuda", None, None),
    ],
)
def test_autocast_dtype(precision, device, cpu_auto, expected):
    import torch

    cpu_auto = getattr(torch, cpu_auto) if cpu_auto else None
    dtype = autocast_dtype(precision, torch.device(device), cpu_auto=cpu_auto)
    assert dtype == (getattr(torch, expected) if expected else None)


def test_select_device():
    import torch

    assert select_device("cpu") == torch.device("cpu")
    assert select_device("cuda:1") == torch.device("cuda", 1)
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert isinstance(cpu_has_bf16(), bool)
