"""A real uvicorn server in the test's event loop, on a free loopback port, and SSE readers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import httpx
import uvicorn
from starlette.types import ASGIApp

from .support import Sse, parse_sse


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve `app` (its lifespan included) until the block ends; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", http="httptools", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


async def read_sse(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    until: Callable[[list[Sse]], bool] | None = None,
) -> tuple[int, list[Sse]]:
    """GET an SSE route: its status and what it sent, until it ends (or `until` holds, when the
    reader hangs up)."""
    chunks: list[str] = []
    async with client.stream("GET", url, headers=headers) as response:
        async for chunk in response.aiter_text():
            chunks.append(chunk)
            if until is not None and until(parse_sse("".join(chunks))):
                break
    return response.status_code, parse_sse("".join(chunks))


async def raw_request(
    port_url: str, path: str, headers: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An HTTP/1.1 GET on a socket with a small receive buffer, whose answer nobody reads yet."""
    host, _, port = port_url.removeprefix("http://").partition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    return reader, writer


def dechunked(response: bytes) -> tuple[int, bytes]:
    """The status and body of a raw HTTP/1.1 response with a chunked body."""
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return status, bytes(out)
