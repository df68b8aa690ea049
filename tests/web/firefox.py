"""Debian's Firefox ESR driven over WebDriver BiDi, for the dashboard's Firefox test.

Playwright's Firefox is a patched build that only its CDN serves; Firefox ESR 128 and later
speak WebDriver BiDi themselves (`--remote-debugging-port`), so a small client over a websocket
is enough: `firefox_page()` starts a headless Firefox with a fresh profile whose prefs switch
off everything that calls outside hosts. Whatever would still try goes to a refusing proxy on
loopback that records it (`FirefoxPage.outside`; `check()` requires none), and a connection to
any other address aborts Firefox (MOZ_DISABLE_NONLOCAL_CONNECTIONS): nothing leaves loopback.
The page's console errors and script errors, policy refusals among them, are collected from
`log.entryAdded`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .test_examples import debian_browser

__all__ = ["FIREFOX", "BiDiError", "FirefoxPage", "firefox", "firefox_page"]

FIREFOX = "/usr/bin/firefox-esr"

# Prefs for a browser that reaches nothing but the test's server. The Remote Agent sets many of
# these itself (remote.prefs.recommended); they are spelled out so no default is relied upon.
PREFS: dict[str, bool | int | str] = {
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "app.update.auto": False,
    "app.update.checkInstallTime": False,
    "app.update.disabledForTesting": True,
    "browser.aboutwelcome.enabled": False,
    "browser.discovery.enabled": False,
    "browser.ml.enable": False,
    "browser.newtabpage.enabled": False,
    "browser.ping-centre.telemetry": False,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.search.update": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.topsites.contile.enabled": False,
    "browser.translations.enable": False,
    "browser.urlbar.quicksuggest.enabled": False,
    "captivedetect.canonicalURL": "",
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "dom.ipc.processPrelaunch.enabled": False,  # no spare tab process: less to start
    "dom.push.connection.enabled": False,
    "extensions.blocklist.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.update.enabled": False,
    "geo.provider.network.url": "",
    "identity.fxaccounts.enabled": False,
    "media.gmp-manager.chromium-update-url": "",
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-manager.url": "",
    "media.gmp-provider.enabled": False,
    "media.gmp-widevinecdm.allow-chromium-update": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.http.speculative-parallel-limit": 0,
    "network.predictor.enabled": False,
    "network.prefetch-next": False,
    "network.trr.mode": 5,
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "services.settings.server": "data:,#remote-settings-dummy/v1",
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.telemetry.unified": False,
}


def firefox() -> str:
    """Debian's Firefox ESR (see `debian_browser`)."""
    return debian_browser(FIREFOX, "firefox-esr")


class BiDiError(Exception):
    """A command the browser refused, or a script that threw."""


def _value(remote: dict[str, Any]) -> Any:
    """A BiDi remote value as Python: primitives, arrays and plain objects (else its type)."""
    kind, value = remote["type"], remote.get("value")
    if kind in ("undefined", "null"):
        return None
    if kind == "number" and isinstance(value, str):
        return float(value)  # "NaN", "-0", "Infinity", "-Infinity"
    if kind == "array":
        return [_value(item) for item in value or []]
    if kind == "object":
        return {key: _value(item) for key, item in value or []}
    return value if kind in ("string", "number", "boolean") else kind


_KINDS = {str: "string", int: "number", float: "number", bool: "boolean"}

_WAITING = """async (source, timeout) => {
    const until = performance.now() + timeout;
    for (;;) {
        const value = (EXPRESSION);
        if (value) return value;
        if (performance.now() > until) throw new Error(`timed out waiting for ${source}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
    }
}"""


