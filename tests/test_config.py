"""Typed configs: strict keys and types, overrides, saved resolved config."""

from dataclasses import dataclass, field

import pytest
import yaml

from medsynth.config import ConfigError, from_dict, load_config, save_config


@dataclass
class Inner:
    rate: float = 0.1


@dataclass
class Outer:
    steps: int = 3
    name: str = "x"
    sizes: tuple[int, int] = (1, 2)
    inner: Inner = field(default_factory=Inner)
    flag: bool = False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stepz": 1}, "unknown key"),
        ({"steps": "many"}, "expected int"),
        ({"steps": 1.5}, "expected int"),
        ({"flag": "yes"}, "true/false"),
        ({"inner": {"rat": 1}}, "unknown key"),
        ({"sizes": [1]}, "expected 2 values"),
    ],
)
def test_rejects_bad_values(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_overrides_and_round_trip(tmp_path):
    config = from_dict(Outer, {"steps": 5}, overrides=["inner.rate=2", "name=run"])
    assert config == Outer(steps=5, name="run", inner=Inner(rate=2.0))
    save_config(config, tmp_path / "c.yaml")
    assert load_config(Outer, tmp_path / "c.yaml") == config
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["inner"]["rate"] == 2.0


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, "nowhere.yaml")
