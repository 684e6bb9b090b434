import dataclasses
import tomllib
from pathlib import Path

import pytest

from mailforum.config import Config, from_mapping, load
from mailforum.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_example_documents_every_key_and_loads():
    data = tomllib.loads(EXAMPLE.read_text())
    config = from_mapping(data, "example")
    for section in dataclasses.fields(Config):
        if section.name == "source":
            continue
        keys = {f.name for f in dataclasses.fields(getattr(config, section.name))}
        assert keys == set(data.get(section.name, {})), f"[{section.name}] keys differ from the example"


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILFORUM_CONFIG", raising=False)
    assert load().database.url == "sqlite:///mailforum.db"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"smtp": {"port": 70000}}, "not a TCP port"),
        ({"smtp": {"port": True}}, "expected an integer"),
        ({"digest": {"hour": 24}}, "hour must be 0–23"),
        ({"site": {"domain": "a@b"}}, "bare domain"),
        ({"database": {"url": "mysql://x"}}, "sqlite"),
        ({"site": {"secret_key": "a\nb"}}, "line breaks"),
    ],
)
def test_bad_values_name_the_key(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        from_mapping(data, "f.toml")
