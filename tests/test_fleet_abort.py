"""A caller that disconnects from `hermes fleet` aborts its requests: the simulated instance frees
their KV and batch slots at once, stops generating for them, and counts them as
``vllm:request_success_total{finished_reason="abort"}``. Driven by a real aiohttp client."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from test_fleet import MODEL, FleetThread, get, metric

pytestmark = pytest.mark.slow

LONG = 4000  # tokens: about half a minute of simulated decode on the demo's H100 at time scale 1


def _scrape(url: str) -> dict[str, float]:
    _, text = get(url + "/metrics")
    return {"running": metric(text, "vllm:num_requests_running"),
            "waiting": metric(text, "vllm:num_requests_waiting"),
            "kv": metric(text, "vllm:kv_cache_usage_perc"),
            "tokens": metric(text, "vllm:generation_tokens_total"),
            "aborted": metric(text, "vllm:request_success_total", finished_reason="abort")}


def _wait_idle(url: str, deadline_s: float) -> dict[str, float]:
    end = time.monotonic() + deadline_s
    while True:
        m = _scrape(url)
        if (m["running"], m["waiting"], m["kv"]) == (0, 0, 0) or time.monotonic() > end:
            return m
        time.sleep(0.05)


async def _stream_then_close(url: str, tokens_before_close: int) -> int:
    """Start a long chat stream, read a few token chunks, then drop the connection."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi " * 50}], "max_tokens": LONG,
            "stream": True}
    seen = 0
    async with aiohttp.ClientSession() as s:
        resp = await s.post(url + "/v1/chat/completions", json=body)
        assert resp.status == 200
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"content":" tok"' in line:
                seen += 1
                if seen >= tokens_before_close:
                    break
        resp.close()  # closes the connection mid-stream
    return seen


async def _post_and_give_up(url: str, after_s: float) -> None:
    body = {"model": MODEL, "prompt": "hi " * 50, "max_tokens": LONG}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=after_s)) as s:
        with pytest.raises(asyncio.TimeoutError):
            await s.post(url + "/v1/completions", json=body)


def test_closing_a_stream_aborts_the_request_and_frees_its_kv():
    with FleetThread(time_scale=1.0) as ft:
        url = ft.url(0)
        t0 = time.monotonic()
        assert ft.run(_stream_then_close(url, 5)) >= 5
        m = _wait_idle(url, 5.0)
        freed_s = time.monotonic() - t0
        assert (m["running"], m["waiting"], m["kv"]) == (0, 0, 0), m
        assert freed_s < 10.0  # the request alone would have decoded for tens of seconds
        assert m["aborted"] == 1
        time.sleep(0.5)
        assert _scrape(url)["tokens"] == m["tokens"]  # nothing is generated for it any more
        st = ft.on_loop(lambda: (ft.fleet.sim.aborted, ft.fleet.sim.in_flight(), dict(ft.fleet.pacer.jobs)))
        assert st == (1, [], {})
        out = ft.on_loop(lambda: int(ft.fleet.sim.request_records()["output_tokens"][0]))
        assert 5 <= out < LONG


def test_a_non_streaming_caller_that_gives_up_aborts_too():
    with FleetThread(time_scale=1.0) as ft:
        url = ft.url(0)
        ft.run(_post_and_give_up(url, 1.0))
        m = _wait_idle(url, 5.0)
        assert (m["running"], m["waiting"], m["kv"], m["aborted"]) == (0, 0, 0, 1), m
        assert ft.on_loop(lambda: (ft.fleet.sim.aborted, ft.fleet.sim.completed)) == (1, 0)


def test_a_gateway_stream_closed_during_the_reasoning_aborts_its_whole_pipeline():
    """Multi-stage (RAG, P/D over the network, reasoning branches, a guard): closing the stream
    after a few reasoning tokens leaves nothing of the request anywhere in the simulation."""
    from test_fleet_gateway import MULTI

    async def close_early(url: str) -> int:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "think " * 50}], "max_tokens": 500,
                "stream": True}
        seen = 0
        async with aiohttp.ClientSession() as s:
            resp = await s.post(url + "/v1/chat/completions", json=body)
            async for line in resp.content:
                if b'"reasoning_content":" tok"' in line:
                    seen += 1
                    if seen >= 3:
                        break
            resp.close()
        return seen

    with FleetThread(MULTI, time_scale=1.0, gateway_port=0) as ft:
        assert ft.run(close_early(ft.fleet.gateway.url)) == 3
        sim = ft.fleet.sim

        def left() -> tuple:  # a step in flight when the caller left still ends (simulated milliseconds)
            return (sim.aborted, sim.in_flight(), sim.network.active(),
                    [c.id for c in sim.clients if not c.is_idle()], sum(c.kv_used_now(sim.now_ns) for c in sim.clients))

        end = time.monotonic() + 5
        while ft.on_loop(left) != (1, [], 0, [], 0) and time.monotonic() < end:
            time.sleep(0.05)
        assert ft.on_loop(left) == (1, [], 0, [], 0)
        _, text = get(ft.fleet.gateway.url + "/metrics")
        assert metric(text, "hermes_requests_aborted_total") == 1
