from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit import config
from kit.config import Settings, mask_url, normalize_database_url, url_from_env
from kit.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://bob:secret@db:5432/app", "postgresql://bob:***@db:5432/app"),
        ("postgresql+psycopg://bob:p%40ss@db/app", "postgresql+psycopg://bob:***@db/app"),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("see postgres://u:a:b@c@h/d now", "see postgres://u:***@h/d now"),
        ("host=db user=bob password=secret dbname=app", "host=db user=bob password=*** dbname=app"),
        ("postgresql://bob@db/app", "postgresql://bob@db/app"),
        ("no url here", "no url here"),
        # a password with '/' or a space, as users type it (unencoded)
        ("postgresql://bob:pa/ss@db/app", "postgresql://bob:***@db/app"),
        ("postgresql://bob:pa ss word@db:5432/app", "postgresql://bob:***@db:5432/app"),
        ("'postgresql://a:x/y@h1/d' and 'redis://:p q@h2:1/0'", "'postgresql://a:***@h1/d' and 'redis://:***@h2:1/0'"),
        # no scheme at all
        ("auditor:S3cret@db:5432/app", "auditor:***@db:5432/app"),
        ("not a database URL: 'auditor:S3/c@ret@db/app'", "not a database URL: 'auditor:***@db/app'"),
        ("https://example.com/a:b@c", "https://example.com/a:b@c"),  # a path, not a password
        ("at 10:30@home", "at 10:30@home"),
    ],
)
def test_mask_url_hides_every_password(text, expected):
    assert mask_url(text) == expected


def _mask_whole_text(text: str) -> str:
    """mask_url as the patterns say it, tried at every position of the text (what mask_url saves)."""
    text = config._USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = config._BARE_USERINFO.sub(lambda m: f"{m['user']}:***@", text)
    return config._DSN_PASSWORD.sub(lambda m: f"{m[1]}***", text)


PIECES = [*"ab1_:/@. \n\t'\"%+-=[\u00a0", "postgresql://", "redis://", "u:p@", "password=", "://", "@h", "a" * 300]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_mask_url_only_near_an_at_sign_is_the_same_as_everywhere(text):
    assert mask_url(text) == _mask_whole_text(text)


def test_normalize_sets_the_psycopg3_driver():
    assert normalize_database_url("postgres://u:p@h:1/d") == "postgresql+psycopg://u:p@h:1/d"
    assert normalize_database_url("postgresql+psycopg2://u@h/d") == "postgresql+psycopg://u@h/d"


@pytest.mark.parametrize("url", ["mysql://u:pw@h/d", "sqlite:///x.db", "redis://h:1/0"])
def test_not_a_postgresql_url_is_a_config_error_without_the_password(url):
    with pytest.raises(ConfigError, match="not a PostgreSQL URL") as info:
        normalize_database_url(url)
    assert "pw" not in str(info.value)


def test_garbage_is_a_config_error():
    with pytest.raises(ConfigError, match="not a database URL"):
        normalize_database_url("::::")


@pytest.mark.parametrize(("url", "message"), [
    ("auditor:S3cret@db:5432/app", "not a database URL: 'auditor:***@db:5432/app'; it has no scheme; expected"),
    ("postgresql://u:S3cret@db:five/app", "not a database URL: 'postgresql://u:***@db:five/app' has a port that "
                                          "is not a number"),
    ("postgresql://u:S3cret@db:99999/app", "has port 99999, outside 1-65535"),
])
def test_bad_urls_are_one_masked_line(url, message):
    with pytest.raises(ConfigError) as info:
        normalize_database_url(url)
    assert message in str(info.value) and "S3cret" not in str(info.value)


def test_environment_precedence(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://a@h/one")
    assert url_from_env() == "postgresql+psycopg://a@h/one"
    monkeypatch.setenv("KIT_DATABASE_URL", "postgresql://a@h/two")
    assert url_from_env() == "postgresql+psycopg://a@h/two"
    monkeypatch.setenv("MY_DB", "postgresql://a@h/three")
    assert url_from_env("MY_DB") == "postgresql+psycopg://a@h/three"
    monkeypatch.setenv("REDIS_URL", "redis://h:1/0")
    assert url_from_env(kind="redis") == "redis://h:1/0"


def test_a_named_variable_that_is_unset_is_an_error(monkeypatch):
    monkeypatch.delenv("NOPE_DB", raising=False)
    with pytest.raises(ConfigError, match="NOPE_DB is not set"):
        url_from_env("NOPE_DB")


def test_no_configuration_and_no_servers_says_what_to_do(monkeypatch, tmp_path):
    for name in config.DATABASE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KIT_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="kit services up"):
        url_from_env()


def test_settings_repr_masks(monkeypatch):
    settings = Settings.resolve(database_url="postgresql://u:topsecret@h/d", redis_url="redis://:pw2@h:1/0")
    assert "topsecret" not in repr(settings) and "pw2" not in repr(settings)
    assert settings.database_url == "postgresql+psycopg://u:topsecret@h/d"


def test_kit_home_is_found_from_a_subfolder(monkeypatch, tmp_path):
    monkeypatch.delenv("KIT_HOME", raising=False)
    (tmp_path / ".kit").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # where a notebook's kernel runs
    assert config.kit_home() == tmp_path / ".kit"
    monkeypatch.setenv("KIT_HOME", str(tmp_path / "elsewhere"))
    assert config.kit_home() == tmp_path / "elsewhere"
