from __future__ import annotations

import pytest

from groupsync.config import DEFAULT_GRAPH_URL, load_settings, parse_rate
from groupsync.errors import ConfigError


@pytest.mark.parametrize(
    "text,expected",
    [("100/60", (100, 60.0)), ("5/0.5", (5, 0.5)), ("0", None), ("off", None), (0, None)],
)
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["100", "a/b", "-1/60", "10/0", "10/-3"])
def test_parse_rate_rejects(text):
    with pytest.raises(ConfigError, match="CALLS/SECONDS"):
        parse_rate(text)


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.graph_url == DEFAULT_GRAPH_URL
    assert settings.db == "groupsync.db"
    assert settings.rate == (100, 60.0)
    assert settings.auth_mode == "device"
    assert set(settings.sources.values()) == {"default"}


def test_flag_beats_env_beats_file_beats_default(tmp_path):
    config = tmp_path / "groupsync.toml"
    config.write_text('db = "file.db"\nrate = "10/10"\ngraph_url = "http://file/v1.0"\n')
    env = {"GROUPSYNC_DB": "env.db", "GROUPSYNC_RATE": "20/10"}
    settings = load_settings({"db": "flag.db", "rate": None}, config_path=config, environ=env)
    assert settings.db == "flag.db"
    assert settings.rate == (20, 10.0)
    assert settings.graph_url == "http://file/v1.0"
    assert settings.sources["db"] == "flag"
    assert settings.sources["rate"] == "env"
    assert settings.sources["graph_url"] == "file"


def test_default_config_file_is_read_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "groupsync.toml").write_text('[groupsync]\ntenant_id = "t-1"\n')
    assert load_settings(environ={}).tenant_id == "t-1"


def test_secrets_are_masked():
    settings = load_settings(
        environ={"GROUPSYNC_CLIENT_SECRET": "s3cret", "GROUPSYNC_ACCESS_TOKEN": "eyJtoken"}
    )
    shown = repr(settings.masked())
    assert "s3cret" not in shown and "eyJtoken" not in shown
    assert settings.masked()["client_secret"] == "********"


@pytest.mark.parametrize(
    "content,message",
    [
        ("nope = 1\n", "unknown setting"),
        ("db = [", "not valid TOML"),
        ('auth_mode = "magic"\n', "auth_mode must be one of"),
        ('graph_url = "ftp://x"\n', "graph_url must be an http"),
        ("max_concurrency = 0\n", "at least 1"),
        ('certificate_path = "cert.pem"\n', "thumbprint"),
    ],
)
def test_bad_config_file(tmp_path, content, message):
    config = tmp_path / "c.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(config_path=config, environ={})


def test_explicit_config_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(config_path=tmp_path / "missing.toml", environ={})


def test_repr_never_shows_secrets():
    settings = load_settings(
        environ={
            "GROUPSYNC_CLIENT_SECRET": "s3cret",
            "GROUPSYNC_ACCESS_TOKEN": "eyJtoken",
            "GROUPSYNC_CERTIFICATE_PASSWORD": "pfxpass",
        }
    )
    assert not {"s3cret", "eyJtoken", "pfxpass"} & set(repr(settings).replace("'", " ").split())
    assert "s3cret" not in repr(settings) and "pfxpass" not in repr(settings)