class FirefoxPage:
    """The one tab of a Firefox driven over a BiDi websocket, and the errors its page logged."""

    def __init__(self, socket: Any, outside: list[str]) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())
        self.context = ""
        self.errors: list[str] = []
        self.outside = outside  # requests the refusing proxy turned away

    async def _read(self) -> None:
        try:
            async for text in self._socket:
                message = json.loads(text)
                if "id" in message and message["id"] in self._waiting:
                    self._waiting.pop(message["id"]).set_result(message)
                elif message.get("method") == "log.entryAdded":
                    entry = message["params"]
                    if entry["level"] == "error":
                        self.errors.append(f"{entry['type']}: {entry.get('text')}")
        finally:
            for waiting in self._waiting.values():
                if not waiting.done():
                    waiting.set_exception(BiDiError("Firefox closed the connection"))

    async def send(
        self, method: str, params: dict[str, Any], timeout: float = 30.0
    ) -> dict[str, Any]:
        """Run one BiDi command; its result, or BiDiError with the browser's reason."""
        command_id = next(self._ids)
        answer = self._waiting[command_id] = asyncio.get_running_loop().create_future()
        await self._socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        message = await asyncio.wait_for(answer, timeout)
        if message.get("type") == "error":
            raise BiDiError(f"{method}: {message['error']}: {message.get('message')}")
        result: dict[str, Any] = message["result"]
        return result

    async def start(self, width: int, height: int) -> None:
        # Answered once the browser's window has finished starting: seconds, or a good deal
        # more on a machine busy with the rest of the suite.
        await self.send("session.new", {"capabilities": {}}, timeout=90)
        await self.send("session.subscribe", {"events": ["log.entryAdded"]})
        tree = await self.send("browsingContext.getTree", {"maxDepth": 0})
        self.context = tree["contexts"][0]["context"]
        await self.set_viewport(width, height)

    async def set_viewport(self, width: int, height: int) -> None:
        viewport = {"width": width, "height": height}
        await self.send(
            "browsingContext.setViewport", {"context": self.context, "viewport": viewport}
        )

    async def goto(self, url: str) -> None:
        params = {"context": self.context, "url": url, "wait": "complete"}
        await self.send("browsingContext.navigate", params)

    async def evaluate(self, expression: str) -> Any:
        """The value of a script expression in the page (a promise is awaited)."""
        return self._outcome(
            await self.send(
                "script.evaluate",
                {
                    "expression": expression,
                    "target": {"context": self.context},
                    "awaitPromise": True,
                },
            )
        )

    async def call(self, function: str, *args: str | int | float | bool) -> Any:
        """Call a function declaration in the page with primitive arguments."""
        typed = [{"type": _KINDS[type(arg)], "value": arg} for arg in args]
        params = {
            "functionDeclaration": function,
            "arguments": typed,
            "target": {"context": self.context},
            "awaitPromise": True,
        }
        return self._outcome(await self.send("script.callFunction", params))

    @staticmethod
    def _outcome(result: dict[str, Any]) -> Any:
        if result["type"] == "exception":
            raise BiDiError(result["exceptionDetails"]["text"])
        return _value(result["result"])

    async def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        """Wait, checking in the page every 20 ms, until `expression` is truthy; its value."""
        # The expression becomes part of the function here, in the driver: the page's own eval
        # is refused by the dashboard's policy.
        function = _WAITING.replace("EXPRESSION", expression)
        return await self.call(function, expression, timeout * 1000)

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("browsingContext.captureScreenshot", {"context": self.context})
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("session.end", {}), 5)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader

    def check(self) -> None:
        assert not self.errors, "the page logged errors:\n" + "\n".join(self.errors)
        assert not self.outside, "Firefox tried to reach outside hosts: " + ", ".join(self.outside)


@contextlib.asynccontextmanager
async def refusing_proxy() -> AsyncIterator[tuple[int, list[str]]]:
    """An HTTP proxy on loopback that answers 403 to everything and records what was asked."""
    asked: list[str] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            line = await asyncio.wait_for(reader.readline(), 5)
            asked.append(line.decode(errors="replace").strip())
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], asked
    finally:
        server.close()
        await server.wait_closed()


def write_profile(directory: Path, proxy_port: int) -> None:
    prefs = {
        **PREFS,
        # Everything but loopback (never proxied) goes to the refusing proxy.
        "network.proxy.type": 1,
        "network.proxy.http": "127.0.0.1",
        "network.proxy.http_port": proxy_port,
        "network.proxy.ssl": "127.0.0.1",
        "network.proxy.ssl_port": proxy_port,
        "network.proxy.allow_hijacking_localhost": False,
    }
    lines = [
        f"user_pref({json.dumps(name)}, {json.dumps(value)});" for name, value in prefs.items()
    ]
    (directory / "user.js").write_text("\n".join(lines) + "\n")


async def _listening(process: asyncio.subprocess.Process, said: list[str]) -> str:
    """The BiDi websocket URL Firefox prints on stderr once it listens."""
    assert process.stderr is not None
    while line := await process.stderr.readline():
        text = line.decode(errors="replace").strip()
        said.append(text)
        if text.startswith("WebDriver BiDi listening on "):
            return text.removeprefix("WebDriver BiDi listening on ")
    raise BiDiError("Firefox ended before listening: " + "\n".join(said[-20:]))


@contextlib.asynccontextmanager
async def firefox_page(width: int, height: int) -> AsyncIterator[FirefoxPage]:
    """A headless Firefox ESR with a fresh profile and one tab of `width` x `height`."""
    from websockets.asyncio.client import connect

    executable = firefox()
    said: list[str] = []
    drain: asyncio.Task[None] | None = None
    with tempfile.TemporaryDirectory(prefix="jw-firefox-") as profile:
        async with refusing_proxy() as (proxy_port, outside):
            write_profile(Path(profile), proxy_port)
            process = await asyncio.create_subprocess_exec(
                executable,
                *("--headless", "--no-remote", "-profile", profile),
                "--remote-debugging-port=0",  # a free port, printed on stderr
                "about:blank",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                # Firefox's switch for its own test runs: a connection to anything but a local
                # address aborts it, and it honours the remote-settings server in the prefs.
                env={**os.environ, "MOZ_DISABLE_NONLOCAL_CONNECTIONS": "1"},
            )
            try:
                url = await asyncio.wait_for(_listening(process, said), 60)
                drain = asyncio.create_task(_drain(process))
                async with connect(url + "/session", max_size=None) as socket:
                    page = FirefoxPage(socket, outside)
                    try:
                        await page.start(width, height)
                        yield page
                    finally:
                        await page.close()
            finally:
                if drain is not None:
                    drain.cancel()
                if process.returncode is None:
                    process.terminate()
                    try:
                        await asyncio.wait_for(process.wait(), 10)
                    except TimeoutError:
                        process.kill()
                        await process.wait()


async def _drain(process: asyncio.subprocess.Process) -> None:
    """Read Firefox's stderr so it never blocks on a full pipe."""
    assert process.stderr is not None
    while await process.stderr.read(65536):
        pass
