"""AuditConfig: the default config file matches the defaults; a bad value or an unknown key is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsynth.audit.config import AuditConfig
from medsynth.cli import main
from medsynth.config import from_dict, load_config, to_dict
from medsynth.errors import ConfigError

DEFAULT = Path(__file__).parents[2] / "configs" / "audit_default.yaml"


def test_the_default_file_documents_every_field_at_its_default():
    assert to_dict(load_config(AuditConfig, DEFAULT)) == to_dict(AuditConfig())
    text = DEFAULT.read_text()
    assert all(f"\n{name}:" in text for name in to_dict(AuditConfig()))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train_split=training"], "audit.train_split: 'training' is not one of ['train', 'validation', 'test']"),
        (["copies=3"], "audit: unknown key(s) ['copies']"),
        (["feature_steps=many"], "audit.feature_steps: expected int, got 'many'"),
        (["copies_per_scan=0"], "audit: copies_per_scan must be >= 1, got 0"),
    ],
)
def test_a_bad_value_or_unknown_key_is_a_config_error(overrides, message):
    with pytest.raises(ConfigError) as error:
        from_dict(AuditConfig, {}, overrides, where="audit")
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--train-split", "training"], "audit.train_split: 'training' is not one of"),
        (["seed=1", "copies=3"], "audit: unknown key(s) ['copies']"),
        ([], "audit: real_manifest is required (--real PATH or real_manifest=PATH)"),
    ],
)
def test_the_cli_refuses_a_bad_config_in_one_line(tmp_path, capsys, options, message):
    assert main(["audit", "-o", str(tmp_path / "audit"), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "audit").exists()


def test_flags_and_overrides_set_config_fields(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("medsynth.audit.run.run_audit", lambda config, output: seen.append(config) or 1 / 0)
    (tmp_path / "audit.yaml").write_text("seed: 3\nfeature_steps: 7\ncohort: from_file\n")
    command = ["audit", "--config", str(tmp_path / "audit.yaml"), "--synthetic", "cohort", "--real", "m.json"]
    assert main([*command, "-o", str(tmp_path / "a"), "--feature-steps", "9", "seed=4"]) != 0
    assert (seen[0].seed, seen[0].feature_steps, seen[0].cohort, seen[0].real_manifest) == (4, 9, "cohort", "m.json")
