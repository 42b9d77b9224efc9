"""Real routers (vllm-router, sglang-router from PyPI) in front of a simulated H100 + A100 + L40S fleet.

Each router gets 210 requests from the official `openai` client (completions and chat,
streaming and not). Every request must come back with exactly the tokens it asked for;
round robin must split evenly; power-of-two must favour the fastest instance (non-streaming
long calls, so the instances' speeds, not the client's parsing of streamed chunks, set
how many calls each has in flight); each
instance's /metrics must count exactly the requests and tokens it served (the
`x-hermes-instance` header tells the client which instance that was). Timing fidelity at
light load is measured in benchmarks/fleet_load.py, not here.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import time
import urllib.request
from collections import Counter

import pytest
from test_fleet import FleetThread, get, metric

openai = pytest.importorskip("openai", reason="the openai client is in the test extra (pip install -e '.[test]')")

pytestmark = pytest.mark.slow

TIME_SCALE = 10.0
REQUESTS = 210
CONCURRENCY = 24
MODEL = "Llama-3.1-8B"
IDS = ("h100-0", "a100-0", "l40s-0")
SGLANG_LOAD_POLL_S = 30  # sglang-router 0.3's load monitor interval
WARM_TOKENS = 1500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def router_command(router: str, policy: str, port: int, urls: list[str]) -> list[str]:
    exe = shutil.which(router)
    if exe is None:
        pytest.skip(f"{router} is not installed (pip install {router}; it ships a Linux binary)")
    if router == "vllm-router":
        return [exe, "--host", "127.0.0.1", "--port", str(port), "--worker-urls", *urls, "--policy", policy,
                "--worker-startup-check-interval", "1", "--max-concurrent-requests", "512", "--disable-retries",
                "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port())]  # not the shared default 29000
    return [exe, "launch", "--host", "127.0.0.1", "--port", str(port), "--worker-urls", *urls, "--policy", policy,
            "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()), "--disable-retries"]


class Router:
    def __init__(self, router: str, policy: str, urls: list[str]):
        self.port = free_port()
        self.proc = subprocess.Popen(router_command(router, policy, self.port, urls), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"router exited {self.proc.returncode}: {self.proc.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/v1/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        pytest.fail("router did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


async def drive(base_url: str, n: int, max_tokens, warm_until: float | None = None, streaming: bool = True
                ) -> tuple[list[tuple[str, int, int, float]], list[tuple[str, int, int, float]]]:
    """Optionally keep CONCURRENCY long requests running until `warm_until` (monotonic), then send
    n requests (every fourth one pair streaming unless `streaming` is False); returns (warm-up
    results, measured results) as (instance, asked, received, seconds)."""
    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="none", max_retries=0, timeout=120)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> tuple[str, int, int, float]:
        asked = max_tokens(i)
        chat, stream = i % 2 == 0, streaming and i % 4 < 2
        async with sem:
            start = time.monotonic()
            if chat:
                raw = await client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=[{"role": "user", "content": "tell me a story " * (i % 7 + 1)}],
                    max_tokens=asked, stream=stream, extra_body={"ignore_eos": True})
            else:
                raw = await client.completions.with_raw_response.create(
                    model=MODEL, prompt="once upon a time " * (i % 9 + 1), max_tokens=asked, stream=stream,
                    extra_body={"ignore_eos": True})
            instance = raw.headers.get("x-hermes-instance", "?")
            body = raw.parse()
            if stream:
                got = 0
                async for chunk in body:
                    for c in chunk.choices:
                        text = c.delta.content if chat else c.text
                        got += 1 if text else 0
            else:
                assert body.usage.completion_tokens == asked
                text = body.choices[0].message.content if chat else body.choices[0].text
                got = len(text.split())
            return instance, asked, got, time.monotonic() - start

    async def warm_worker(out: list) -> None:
        i = 0
        while time.monotonic() < warm_until:
            out.append(await one(i * 4 + 3))  # non-streaming completions, WARM_TOKENS long
            i += 1

    warm: list = []
    try:
        if warm_until is not None:
            saved, max_tokens = max_tokens, (lambda i: WARM_TOKENS)
            await asyncio.gather(*(warm_worker(warm) for _ in range(CONCURRENCY)))
            max_tokens = saved
        return warm, await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await client.close()


def served_metrics(ft: FleetThread) -> dict[str, tuple[float, float]]:
    out = {}
    for inst in ft.fleet.instances:
        text = get(inst.url + "/metrics")[1]
        out[inst.client_id] = (metric(text, "vllm:request_success_total"), metric(text, "vllm:generation_tokens_total"))
    return out


@pytest.fixture(scope="module", params=["vllm-router", "sglang-router"])
def routed_fleet(request):
    router = request.param
    if shutil.which(router) is None:
        pytest.skip(f"{router} is not installed (pip install {router}; it ships a Linux binary)")
    with FleetThread(time_scale=TIME_SCALE, load_format="vllm" if router == "vllm-router" else "sglang") as ft:
        yield router, ft


def run_through(router_name: str, ft: FleetThread, policy: str, max_tokens, warm_s: float | None = None,
                requests: int = REQUESTS, streaming: bool = True) -> tuple[Counter, dict[str, float]]:
    """Send the calls through the router; (measured calls per instance, mean wall seconds per asked token
    per instance over all calls), after checking every call's tokens and every instance's /metrics."""
    before = served_metrics(ft)
    router = Router(router_name, policy, [i.url for i in ft.fleet.instances])
    try:
        started = time.monotonic()
        router.wait_ready()
        warm, results = asyncio.run(drive(router.url, requests, max_tokens,
                                          None if warm_s is None else started + warm_s, streaming))
    finally:
        router.stop()
    measured = Counter(inst for inst, *_ in results)
    results = results + warm
    per_token = {inst: statistics.fmean(s / asked for i, asked, _, s in results if i == inst)
                 for inst in {i for i, *_ in results}}
    bad = [(inst, asked, got) for inst, asked, got, _ in results if asked != got]
    assert not bad, f"{len(bad)} requests came back short or long: {bad[:5]}"
    counts = Counter(inst for inst, *_ in results)
    assert set(counts) <= set(IDS) and sum(measured.values()) == requests
    # each instance's /metrics counted exactly the requests and tokens it served
    after = served_metrics(ft)
    tokens = Counter()
    for inst, asked, *_ in results:
        tokens[inst] += asked
    for cid in IDS:
        assert after[cid][0] - before[cid][0] == counts[cid], (cid, before, after, counts)
        assert after[cid][1] - before[cid][1] == tokens[cid], (cid, before, after, tokens)
    return measured, per_token


def test_round_robin_splits_evenly(routed_fleet):
    router, ft = routed_fleet
    counts, _ = run_through(router, ft, "round_robin", lambda i: 8 + (i % 5) * 8)
    assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_power_of_two_sends_more_to_the_faster_instance(routed_fleet):
    """Power of two sends a call to the less loaded of two instances, and a slower instance holds each
    call longer (the L40S's decode step is 3.5x the H100's), so it has more in flight and gets fewer
    calls. vllm-router adds its own in-flight count to the polled load, so it reacts at once;
    sglang-router 0.3 compares only the /get_load it polls every 30 s (not configurable), so the fleet
    is kept busy until a poll has seen it loaded before the measured requests go out (it then sends the
    L40S nothing). vllm-router's polled part goes stale for 5 s, which blurs its preference (measured:
    H100 211-251 vs L40S 160-166 of 600), hence 600 calls. The calls are long and not streamed:
    streamed, the test process's client (which shares the GIL with the fleet) parses every chunk and,
    on a busy host, sets the pace of every instance alike (once: L40S 129, H100 113)."""
    router, ft = routed_fleet
    warm = SGLANG_LOAD_POLL_S + 5 if router == "sglang-router" else None
    counts, per_token = run_through(router, ft, "power_of_two", lambda i: 320 + (i % 3) * 32, warm_s=warm,
                                    requests=600, streaming=False)
    assert per_token["h100-0"] < per_token["l40s-0"], per_token  # the simulated speeds show through the fleet
    assert counts["h100-0"] > counts["l40s-0"], (counts, per_token)
