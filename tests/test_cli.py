"""The console command: fast help, version, every subcommand's help, errors as exit codes."""

import subprocess
import sys
import time

import pytest

from medsynth import __version__
from medsynth.cli import build_parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["manifest"],
        ["manifest", "build"],
        ["manifest", "check"],
        ["prepare"],
        ["labels"],
        ["train"],
        ["generate"],
        ["cohort", "verify"],
        ["export", "nnunet"],
        ["export", "brats"],
        ["audit"],
        ["demo"],
    ],
)
def test_help_of_every_command(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    assert "usage: medsynth" in capsys.readouterr().out


def test_help_does_not_import_torch():
    code = "import sys; from medsynth.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert time.perf_counter() - started < 20  # generous; the point is no heavy import


def test_only_working_subcommands_exist():
    actions = [a for a in build_parser()._actions if a.dest == "command"]
    assert set(actions[0].choices) == {
        "manifest",
        "prepare",
        "labels",
        "train",
        "generate",
        "cohort",
        "export",
        "audit",
        "benchmark",
        "demo",
    }


def test_config_error_exit_code(brats2013_dir, tmp_path, capsys):
    from medsynth.data.manifest import build_manifest

    build_manifest(brats2013_dir, tmp_path / "m.json")
    assert main(["prepare", str(tmp_path / "m.json"), "-o", str(tmp_path / "p"), "nope=1"]) == 2
    assert "unknown key" in capsys.readouterr().err
