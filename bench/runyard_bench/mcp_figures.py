"""The MCP figures of ``runyard bench``, against the HTTP figures' server and workers.

* ``mcp_http_tool_rtt_p50_ms`` / ``_p99_ms``: sequential ``tools/call`` of the ``noop``
  workflow's tool over streamable HTTP (``/mcp`` of the server), through the official
  ``mcp`` client SDK, one session, from sending the call to its result;
* ``mcp_stdio_tool_rtt_p50_ms`` / ``_p99_ms``: the same through ``runyard mcp`` (a
  subprocess over stdio, which talks to the server through the HTTP SDK);
* ``mcp_http_concurrent_calls``: ``MCP_CONCURRENT`` tool calls at once over streamable
  HTTP; value = the calls answered with the run's result (every one, or an error says
  how many failed), with the wall time of the burst.

The target: within 5 ms of the HTTP live round trip (``http_live_rtt_*``, measured in the
same minutes on the same server).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from .harness import emit, log

#: Tool calls at once in the concurrency figure.
MCP_CONCURRENT = 100
#: Sequential calls before the timed ones.
WARMUP = 20
TARGET = "within 5 ms of http_live_rtt (the same percentile)"


@asynccontextmanager
async def _http(base_url: str, api_key: str) -> AsyncIterator[Any]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from mcp import Client

    limits = httpx2.Limits(max_connections=MCP_CONCURRENT + 10)
    http = httpx2.AsyncClient(
        headers={"x-api-key": api_key}, timeout=httpx2.Timeout(60), limits=limits
    )
    async with http, Client(streamable_http_client(base_url + "/mcp", http_client=http)) as c:
        yield c


@asynccontextmanager
async def _stdio(base_url: str, api_key: str) -> AsyncIterator[Any]:

    from mcp.client.stdio import StdioServerParameters

    from mcp import Client

    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "runyard", "mcp", "--wait", "30"],
        env={**env, "RUNYARD_URL": base_url, "RUNYARD_API_KEY": api_key},
    )
    async with Client(params) as c:
        yield c


async def _call(client: Any, i: int) -> None:
    result = await client.call_tool("noop", {"input": i})
    if result.is_error or (result.structured_content or {}).get("status") != "SUCCEEDED":
        raise RuntimeError(f"MCP noop call {i}: {result.content}")


async def _round_trips(client: Any, n: int) -> list[float]:
    for i in range(WARMUP):
        await _call(client, i)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        await _call(client, i)
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def mcp_figures(
    base_url: str,
    api_key: str,
    n: int,
    base: dict[str, Any],
    setup: dict[str, Any],
    live: dict[str, float] | None,
    check: Callable[[], None],
) -> None:
    """Emit the MCP figures (``n`` timed calls per transport); ``live``: the HTTP live
    round trip's p50/p99 measured just before, put beside them."""
    for transport, connect in (("http", _http), ("stdio", _stdio)):
        async with connect(base_url, api_key) as client:
            samples = await _round_trips(client, n)
        check()
        p50, p99 = _pct(samples, 50), _pct(samples, 99)
        log(f"mcp {transport}: tool round trip p50={p50:.2f}ms p99={p99:.2f}ms")
        method = (
            f"{WARMUP} warm-ups, then {n} sequential tools/call of the noop workflow's tool "
            "(the tool starts the run and waits for its result) through the official mcp "
            "client SDK, one session, in the benchmark process; each timed from the call "
            "to its SUCCEEDED result; "
            + (
                "streamable HTTP to /mcp of the runyard server"
                if transport == "http"
                else "stdio to a runyard mcp subprocess, which calls the server over HTTP"
            )
        )
        for p, value in (("p50", p50), ("p99", p99)):
            beside = {} if live is None else {f"http_live_rtt_{p}_ms": round(live[p], 3)}
            emit(
                {
                    "figure": f"mcp_{transport}_tool_rtt_{p}_ms",
                    **base,
                    "value": round(value, 3),
                    "unit": "ms",
                    "n": n,
                    "mean_ms": round(statistics.fmean(samples), 3),
                    **beside,
                    **setup,
                    "target": TARGET,
                    "method": method,
                }
            )
    async with _http(base_url, api_key) as client:
        await _call(client, 0)
        t0 = time.perf_counter()
        outcomes = await asyncio.gather(
            *(_call(client, i) for i in range(MCP_CONCURRENT)), return_exceptions=True
        )
        wall_s = time.perf_counter() - t0
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    log(f"mcp http: {MCP_CONCURRENT} concurrent calls in {wall_s:.3f}s, {len(failed)} failed")
    emit(
        {
            "figure": "mcp_http_concurrent_calls",
            **base,
            "value": MCP_CONCURRENT - len(failed),
            "unit": "calls answered with their result",
            "n": MCP_CONCURRENT,
            "errors": len(failed),
            "first_error": repr(failed[0])[:300] if failed else None,
            "wall_s": round(wall_s, 3),
            **setup,
            "target": f"{MCP_CONCURRENT} of {MCP_CONCURRENT}, no error",
            "method": f"{MCP_CONCURRENT} tools/call of the noop tool at once (asyncio.gather) "
            "over one streamable HTTP session to /mcp, each its own POST",
        }
    )
    if failed:
        raise RuntimeError(f"MCP: {len(failed)} of {MCP_CONCURRENT} concurrent calls failed")


__all__ = ["mcp_figures"]
