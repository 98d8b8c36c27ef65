from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from groupsync import config
from groupsync.config import DEFAULT_GRAPH_URL, load_settings, parse_rate
from groupsync.errors import ConfigError


@pytest.mark.parametrize(
    "text,expected",
    [("100/60", (100, 60.0)), ("5/0.5", (5, 0.5)), ("0", None), ("off", None), (0, None)],
)
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text", ["100", "a/b", "-1/60", "10/0", "10/-3", "1/inf", "1/nan", "nan/1", "1/1e999", True]
)
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


# -- numbers: every setting's range, on arbitrary text ------------------------------------

NUMERIC = {
    "timeout": config.TIMEOUT_SECONDS,
    "max_concurrency": config.MAX_CONCURRENCY,
}
number_text = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"\A\s*[-+]?(\d{0,7}(\.\d{0,4})?|inf|nan|infinity)([eE][-+]?\d{1,4})?\s*\Z"),
    st.floats().map(repr),
    st.integers().map(str),
)
rate_text = st.one_of(
    st.text(max_size=30),
    st.tuples(number_text, st.sampled_from(["/", " / ", "//", ""]), number_text).map("".join),
)


def finite_in(number: float, bounds: tuple[float, float]) -> bool:
    return math.isfinite(number) and bounds[0] <= number <= bounds[1]


@examples(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(NUMERIC)), text=number_text)
def test_numeric_settings_accept_only_finite_values_in_range(name, text):
    for layer in ({f"GROUPSYNC_{name.upper()}": text}, None):
        try:
            if layer is None:
                value = load_settings({name: text}, environ={})
            else:
                value = load_settings(environ=layer)
        except ConfigError:
            continue
        if not text:  # an empty variable is "not set": the default
            continue
        got = getattr(value, name)
        assert finite_in(got, NUMERIC[name]), (name, text, got)
        assert not isinstance(got, bool)
        if name == "max_concurrency":
            assert isinstance(got, int)


@examples(max_examples=400, deadline=None)
@given(text=rate_text)
def test_rate_accepts_only_finite_values_in_range(text):
    try:
        rate = parse_rate(text)
    except ConfigError:
        return
    if rate is None:
        assert text.strip().lower() in {"0", "off", "none", ""}
        return
    calls, seconds = rate
    assert isinstance(calls, int) and finite_in(calls, config.RATE_CALLS)
    assert finite_in(seconds, config.RATE_SECONDS)


@examples(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.floats(),
        st.integers(),
        st.lists(st.one_of(st.integers(), st.floats(), st.text(max_size=5)), max_size=3),
    )
)
def test_numeric_settings_from_toml_values(value):
    """What a TOML file can hold: numbers of any kind, booleans, arrays."""
    for name in [*NUMERIC, "rate"]:
        try:
            got = config._coerce(name, value)
        except ConfigError:
            continue
        if name == "rate":
            if got is not None:
                assert finite_in(got[0], config.RATE_CALLS)
                assert finite_in(got[1], config.RATE_SECONDS)
        else:
            assert finite_in(got, NUMERIC[name]) and not isinstance(got, bool)


@pytest.mark.parametrize(
    "name,text",
    [
        ("timeout", "1e400"),
        ("timeout", "-0.0"),
        ("timeout", "3600.5"),
        ("max_concurrency", "65"),
        ("max_concurrency", "1e3"),
        ("max_concurrency", "true"),
    ],
)
def test_numeric_edges_are_refused(name, text):
    with pytest.raises(ConfigError, match=f"--{name.replace('_', '-')}: {name} must"):
        load_settings({name: text}, environ={})
