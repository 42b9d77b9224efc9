"""The HTTP front (`hermes fleet`): OpenAI shapes, per-instance metrics and load, and the pacer's clock."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.fleet.app import Fleet, fleet_spec
from server.fleet.pacer import Pacer
from server.fleet.requests import CHARS_PER_TOKEN, Limits
from sim_engine import Simulation, load_spec

ROOT = Path(__file__).resolve().parent.parent
HETERO = "hetero-demo"  # H100 + A100 + L40S serving Llama-3.1-8B
MODEL = "Llama-3.1-8B"


class FleetThread:
    """A Fleet on its own asyncio loop in a thread, listening on free ports."""

    def __init__(self, spec_source=HETERO, time_scale: float = 20.0, **kw):
        self.spec = fleet_spec(spec_source)
        self.kw = dict(time_scale=time_scale, base_port=0, **kw)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.fleet: Fleet | None = None

    def __enter__(self) -> FleetThread:
        self.thread.start()
        self.fleet = Fleet(self.spec, **self.kw)
        self.run(self.fleet.start())
        return self

    def __exit__(self, *exc) -> None:
        self.run(self.fleet.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def on_loop(self, fn):
        """Call fn() on the fleet's loop (the simulation is only touched there)."""
        async def call():
            return fn()
        return self.run(call())

    def url(self, i: int = 0) -> str:
        return self.fleet.instances[i].url


