"""The package face: ``import medsynth`` is fast and lists every stage entry and config."""

import inspect
import subprocess
import sys

import pytest

import medsynth

# one entry and one config per stage, in pipeline order (issue 18, "A public face")
PIPELINE = [
    "build_manifest",
    "check_manifest",
    "Manifest",
    "run_prepare",
    "PrepareConfig",
    "prepare",
    "PreprocessConfig",
    "run_labels",
    "LabelsConfig",
    "generate_label_maps",
    "LabelConfig",
    "ReshapeSpec",
    "regenerate",
    "run_train",
    "TrainConfig",
    "load_generator",
    "pretrained",
    "run_generate",
    "GenerateConfig",
    "generate_cohort",
    "regenerate_case",
    "MixedDataset",
    "MixedSampler",
    "SynthesisStream",
    "run_audit",
    "AuditConfig",
    "run_benchmark",
    "BenchmarkConfig",
]
PUBLIC = sorted(n for n in dir(medsynth) if not n.startswith("_"))


def test_import_does_not_load_torch() -> None:
    code = "import sys, medsynth; print(sorted(m for m in ('torch', 'monai', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_dir_lists_the_pipeline() -> None:
    assert set(PIPELINE) <= set(PUBLIC)
    assert sorted(n for n in medsynth.__all__ if not n.startswith("_")) == PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(medsynth, name)
    assert getattr(value, "__name__", name) == name


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_stage"):
        medsynth.no_such_stage  # noqa: B018
    assert not hasattr(medsynth, "no_such_stage")


def test_version_comes_from_one_module() -> None:
    from medsynth._version import __version__

    assert medsynth.__version__ == __version__


@pytest.mark.parametrize(
    "name",
    [n for n in PUBLIC if n not in ("__version__", "MedsynthError")],
)
def test_public_entry_documents_its_arguments_with_an_example(name: str) -> None:
    doc = inspect.getdoc(getattr(medsynth, name)) or ""
    assert "Args:" in doc, f"{name}: no Args: section in its docstring"
    assert ">>>" in doc, f"{name}: no example in its docstring"
