"""Open-loop latency of single-flow /classify requests at a fixed rate, with httpx.

A request is started every 1/RATE s whether or not earlier ones finished (so a slow server
shows up as queueing, not as a lower rate), over one keep-alive connection pool.
    uv run python benchmarks/latency.py http://127.0.0.1:3000 --rate 100 --seconds 30
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from typing import Annotated

import httpx
import typer

from benchmarks.flows import records


async def _run(url: str, rate: float, seconds: float) -> list[float]:
    bodies = [json.dumps({"flows": [record]}).encode() for record in records(500)]
    headers = {"Content-Type": "application/json"}
    if os.environ.get("DESY_API_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['DESY_API_TOKEN']}"
    latencies: list[float] = []
    failures = 0

    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=httpx.Limits(max_connections=32)
    ) as client:

        async def one(body: bytes) -> None:
            nonlocal failures
            started = time.perf_counter()
            response = await client.post("/classify", content=body)
            latencies.append((time.perf_counter() - started) * 1000)
            failures += response.status_code != 200

        for body in bodies[:20]:  # warm the connections
            await one(body)
        latencies.clear()
        tasks = []
        start = time.perf_counter()
        for index in range(int(rate * seconds)):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies[index % len(bodies)])))
        await asyncio.gather(*tasks)
    if failures:
        raise SystemExit(f"{failures} requests failed")
    return latencies


def main(
    url: str,
    rate: Annotated[float, typer.Option()] = 100.0,
    seconds: Annotated[float, typer.Option()] = 30.0,
) -> None:
    latencies = sorted(asyncio.run(_run(url, rate, seconds)))
    pct = lambda p: latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]
    print(
        f"{len(latencies)} single-flow requests at {rate:.0f}/s: p50 {pct(50):.2f} ms, p90 {pct(90):.2f} ms, "
        f"p99 {pct(99):.2f} ms, max {latencies[-1]:.2f} ms, mean {statistics.fmean(latencies):.2f} ms"
    )


if __name__ == "__main__":
    typer.run(main)