def post(url: str, body, timeout: float = 30) -> tuple[int, dict | str, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read().decode()
            status, headers = r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        text, status, headers = e.read().decode(), e.code, dict(e.headers)
    try:
        return status, json.loads(text), headers
    except ValueError:
        return status, text, headers


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sse_events(text: str) -> list:
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            payload = block[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^([^\s{]+)(\{([^}]*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
            found = True
    assert found, f"no sample {name}{labels}"
    return total


@pytest.fixture(scope="module")
def fleet():
    with FleetThread() as ft:
        yield ft


# ---------------------------------------------------------------- OpenAI shapes


@pytest.mark.slow
def test_completion_counts_tokens_and_usage(fleet):
    status, body, headers = post(fleet.url(0) + "/v1/completions",
                                 {"model": MODEL, "prompt": "x" * 40, "max_tokens": 7, "ignore_eos": True})
    assert status == 200, body
    assert body["object"] == "text_completion"
    assert body["usage"] == {"prompt_tokens": 40 // CHARS_PER_TOKEN, "completion_tokens": 7, "total_tokens": 17}
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "length" and len(choice["text"].split()) == 7
    assert headers["x-hermes-instance"] == "h100-0"


@pytest.mark.slow
def test_prompt_token_ids_set_the_prompt_length_and_n_gives_choices(fleet):
    status, body, _ = post(fleet.url(1) + "/v1/completions",
                           {"prompt": list(range(123)), "max_tokens": 3, "n": 3})
    assert status == 200, body
    assert body["usage"]["prompt_tokens"] == 123 and body["usage"]["completion_tokens"] == 9
    assert sorted(c["index"] for c in body["choices"]) == [0, 1, 2]
    status, body, _ = post(fleet.url(1) + "/v1/completions", {"prompt_token_ids": [1] * 50, "max_tokens": 2})
    assert status == 200 and body["usage"]["prompt_tokens"] == 50


@pytest.mark.slow
def test_chat_stream_releases_one_chunk_per_token_then_usage_and_done(fleet):
    status, text, headers = post(fleet.url(2) + "/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 12,
        "stream": True, "stream_options": {"include_usage": True}})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    tokens = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(tokens) == 12
    assert tokens[-1]["choices"][0]["finish_reason"] == "length"
    assert all(t["choices"][0]["finish_reason"] is None for t in tokens[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12
    assert chunks[-1]["usage"]["prompt_tokens"] == 3 + 4 + 3  # reply primer + per-message + ceil(11 / 4)


@pytest.mark.slow
def test_streamed_tokens_arrive_paced_by_the_simulated_clock(fleet):
    """At time scale 20, a 200-token stream on the L40S lasts its simulated time / 20, spread out."""
    url = fleet.url(2) + "/v1/completions"
    body = json.dumps({"prompt": [1] * 64, "max_tokens": 200, "stream": True}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    stamps = []
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=60) as r:
        for line in r:
            if line.startswith(b"data: {"):
                stamps.append(time.monotonic() - t0)
    assert len(stamps) == 200
    rec = fleet.on_loop(lambda: {k: v.copy() for k, v in fleet.fleet.sim.request_records().items()})
    wall_expected = (int(rec["finish_ns"][-1]) - int(rec["arrival_ns"][-1])) / 1e9 / 20
    assert stamps[-1] >= wall_expected * 0.9  # never ahead of the scaled clock (minus the arrival rounding)
    assert stamps[100] - stamps[0] > 0.3 * wall_expected  # tokens are spread, not sent in one burst


@pytest.mark.slow
def test_models_health_and_get_load_formats():
    with FleetThread(time_scale=1.0, load_format="sglang") as ft:
        status, body = get(ft.url(0) + "/v1/models")
        assert status == 200 and json.loads(body)["data"][0]["id"] == MODEL
        assert get(ft.url(0) + "/health")[0] == 200
        load = json.loads(get(ft.url(0) + "/get_load")[1])
        assert load == [{"dp_rank": 0, "num_reqs": 0, "num_waiting_reqs": 0, "num_tokens": 0}]

        done = threading.Event()

        def long_call():
            post(ft.url(0) + "/v1/completions", {"prompt": [1] * 10, "max_tokens": 400, "n": 4})
            done.set()

        threading.Thread(target=long_call, daemon=True).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            load = json.loads(get(ft.url(0) + "/get_load")[1])
            if load[0]["num_reqs"] == 4 and load[0]["num_tokens"] >= 40:  # prompts (10 each) in the KV cache
                break
            time.sleep(0.01)
        assert load[0]["num_reqs"] == 4 and load[0]["num_tokens"] >= 40
        assert json.loads(get(ft.url(1) + "/get_load")[1])[0]["num_reqs"] == 0  # another instance
        assert done.wait(30)
    with FleetThread(time_scale=1.0) as ft:
        assert json.loads(get(ft.url(0) + "/get_load")[1]) == {"load": 0}


@pytest.mark.slow
def test_metrics_are_per_instance_and_match_the_calls_served():
    with FleetThread(time_scale=50.0) as ft:
        served = {0: 0, 1: 0, 2: 0}
        for i in range(9):
            status, body, _ = post(ft.url(i % 3) + "/v1/completions", {"prompt": [1] * 20, "max_tokens": 5 + i})
            assert status == 200
            served[i % 3] += 1
        for i, inst in enumerate(ft.fleet.instances):
            status, text = get(inst.url + "/metrics")
            assert status == 200
            assert metric(text, "vllm:e2e_request_latency_seconds_count") == served[i]
            assert metric(text, "vllm:request_success_total") == served[i]
            assert metric(text, "vllm:generation_tokens_total") == sum(5 + k for k in range(i, 9, 3))
            assert metric(text, "vllm:prompt_tokens_total") == 20 * served[i]
            assert metric(text, "vllm:num_requests_running") == 0
            assert metric(text, "vllm:cache_config_info", block_size="16") == 1
            blocks = re.search(r'num_gpu_blocks="(\d+)"', text)
            assert blocks and int(blocks.group(1)) > 0
            assert metric(text, "vllm:request_success_total", finished_reason="length") == served[i]
            families = {f.name for f in text_string_to_metric_families(text)}  # valid exposition text
            assert {"vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds",
                    "vllm:cache_config_info"} <= families
            assert metric(text, "hermes_fleet_lag_seconds") >= 0
            assert metric(text, "hermes_fleet_time_scale") == 50.0


@pytest.mark.slow
def test_a_prompt_longer_than_the_context_is_a_400_and_changes_nothing(fleet):
    before = fleet.on_loop(lambda: fleet.fleet.sim.injected)
    status, body, _ = post(fleet.url(0) + "/v1/completions", {"prompt": [1] * 1000, "max_tokens": 131072})
    assert status == 400 and body["error"]["param"] == "max_tokens"
    assert "maximum context length is 131072" in body["error"]["message"]
    assert fleet.on_loop(lambda: fleet.fleet.sim.injected) == before


@pytest.mark.slow
def test_a_full_instance_answers_429():
    with FleetThread(time_scale=1.0, max_inflight=2) as ft:
        results = []

        def call():
            results.append(post(ft.url(0) + "/v1/completions", {"prompt": "x", "max_tokens": 300})[0])

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while ft.fleet.instances[0].inflight < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        status, body, _ = post(ft.url(0) + "/v1/completions", {"prompt": "x", "max_tokens": 3})
        assert status == 429 and body["error"]["type"] == "RateLimitError"
        for t in threads:
            t.join(30)
        assert results == [200, 200]


# ---------------------------------------------------------------- the pacer, on a fake clock


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_pacer_never_runs_ahead_and_releases_tokens_between_first_and_last():
    spec = fleet_spec(HETERO)
    sim = Simulation(spec, record_events=True)
    clock = FakeClock()
    pacer = Pacer(sim, time_scale=2.0, clock=clock)
    call = pacer.submit("h100-0", MODEL, (500,), [64], 1)
    (job,) = call.jobs
    seen = []
    while not job.done:
        clock.t += 0.0005
        pacer.step(clock.t)
        assert sim.now_ns <= pacer.sim_now_target()  # the engine never runs ahead of the scaled clock
        seen.append((sim.now_ns, job.released))
        if not job.done:
            assert job.released <= job.output - 1
    ttft_ns, end_ns = job.first_ns, job.done_ns
    assert job.released == 64 and end_ns > ttft_ns > 0
    # every token but the last is released between the first token and the completion, in order
    counts = [r for _, r in seen]
    assert counts == sorted(counts)
    mid = [t for t, r in seen if 1 < r < 64]
    assert mid and min(mid) > ttft_ns and max(mid) <= end_ns
    # the simulated time of the pacer matches the wall clock x scale
    assert abs(pacer.sim_now_target() - (clock.t - pacer.wall0) * 2.0 * 1e9) < 1e3


def test_pacer_with_time_scale_below_one_still_completes():
    spec = fleet_spec(HETERO)
    sim = Simulation(spec, record_events=True)
    clock = FakeClock()
    pacer = Pacer(sim, time_scale=0.5, clock=clock)
    call = pacer.submit("l40s-0", MODEL, (10, 20), [3, 4], 1)
    for _ in range(10000):
        clock.t += 0.002
        pacer.step(clock.t)
        if call.finished:
            break
    assert call.finished and [j.released for j in call.jobs] == [3, 4]


def test_limits_default_bound_every_size():
    lim = Limits()
    assert lim.max_body_bytes <= 64 << 20 and lim.max_n <= 64 and lim.max_choices <= 256


# ---------------------------------------------------------------- the command line


@pytest.mark.slow
def test_hermes_fleet_command_prints_listeners_and_writes_the_endpoints_file(tmp_path):
    eps = tmp_path / "endpoints.yaml"
    urls = tmp_path / "urls.txt"
    procs = []
    try:
        for path in (eps, urls):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "server.cli", "fleet", HETERO, "--base-port", "0", "--endpoints-file",
                 str(path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for p in procs:
            lines = [p.stdout.readline() for _ in range(4)]
            assert lines[-1].startswith("hermes fleet ready: 3 instances"), lines
            assert [ln.split()[2] for ln in lines[:3]] == ["h100-0", "a100-0", "l40s-0"]
        import yaml

        doc = yaml.safe_load(eps.read_text())
        assert [e["name"] for e in doc["endpoints"]] == ["h100-0", "a100-0", "l40s-0"]
        assert [e["hardware"] for e in doc["endpoints"]] == ["H100-SXM", "A100-80GB", "L40S"]
        lines = urls.read_text().split()
        assert len(lines) == 3 and all(u.startswith("http://127.0.0.1:") for u in lines)
        status, body, _ = post(lines[2] + "/v1/completions", {"prompt": "hi", "max_tokens": 2})
        assert status == 200 and body["usage"]["completion_tokens"] == 2
    finally:
        for p in procs:
            p.terminate()
            assert p.wait(15) == 0


def _run_workload(spec, background=None) -> Simulation:
    sim = Simulation(spec, record_events=True)
    clock = FakeClock()
    pacer = Pacer(sim, time_scale=1.0, clock=clock)
    pacer.background = background
    for _ in range(2000):  # 20 simulated seconds
        clock.t += 0.01
        pacer.step(clock.t)
    return sim


def test_workload_flag_keeps_the_spec_generator_and_its_router():
    sim = _run_workload(fleet_spec("hetero-poisson", workload=True))  # least_loaded
    assert sim.injected > 10 and sim.completed > 0 and sim.dropped == 0
    # routed as the offline engine routes the same spec over the same 20 s
    offline = Simulation(load_spec("hetero-poisson"))
    offline.advance(until_ns=sim.now_ns)
    served = [c.requests_completed_total + c.num_running + c.num_waiting for c in sim.state().clients]
    assert served == [c.requests_completed_total + c.num_running + c.num_waiting for c in offline.state().clients]
    assert Simulation(fleet_spec("hetero-poisson"), record_events=True).source is None  # off by default


def test_workload_of_an_external_router_spec_is_spread_round_robin():
    from server.fleet.router import RoundRobin

    sim = _run_workload(fleet_spec("hetero-poisson", {"router.policy": "external"}, workload=True), RoundRobin())
    assert sim.injected > 10 and sim.completed > 0 and sim.dropped == 0
    served = [c.requests_completed_total + c.num_running + c.num_waiting for c in sim.state().clients]
    assert sum(served) == sim.injected and max(served) - min(served) <= 1, served  # round robin


def test_one_tick_per_client_step_gives_every_request_in_the_batch_its_token_at_once():
    sim = Simulation(fleet_spec(HETERO), record_events=True)
    clock = FakeClock()
    pacer = Pacer(sim, time_scale=1.0, clock=clock)
    calls = [pacer.submit("h100-0", MODEL, (200,), [40], 1) for _ in range(3)]
    jobs = [c.jobs[0] for c in calls]
    released_at: dict[int, list[int]] = {}  # simulated time of a release -> jobs that got a token then
    last = [0, 0, 0]
    while not all(c.finished for c in calls):
        clock.t += 0.0005
        pacer.step(clock.t)
        for i, j in enumerate(jobs):
            if 1 < j.released <= j.output - 1 and j.released != last[i]:
                released_at.setdefault(j.clock_ns, []).append(i)
            last[i] = j.released
    assert all(j.released == 40 for j in jobs)
    # the three prefilled in one batch: from then on every tick gave each of them a token
    assert len(released_at) > 20 and all(sorted(v) == [0, 1, 2] for v in released_at.values()), released_at
    ticks = sorted(released_at)
    gaps = {b - a for a, b in zip(ticks, ticks[1:], strict=False)}
    assert max(gaps) - min(gaps) <= max(gaps) // 5  # one step apart (the step time changes little)


class _FakeTransport:
    def __init__(self, buffered: int = 0, closing: bool = False):
        self.buffered, self.closing, self.data = buffered, closing, b""

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.data += data


def test_direct_sink_writes_chunked_frames_or_leaves_the_tokens_to_the_handler():
    from server.fleet.pacer import Call, Job
    from server.fleet.responses import SINK_BUFFER_LIMIT, direct_sink

    job = Job("r", "c", Call(), 0, 10, 8, released=3, sent=1)
    t = _FakeTransport()
    assert direct_sink(t, [b"data: x\n\n"])(job) and job.sent == 3
    assert t.data == b"9\r\ndata: x\n\n\r\n" * 2  # two tokens, each one chunked-transfer frame
    for full in (_FakeTransport(buffered=SINK_BUFFER_LIMIT + 1), _FakeTransport(closing=True)):
        job.released = 5
        assert not direct_sink(full, [b"data: x\n\n"])(job) and full.data == b"" and job.sent == 3


def test_a_refusing_sink_wakes_the_handler_instead():
    sim = Simulation(fleet_spec(HETERO), record_events=True)
    clock = FakeClock()
    pacer = Pacer(sim, time_scale=1.0, clock=clock)
    call = pacer.submit("h100-0", MODEL, (200,), [30], 1)
    offered = []
    call.sink = lambda job: offered.append(job.released) or False
    woken = []
    call.notify = lambda: woken.append(call.jobs[0].released)
    while not call.finished:
        clock.t += 0.0005
        pacer.step(clock.t)
    assert offered and woken[-1] == 30 and set(offered) <= set(woken)
