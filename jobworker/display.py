"""What jobworker shows people: text with its control characters escaped (`printable`), and
URLs with their secrets hidden (`redact_url`). Every terminal output and every URL in a message
or a log line goes through these two."""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

__all__ = ["EscapingFormatter", "printable", "redact_url"]

# C0 controls, DEL and the C1 controls: a terminal acts on these (ESC starts a sequence that can
# set the window title or clear the screen; U+009B is a one-character CSI on some terminals).
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0)]
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


@functools.cache
def _escapes(keep: str) -> dict[int, str]:
    return {c: _NAMED.get(c, f"\\u{c:04x}") for c in _CONTROLS if chr(c) not in keep}


def printable(text: str, keep: str = "") -> str:
    """`text` with every control character but those in `keep` written as an escape (`\\n`,
    `\\t`, `\\r`, else `\\u001b`...). The escapes are valid inside a JSON string, so encoded
    JSON stays JSON; escaping twice changes nothing."""
    if text.isascii() and text.isprintable():
        return text
    return text.translate(_escapes(keep))


class EscapingFormatter(logging.Formatter):
    """Log lines with control characters escaped: the message kept on one line, a traceback on
    its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record), keep="\t")

    def formatException(self, ei: Any) -> str:
        return printable(super().formatException(ei), keep="\n\t")

    def formatStack(self, stack_info: str) -> str:
        return printable(super().formatStack(stack_info), keep="\n\t")


_HIDDEN = "***"
# A parameter that holds a secret, in a URL query (`?password=`), an ODBC connection string
# (`PWD=`, also percent-encoded inside `odbc_connect=`) or a libpq keyword/value string.
_SECRET_PARAM = re.compile(
    r"(?:(?<=[?&;=\s])|(?<=%3B)|(?<=%26)|(?<=%20)|^)"
    r"[\w.-]*(?:pass(?:word|wd|phrase)?|pwd|secret|token)(?P<eq>=|%3D)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """`url` (a database or Redis URL, an ODBC or libpq connection string, or a mistyped one of
    these) with every password replaced by `***`.

    When the text is ambiguous (an unencoded `@`, `/` or `?` in a password, a misspelt scheme)
    more is hidden rather than less; a URL without a secret comes back unchanged.
    """
    return _hide_userinfo(_hide_parameters(url))


def _hide_parameters(text: str) -> str:
    parts: list[str] = []
    position = 0
    while match := _SECRET_PARAM.search(text, position):
        start = match.end()
        end = _value_end(text, start, match)
        parts.append(text[position:start] + _HIDDEN)
        position = end
    parts.append(text[position:])
    return "".join(parts)


def _value_end(text: str, start: int, match: re.Match[str]) -> int:
    """Where the secret value starting at `start` ends."""
    if text.startswith(_HIDDEN, start):
        return start + len(_HIDDEN)  # hidden already
    before = text[match.start() - 1] if match.start() else ""
    if match["eq"] != "=" or (before and before in "?&"):
        # A URL query value runs to the next parameter (a percent-encoded connection string
        # inside one is hidden whole, braces or not).
        end = text.find("&", start)
        return len(text) if end < 0 else end
    opener = text[start : start + 1]
    if opener == "{":  # ODBC: braced, `}}` is a literal brace
        index = start + 1
        while (index := text.find("}", index)) >= 0:
            if text[index + 1 : index + 2] != "}":
                return index + 1
            index += 2
        return len(text)
    if opener in ("'", '"'):  # libpq: quoted, with backslash escapes
        index = start + 1
        while index < len(text):
            if text[index] == "\\":
                index += 2
            elif text[index] == opener:
                return index + 1
            else:
                index += 1
        return len(text)
    # ODBC values run to `;`, spaces included; so does a libpq value here (more is hidden).
    end = text.find(";", start)
    return len(text) if end < 0 else end


def _hide_userinfo(text: str) -> str:
    """`scheme://user:***@host...`: the password runs to the last `@`, which it may contain."""
    scheme_end = text.find("://")
    start = 0 if scheme_end < 0 else scheme_end + 3
    at = text.rfind("@", start)
    if at < 0:
        return text
    userinfo = text[start:at]
    colon = userinfo.find(":")
    if colon < 0:
        return text  # a user name alone
    if scheme_end < 0:
        return _HIDDEN + text[at:]  # no `://`: where the user name ends is anyone's guess
    user = userinfo[:colon]
    if any(c in user for c in "/?#"):
        return text[:start] + _HIDDEN + text[at:]
    return text[: start + colon + 1] + _HIDDEN + text[at:]
