"""`mssql+pyodbc://` URLs as ODBC connection strings."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from jobworker.display import redact_url
from jobworker.errors import ConfigurationError

__all__ = ["DEFAULT_DRIVER", "odbc_connection_string", "with_application_name"]

DEFAULT_DRIVER = "ODBC Driver 18 for SQL Server"
_SCHEMES = ("mssql+pyodbc", "mssql")
_ODBC_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*$")
# Given by the URL's own parts, never as query parameters.
_URL_PARTS = {"server", "address", "addr", "database", "uid", "pwd"}
_APP_KEYWORD = re.compile(r"(?:^|;)\s*app\s*=", re.IGNORECASE)
_FORMS = (
    "expected mssql+pyodbc://user:password@host:port/database?driver=... "
    "or mssql+pyodbc:///?odbc_connect=..."
)

Params = list[tuple[str, str]]


class _BadURL:
    """Builds the `ConfigurationError`s of one URL, its password hidden."""

    def __init__(self, url: str) -> None:
        self.prefix = f"bad SQL Server URL {redact_url(url)!r}"

    def __call__(self, detail: str) -> ConfigurationError:
        return ConfigurationError(f"{self.prefix}: {detail}")


def odbc_connection_string(url: str) -> str:
    """The ODBC connection string for a `mssql+pyodbc://` URL.

    `mssql+pyodbc://user:password@host:port/database?driver=...&Encrypt=yes`: host, port, database
    and credentials become SERVER, DATABASE, UID and PWD; `driver` defaults to ODBC Driver 18 for
    SQL Server; other query parameters are passed through as ODBC keywords.
    `mssql+pyodbc:///?odbc_connect=<url-encoded connection string>` is used as it is.
    """
    bad = _BadURL(url)
    scheme, sep, _rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise bad(_FORMS)
    parts = urlsplit(url)
    if parts.fragment:
        raise bad("a URL fragment ('#...') is not allowed")
    params = _query_params(parts, bad)
    if any(key.lower() == "odbc_connect" for key, _ in params):
        return _given_connection_string(parts, params, bad)
    fields = [*_server_fields(parts, bad), *_credentials(parts)]
    driver, keywords = _driver_and_keywords(params, bad)
    return ";".join(["DRIVER={" + driver.replace("}", "}}") + "}", *fields, *keywords])


def with_application_name(connection_string: str, name: str | None) -> str:
    """`connection_string` with APP=`name` (the program_name of sys.dm_exec_sessions), unless
    it names an APP itself."""
    if name is None or _APP_KEYWORD.search(connection_string):
        return connection_string
    return f"{connection_string.rstrip().rstrip(';')};APP={_odbc_value(name)}"


def _query_params(parts: SplitResult, bad: _BadURL) -> Params:
    try:
        params = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise bad("the query string does not parse") from None
    seen: set[str] = set()
    for key, _value in params:
        if key.lower() in seen:
            raise bad(f"parameter {key!r} is given twice")
        seen.add(key.lower())
    return params


def _given_connection_string(parts: SplitResult, params: Params, bad: _BadURL) -> str:
    """`?odbc_connect=...`: the connection string as given, once decoded."""
    if parts.netloc or parts.path not in ("", "/") or len(params) != 1:
        raise bad("with odbc_connect, give nothing else: mssql+pyodbc:///?odbc_connect=...")
    connect = params[0][1].strip()
    if "=" not in connect:
        raise bad("odbc_connect is not an ODBC connection string")
    return connect


def _server_fields(parts: SplitResult, bad: _BadURL) -> list[str]:
    """SERVER and DATABASE, from the URL's host, port and path."""
    host = unquote(parts.hostname or "")
    if not host:
        raise bad(f"no host; {_FORMS}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise bad("the port is not a number from 1 to 65535")
    database = unquote(parts.path.removeprefix("/"))
    if not database:
        raise bad(f"no database name; {_FORMS}")
    if "/" in database:
        raise bad("the database name contains '/'")
    server = host if port is None else f"{host},{port}"
    return [f"SERVER={_odbc_value(server)}", f"DATABASE={_odbc_value(database)}"]


def _credentials(parts: SplitResult) -> list[str]:
    """UID and PWD, when the URL names a user (none: integrated or Entra ID authentication)."""
    if parts.username is None:
        return []
    return [
        f"UID={_odbc_value(unquote(parts.username))}",
        f"PWD={_odbc_value(unquote(parts.password or ''))}",
    ]


def _driver_and_keywords(params: Params, bad: _BadURL) -> tuple[str, list[str]]:
    """The driver's name and the other query parameters as ODBC keywords."""
    driver = DEFAULT_DRIVER
    keywords: list[str] = []
    for key, value in params:
        if key.lower() == "driver":
            driver = value.strip().strip("{}")
            if not driver:
                raise bad("the driver parameter is empty")
        elif key.lower() in _URL_PARTS:
            raise bad(
                f"give {key!r} in the URL itself (user:password@host:port/database), "
                "not as a query parameter"
            )
        elif not _ODBC_KEY.match(key):
            raise bad(f"{key!r} is not an ODBC keyword")
        else:
            keywords.append(f"{key}={_odbc_value(value)}")
    return driver, keywords


def _odbc_value(value: str) -> str:
    """A value for an ODBC connection string, braced when it needs to be."""
    if value == "" or value != value.strip() or any(c in value for c in ";{}="):
        return "{" + value.replace("}", "}}") + "}"
    return value
