"""The Django backend's pure parts: the database URL derived from `DATABASES`, and a failed
attempt's exception class read from what jobworker stores."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from jobworker.contrib.django.errors import FALLBACK, class_path_of
from jobworker.contrib.django.options import database_url_from, read_options


def test_sqlite_becomes_the_same_file(tmp_path: Path) -> None:
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": tmp_path / "db"}}
    assert database_url_from("default", databases, "default") == f"sqlite:///{tmp_path}/db"


def test_postgresql_becomes_a_url_with_its_parts_quoted() -> None:
    databases = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "shop",
            "USER": "app",
            "PASSWORD": "p@ss/word",
            "HOST": "db.internal",
            "PORT": 5433,
            "OPTIONS": {"sslmode": "require", "pool": True},
        },
        "socket": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "shop",
            "HOST": "/var/run/postgresql",
        },
    }
    assert database_url_from("default", databases, "default") == (
        "postgresql://app:p%40ss%2Fword@db.internal:5433/shop?sslmode=require"
    )
    assert database_url_from("default", databases, "socket") == (
        "postgresql:///shop?host=%2Fvar%2Frun%2Fpostgresql"
    )


@pytest.mark.parametrize(
    "config",
    [
        {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        {"ENGINE": "django.db.backends.mysql", "NAME": "shop"},
        None,
    ],
)
def test_other_databases_need_a_url(config: dict[str, str] | None) -> None:
    databases = {"default": config} if config else {}
    with pytest.raises(ImproperlyConfigured, match=r"set OPTIONS\['DATABASE_URL'\]"):
        database_url_from("default", databases, "default")


def test_options_are_checked() -> None:
    url = {"DATABASE_URL": "sqlite:///jobs.db"}
    with pytest.raises(ImproperlyConfigured, match="unknown keys"):
        read_options("default", {**url, "RETRIES": 3}, {})
    with pytest.raises(ImproperlyConfigured, match="MAX_ATTEMPTS"):
        read_options("default", {**url, "MAX_ATTEMPTS": 0}, {})
    with pytest.raises(ImproperlyConfigured, match="poll_interval"):
        read_options("default", {**url, "SETTINGS": {"poll_interval": 0}}, {})
    options = read_options("default", {**url, "SETTINGS": {"result_ttl": 60}}, {})
    assert options.settings.result_ttl == 60 and options.database_alias is None


class Local(Exception):
    pass


def _formatted(exc: BaseException) -> str:
    try:
        raise exc
    except BaseException as raised:
        return "".join(traceback.format_exception(raised))


def test_the_exception_class_comes_from_the_traceback() -> None:
    chained = _formatted(ValueError("outer\nFile: line two"))
    assert class_path_of("ValueError: outer", chained) == "builtins.ValueError"
    assert class_path_of("Local: x", _formatted(Local("x"))) == f"{__name__}.Local"
    assert class_path_of("KeyError: 'k'", None) == "builtins.KeyError"
    assert class_path_of("worker lost", None) == FALLBACK
    assert class_path_of("Mystery: x", "no frames here") == FALLBACK
