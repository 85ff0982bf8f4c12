"""A minimal keep-alive HTTP/1.1 load client for `bench/loadtest.py` (loopback only)."""

from __future__ import annotations

import asyncio
import time

REQUEST_TIMEOUT_S = 600.0  # a request that takes longer counts as an error (status 599)


class RawClient:
    """A minimal keep-alive HTTP/1.1 client over asyncio streams, with a fixed pool of open connections.

    Hand-written on purpose: httpx costs about a millisecond of CPU per request, which on a small shared
    machine makes the load generator, not the server, the bottleneck. The pool is opened up front, like a
    proxy's keep-alive pool, so overload shows up as server answers (429) rather than as connection-setup
    storms in the kernel's accept queue. Bench-only; loopback only.
    """

    def __init__(self, base: str, max_connections: int = 64) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(max_connections)
        self.max_connections = max_connections
        self.all: list[asyncio.StreamWriter] = []

    async def connect(self) -> RawClient:
        for _ in range(self.max_connections):
            self.idle.append(await self._open())
        return self

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, str]]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        async with self.slots:
            reused = bool(self.idle)
            conn = self.idle.pop() if reused else await self._open()
            try:
                status, headers = await self._exchange(conn, head + body)
            except (ConnectionError, asyncio.IncompleteReadError, IndexError):
                if not reused:
                    raise
                # the server closed an idle keep-alive connection (uvicorn: after 5 s): reconnect once
                conn[1].close()
                conn = await self._open()
                status, headers = await self._exchange(conn, head + body)
            if headers.get("connection", "").lower() == "close":
                conn[1].close()
            else:
                self.idle.append(conn)
            return status, headers

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.all.append(writer)
        return reader, writer

    @staticmethod
    async def _exchange(
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], data: bytes
    ) -> tuple[int, dict[str, str]]:
        reader, writer = conn
        writer.write(data)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        await reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers

    async def aclose(self) -> None:
        for w in self.all:
            w.close()


async def _post_raw(client: RawClient, body: bytes) -> tuple[int, float, float]:
    """Send a pre-encoded body; returns (status, client-observed seconds, server-side seconds)."""
    t0 = time.perf_counter()
    try:
        status, headers = await asyncio.wait_for(client.post("/v2/rerank", body), REQUEST_TIMEOUT_S)
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError):
        return 599, time.perf_counter() - t0, float("nan")
    lat = time.perf_counter() - t0
    timing = headers.get("server-timing", "")
    server = float(timing.split("dur=")[1]) / 1e3 if "dur=" in timing else float("nan")
    return status, lat, server
