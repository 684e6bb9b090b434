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
        ({"web": {"signin_minutes": 0}}, "signin_minutes must be 1–1440"),
        ({"web": {"session_days": 0}}, "session_days positive"),
        ({"web": {"signin_per_address": 0}}, "signin_per_address must be 1–1000"),
    ],
)
def test_bad_values_name_the_key(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        from_mapping(data, "f.toml")


def test_relative_paths_are_taken_from_the_config_files_folder(tmp_path, monkeypatch):
    """Issue 13: `--config /srv/mf/mailforum.toml` from another directory uses /srv/mf's files."""
    folder = tmp_path / "srv" / "mf"
    folder.mkdir(parents=True)
    (folder / "mailforum.toml").write_text(
        '[database]\nurl = "sqlite:///data/forum.db"\n'
        '[outbound]\ntemplates = "tpl"\n'
        '[dkim]\nkey_file = "/etc/dkim/key.pem"\nselector = "s1"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for path in (folder / "mailforum.toml", Path("../srv/mf/mailforum.toml")):
        config = load(path)
        assert config.database.url == f"sqlite:///{folder}/data/forum.db"
        assert config.outbound.templates == str(folder / "tpl")
        assert config.dkim.key_file == "/etc/dkim/key.pem"


@pytest.mark.parametrize(
    "url", ["sqlite:////var/lib/mf.db", "postgresql+psycopg://mf@db.example/mf", "sqlite:///:memory:"]
)
def test_absolute_and_server_database_urls_are_kept(tmp_path, url):
    (tmp_path / "mailforum.toml").write_text(f'[database]\nurl = "{url}"\n')
    assert load(tmp_path / "mailforum.toml").database.url == url
