"""`WebConfig` from `JOBWORKER_WEB_*` variables, the scrypt password hashes, and
`jobworker hash-password`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from jobworker.cli import main
from jobworker.errors import ConfigurationError
from jobworker.web.config import WebConfig, hash_password, verify_password

CHEAP = 16


def test_a_hash_verifies_its_password_only() -> None:
    hashed = hash_password("s3cret pass", n=CHEAP)
    assert hashed.startswith(f"scrypt${CHEAP}$8$1$")
    assert verify_password("s3cret pass", hashed)
    assert not verify_password("s3cret pas", hashed)
    assert not verify_password("", hashed)
    assert hash_password("s3cret pass", n=CHEAP) != hashed  # salted


def test_the_default_cost_is_scrypt_n_2_15() -> None:
    hashed = hash_password("x")
    assert hashed.split("$")[1:4] == ["32768", "8", "1"]
    assert verify_password("x", hashed)


@pytest.mark.parametrize(
    "hashed",
    [
        "plain text password",
        "scrypt$16$8$1$c2FsdA",
        "bcrypt$16$8$1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
        "scrypt$15$8$1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",  # n not a power of two
        "scrypt$4194304$8$1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",  # too costly to run
        "scrypt$1048576$8$1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",  # more memory than allowed
        "scrypt$16$8$1$!!$a2V5a2V5a2V5a2V5a2V5a2V5",
        "scrypt$16$8$1$c2FsdHNhbHQ$a2V5",  # key too short
    ],
)
def test_a_malformed_hash_is_refused_never_matched(hashed: str) -> None:
    with pytest.raises(ConfigurationError, match="not a password hash"):
        verify_password("anything", hashed)
    with pytest.raises(ConfigurationError, match="not a password hash"):
        WebConfig(admin_password_hash=hashed)


def test_empty_passwords_and_bad_costs_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="must not be empty"):
        hash_password("")
    with pytest.raises(ConfigurationError, match="power of two"):
        hash_password("x", n=1000)
    with pytest.raises(ConfigurationError, match="power of two"):
        hash_password("x", n=2**18)


def test_the_config_reads_jobworker_web_variables_and_overrides_win() -> None:
    hashed = hash_password("pw", n=CHEAP)
    environ = {
        "JOBWORKER_WEB_ADMIN_PASSWORD_HASH": hashed,
        "JOBWORKER_WEB_SESSION_LIFETIME": "600",
        "JOBWORKER_WEB_SECURE_COOKIES": "always",
        "JOBWORKER_WEB_ALLOWED_ORIGINS": "https://a.example, https://B.example:8443",
        "JOBWORKER_WEB_LOGIN_MAX_FAILURES": "3",
        "JOBWORKER_WEB_READONLY_USERNAME": "",  # empty: ignored
    }
    config = WebConfig.load(environ, login_max_failures=7)
    assert config.admin_password_hash == hashed and config.enabled
    assert config.session_lifetime == 600.0 and config.secure_cookies == "always"
    assert config.extra_origins() == {"https://a.example", "https://b.example:8443"}
    assert config.login_max_failures == 7
    assert config.readonly_username == "viewer" and config.readonly_password_hash is None
    assert not WebConfig.load({}).enabled


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"JOBWORKER_WEB_SESSION_LIFETIME": "soon"}, "invalid web setting"),
        ({"JOBWORKER_WEB_SECURE_COOKIES": "sometimes"}, "invalid web setting"),
        ({"JOBWORKER_WEB_SESSION_SECRET": "short"}, "at least 32 characters"),
        ({"JOBWORKER_WEB_SESSION_LIFETIME": "0"}, "must be > 0"),
        ({"JOBWORKER_WEB_LOGIN_MAX_FAILURES": "0"}, "must be >= 1"),
        ({"JOBWORKER_WEB_ALLOWED_ORIGINS": "https://a.example/path"}, "is not an origin"),
        ({"JOBWORKER_WEB_READONLY_USERNAME": "admin"}, "must differ"),
        ({"JOBWORKER_WEB_SESSION_SECRETS": "typo"}, None),
    ],
)
def test_bad_settings_are_refused(environ: dict[str, str], message: str | None) -> None:
    if message is None:  # an unknown variable is not a field: it is simply not read
        WebConfig.load(environ)
        return
    with pytest.raises(ConfigurationError, match=message):
        WebConfig.load(environ)


def test_without_a_secret_each_process_has_a_random_one() -> None:
    config = WebConfig.load({})
    assert len(config.secret()) == 32 and config.secret() == WebConfig.load({}).secret()
    assert WebConfig.load({}, session_secret="k" * 32).secret() == b"k" * 32


def test_the_repr_holds_no_secret() -> None:
    hashed = hash_password("pw", n=CHEAP)
    config = WebConfig(admin_password_hash=hashed, session_secret="z" * 40)
    assert hashed not in repr(config) and "z" * 40 not in repr(config)
    assert "admin=set" in repr(config)


def test_hash_password_reads_stdin_never_argv() -> None:
    result = CliRunner().invoke(main, ["hash-password"], input="horse battery\n")
    assert result.exit_code == 0, result.output
    hashed = result.output.strip().splitlines()[-1]
    assert verify_password("horse battery", hashed)
    assert "horse battery" not in result.output
    extra = CliRunner().invoke(main, ["hash-password", "horse battery"])
    assert extra.exit_code == 2  # no password argument exists
    empty = CliRunner().invoke(main, ["hash-password"], input="\n")
    assert empty.exit_code == 2 and "must not be empty" in empty.output
