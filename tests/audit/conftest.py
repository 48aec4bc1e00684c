"""Helpers shared by the audit tests: the audit command line, a refused command's one-line error."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from medsynth.cli import main


def audit_command(real: Path, cohort: Path, output: Path, *options: str) -> list[str]:
    return ["audit", "--real", str(real), "--synthetic", str(cohort), "-o", str(output), *options]


@pytest.fixture
def audit_args() -> Callable[..., list[str]]:
    """``audit_args(real, cohort, output, *options)``: the ``medsynth audit`` argv."""
    return audit_command


@pytest.fixture
def refused(capsys) -> Callable[[list[str]], str]:
    """``refused(argv)``: the one-line message of a refused command (exit 1, no traceback)."""

    def run(command: list[str]) -> str:
        capsys.readouterr()
        assert main(command) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        return err

    return run


@pytest.fixture
def tumor_case() -> Callable[..., dict]:
    """``tumor_case(volume_ml, hemisphere, region, et)``: hand-built tumor stats of one case."""

    def stats(volume_ml: float, hemisphere: str = "left", region: str = "frontal", et: float = 0.3) -> dict:
        fractions = {"netc": 0.1, "snfh": round(0.9 - et, 4), "et": et}
        if not volume_ml:
            fractions = dict.fromkeys(fractions, 0.0)
        return {
            "case_id": "c",
            "volume_ml": volume_ml,
            "hemisphere": hemisphere,
            "region": region,
            "fractions": fractions,
        }

    return stats


@pytest.fixture
def copies(prepared_phantoms, tiny_cohort, tmp_path) -> tuple[Path, Path]:
    """Private copies of the prepared phantoms and the tiny cohort, to corrupt."""
    real = tmp_path / "prepared"
    shutil.copytree(prepared_phantoms.parent, real)
    cohort = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, cohort)
    return real / "manifest.json", cohort
