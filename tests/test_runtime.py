"""Allocator settings made at start-up: applied on glibc, skipped when the user opts out or set them."""

from __future__ import annotations

import platform

import pytest

from medsynth.runtime import MMAP_THRESHOLD, TRIM_THRESHOLD, tune_allocator


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
