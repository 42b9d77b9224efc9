"""How much streaming traffic the HTTP front (`hermes fleet`) sustains at time scale 1.

The front runs in its own process (one Python thread: the front is single-threaded, so this
is its one-core capacity) serving 8 simulated H100s with Llama-3.1-8B, so the simulated
cluster is not the bottleneck. This process sends open-loop streaming completions (256
output tokens each, `ignore_eos`) round robin over the instances, at rising request rates;
a rate is sustained when every stream comes back with its 256 tokens and a usage chunk that
counts them, and the front's `hermes_fleet_lag_seconds` (polled twice a second) stays at or
below 50 ms. The load generator reads its streams every 2 to 25 ms (`Poller`: longer at higher
rates), so at high rates one read takes several tokens: it is the cheapest client that still
checks every token count.

Before that, at light load (one stream at a time), it compares client-measured TTFT and
inter-token latency with the simulated ones (from the instances' vLLM histograms).

Each step also reports the front's CPU time per stream (from /proc; it grows when other jobs
share the cores and their caches, and shrinks when the front lags, since a late pass writes
several tokens per stream at once): one core divided by it bounds the front's capacity; the
load generator's own CPU per stream (its share of the cores);
and the host probe's lag: how late an idle process wakes from a 5 ms sleep over the same
interval, the baseline the front's lag compares with. On a shared machine the front is
descheduled now and then, and when the probe is 50 ms late no rate can pass.

Options: `--rates R ...`, `--step-s S`, `--light-requests N` (0 skips the light-load part),
`--all-rates` (go on after a failed rate, to compare CPU per stream), `--tokens N` (output tokens per
stream), `--profile FILE` (the front under cProfile).

Prints per-step results and, last, `fleet_max_requests_per_s=<x>` (0 when even the first
rate fails). Goal (issue 10): at least 200 requests/s.

    PYTHONPATH=. python benchmarks/fleet_load.py            # full run (~2 min)
    PYTHONPATH=. python benchmarks/fleet_load.py --smoke    # seconds; asserts nothing about timing
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.cli.fleet import read_start_lines  # noqa: E402

SPEC = {
    "name": "fleet-load",
    "seed": 0,
    "clients": [{"id": "h100", "hardware": "H100-SXM", "model": "Llama-3.1-8B", "replicas": 8,
                 "scheduler": {"batching": "chunked"}}],
    "workload": {"arrival": {"process": "none"}},
}
LAG_LIMIT_S = 0.05
OUTPUT_TOKENS = 256
PROMPT_TOKENS = 128
# The load generator reads its streams every `rate x POLL_S_PER_RATE` seconds (within the bounds): about
# as many reads a second at any rate, prompt reads (as a client's) at low rates, several tokens a read at high.
POLL_S_PER_RATE, POLL_MIN_S, POLL_MAX_S = 1e-4, 0.002, 0.025


class Front:
    """`hermes fleet` in a subprocess; its listener URLs."""

    def __init__(self, spec_path: Path, profile: str | None = None):
        prof = ["-m", "cProfile", "-o", profile] if profile else []
        self.proc = subprocess.Popen(
            [sys.executable, *prof, "-m", "server.cli", "fleet", str(spec_path), "--base-port", "0",
             "--time-scale", "1", "--log-level", "error"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.urls = list(read_start_lines(self.proc.stdout).instances.values())  # type: ignore[arg-type]
        if not self.urls:
            raise RuntimeError("hermes fleet did not start")

    def cpu_s(self) -> tuple[float, float]:
        """User and system (kernel) CPU seconds the front has used (Linux /proc; zeros elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0, 0.0
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def _metric_sum(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


async def _scrape(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url + "/metrics") as r:
        return await r.text()


PROBE = """
import sys, time
worst, mark = 0.0, time.monotonic()
while True:
    t = time.monotonic()
    time.sleep(0.005)
    worst = max(worst, time.monotonic() - t - 0.005)
    if t - mark >= 0.5:
        print(worst, flush=True)
        worst, mark = 0.0, t
"""


class HostProbe:
    """The baseline lag of the host itself: an idle process that sleeps 5 ms at a time and reports how
    late it woke (worst per half second). When the host is this late, no process on it meets the lag
    limit, the front included; the benchmark prints it next to the front's lag."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", PROBE], stdout=subprocess.PIPE, text=True)
        self.samples: list[float] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.samples.append(float(line))

    def worst_since(self, start: int) -> float:
        return max(self.samples[start:], default=0.0)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


SINK = """
import selectors, socket, sys
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
sel = selectors.DefaultSelector()
conns = [srv.accept()[0] for _ in range(int(sys.argv[1]))]
for c in conns:
    sel.register(c, selectors.EVENT_READ)
while conns:
    for key, _ in sel.select():
        if not key.fileobj.recv(1 << 16):
            sel.unregister(key.fileobj)
            conns.remove(key.fileobj)
"""


def send_floor(sends: int = 20000, streams: int = 64, size: int = 160) -> float:
    """The host's floor for one token: CPU seconds this process spends in one `size`-byte loopback TCP
    send (a token chunk's size), to a separate reading process over `streams` connections, one send
    per token as the front makes. The kernel does the receiver's TCP work in the sender's send, so this
    is what any HTTP front pays per streamed token on this host, before any Python."""
    reader = subprocess.Popen([sys.executable, "-c", SINK, str(streams)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(reader.stdout.readline())  # type: ignore[union-attr]
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(streams)]
        for c in conns:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's transports set it
        data = b"x" * size
        cpu0 = time.process_time()
        for i in range(sends):
            conns[i % streams].send(data)
        cpu = time.process_time() - cpu0
        for c in conns:
            c.close()
    finally:
        reader.wait(30)
    return cpu / sends


class _Tally:
    """One streaming completion's response, fed its bytes as they arrive: the status, the token chunks
    (one `"text"` field each), the time of the first and last, and the usage chunk's counts. The call
    has ended at the chunked body's last chunk (any other status: at its first bytes)."""

    MARK = b'"text"'
    END = b"\r\n0\r\n\r\n"
    TAIL = 1024  # bytes kept: they hold the usage chunk, [DONE] and the last chunk when the call ends

    def __init__(self) -> None:
        self.status, self.got, self.first, self.last, self.tail = 0, 0, 0.0, 0.0, b""

    def feed(self, data: bytes, now: float) -> bool:
        """Count `data`'s token chunks (a mark split between two reads counted once); True once ended."""
        n = data.count(self.MARK) + (self.tail[-len(self.MARK) + 1:] + data[:len(self.MARK) - 1]).count(self.MARK)
        buf = self.tail + data
        if not self.status and len(buf) >= 12:  # until then, buf is all of the response so far
            code = buf[9:12]
            self.status = int(code) if code.isdigit() else -1
        self.tail = buf[-self.TAIL:]
        if n:
            self.last = now
            if not self.got:
                self.first = now
            self.got += n
        return (self.status != 0 and self.status != 200) or self.tail.endswith(self.END)

    def usage(self) -> tuple[int, int]:
        """(prompt_tokens, completion_tokens) of the usage chunk; (-1, -1) without one."""
        found = [re.search(rb'"%s_tokens":(\d+)' % k, self.tail) for k in (b"prompt", b"completion")]
        return (int(found[0][1]), int(found[1][1])) if all(found) else (-1, -1)


def _request(url: str, tokens: int) -> tuple[str, int, bytes]:
    """(host, port, the HTTP/1.1 request) of one streaming completion that asks for its usage."""
    body = json.dumps({"prompt": [1] * PROMPT_TOKENS, "max_tokens": tokens, "stream": True, "ignore_eos": True,
                       "stream_options": {"include_usage": True}}).encode()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return host, int(port), head + body


def _result(t: _Tally, tokens: int, start: float) -> tuple[int, float, float, float]:
    """(token chunks, start, first, last); the chunk count is -1 when the call failed, returned another
    count than asked, or its usage does not match."""
    if t.status != 200 or t.got != tokens or t.usage() != (PROMPT_TOKENS, tokens):
        return -1, start, start, start
    return t.got, start, t.first, t.last


class _StreamCounter(asyncio.Protocol):
    """Light load: one call at a time on a kept-alive connection, read as soon as its bytes arrive (the
    times of the first and last token are the client-measured TTFT and ITL)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future | None = None
        self.tally = _Tally()

    def call(self, request: bytes, done: asyncio.Future) -> None:
        self.done, self.tally = done, _Tally()
        self.transport.write(request)  # type: ignore[union-attr]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.done is not None and self.tally.feed(data, time.monotonic()):
            self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)
        self.done = None


def _open(sock: socket.socket) -> bool:
    """Whether a kept-alive connection is still open (the front closes idle ones after a while)."""
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False


class Poller:
    """The load generator's side of the rate steps, as lean as a client can be (it shares the cores with
    the front): kept-alive connections read every `poll_s` seconds, not on every token, so one read
    takes the tokens that arrived since. Each call still counts its token chunks and checks the
    usage chunk; its times are only as fine as `poll_s` (the rate steps use none of them). The front's
    sends do not wake this process (it is not waiting on the sockets): on this host a send that wakes
    its reader costs more (see `send_floor`), which this client does not charge the front."""

    def __init__(self, poll_s: float = POLL_MIN_S):
        self.poll_s = poll_s
        self.sel = selectors.DefaultSelector()
        self.idle: dict[tuple[str, int], list[socket.socket]] = {}
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Poller:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()  # type: ignore[union-attr]
        for socks in self.idle.values():
            for s in socks:
                s.close()
        self.sel.close()

    async def call(self, url: str, tokens: int) -> tuple[int, float, float, float]:
        host, port, request = _request(url, tokens)
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        idle = self.idle.setdefault((host, port), [])
        while idle and not _open(idle[-1]):
            idle.pop().close()
        if idle:
            sock = idle.pop()
        else:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.setblocking(False)
            await loop.sock_connect(sock, (host.strip("[]"), port))
        await loop.sock_sendall(sock, request)
        done = loop.create_future()
        tally = _Tally()
        self.sel.register(sock, selectors.EVENT_READ, (tally, done))
        closed = await done
        if closed or tally.status != 200:
            sock.close()
        else:
            idle.append(sock)
        return _result(tally, tokens, start)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            now = time.monotonic()
            for key, _ in self.sel.select(0):
                tally, done = key.data
                try:
                    data = key.fileobj.recv(1 << 18)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data or tally.feed(data, now):
                    self.sel.unregister(key.fileobj)
                    done.set_result(not data)


async def light_load(session: aiohttp.ClientSession, urls: list[str], n: int, tokens: int) -> None:
    """One stream at a time on instance 0: client-measured vs simulated TTFT and inter-token latency."""
    before = await _scrape(session, urls[0])
    ttft, itl = [], []
    host, port, request = _request(urls[0], tokens)
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_StreamCounter, host, port)  # kept alive, as routers' pools do
    try:
        for _ in range(n):
            start = time.monotonic()
            done = loop.create_future()
            proto.call(request, done)
            await done
            got, start, first, last = _result(proto.tally, tokens, start)
            assert got == tokens, got
            ttft.append(first - start)
            itl.append((last - first) / (tokens - 1))
            await asyncio.sleep(0.05)
    finally:
        transport.close()
    after = await _scrape(session, urls[0])

    def mean(name: str) -> float:
        s = _metric_sum(after, name + "_sum") - _metric_sum(before, name + "_sum")
        c = _metric_sum(after, name + "_count") - _metric_sum(before, name + "_count")
        return s / c if c else float("nan")

    sim_ttft, sim_itl = mean("vllm:time_to_first_token_seconds"), mean("vllm:inter_token_latency_seconds")
    c_ttft, c_itl = statistics.fmean(ttft), statistics.fmean(itl)
    print(f"light load ({n} streams of {tokens} tokens, one at a time):")
    print(f"  TTFT  client {c_ttft * 1e3:7.2f} ms  simulated {sim_ttft * 1e3:7.2f} ms  "
          f"(client - simulated {1e3 * (c_ttft - sim_ttft):+.2f} ms)")
    print(f"  ITL   client {c_itl * 1e3:7.2f} ms  simulated {sim_itl * 1e3:7.2f} ms  (ratio {c_itl / sim_itl:.3f})")


async def rate_step(session: aiohttp.ClientSession, poller: Poller, urls: list[str], rate: float, seconds: float,
                    tokens: int) -> tuple[bool, float, int, int]:
    """Open-loop arrivals at `rate` for `seconds`; (sustained, worst lag, ok streams, sent)."""
    tasks = []
    lags: list[float] = []
    stop = asyncio.Event()

    async def watch_lag() -> None:
        await asyncio.sleep(1.0)  # the gauge covers the last one to two seconds
        while not stop.is_set():
            lags.append(_metric_sum(await _scrape(session, urls[0]), "hermes_fleet_lag_seconds"))
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_lag())
    t0 = time.monotonic()
    count = int(rate * seconds)
    for i in range(count):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(poller.call(urls[i % len(urls)], tokens)))
    results = await asyncio.gather(*tasks)
    stop.set()
    await watcher
    lags.append(_metric_sum(await _scrape(session, urls[0]), "hermes_fleet_lag_seconds"))
    ok = sum(1 for got, *_ in results if got == tokens)
    worst = max(lags)
    return ok == count and worst <= LAG_LIMIT_S, worst, ok, count


async def main_async(args: argparse.Namespace, front: Front, probe: HostProbe) -> float:
    urls = front.urls
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session, Poller() as poller:
        if args.light_requests:
            await light_load(session, urls, args.light_requests, args.light_tokens)
        best, failed = 0.0, False
        for rate in args.rates:
            cpu0, gen0, probe0 = front.cpu_s(), time.process_time(), len(probe.samples)
            poller.poll_s = min(POLL_MAX_S, max(POLL_MIN_S, rate * POLL_S_PER_RATE))
            sustained, lag, ok, sent = await rate_step(session, poller, urls, rate, args.step_s, args.tokens)
            (user1, sys1), (user0, sys0) = front.cpu_s(), cpu0
            cpu = (user1 - user0 + sys1 - sys0) / max(sent, 1)
            kernel = (sys1 - sys0) / max(sent, 1)
            gen = (time.process_time() - gen0) / max(sent, 1)
            print(f"rate {rate:6.1f} req/s: {ok}/{sent} streams complete, worst lag {lag * 1e3:6.1f} ms, "
                  f"front CPU {cpu * 1e3:.2f} ms per stream ({kernel * 1e3:.2f} in the kernel; one core's worth: {1 / cpu if cpu else 0:.0f} req/s; "
                  f"per token {cpu / args.tokens / args.floor:.1f}x the host's send floor), "
                  f"load generator CPU {gen * 1e3:.2f} ms per stream, "
                  f"host probe lag {probe.worst_since(probe0) * 1e3:.1f} ms, "
                  f"load average {os.getloadavg()[0]:.1f} -> {'sustained' if sustained else 'NOT sustained'}",
                  flush=True)
            if not sustained:
                failed = True
                if not args.all_rates:
                    break
            if not failed:
                best = rate
            await asyncio.sleep(args.pause_s)  # let the previous step's streams drain from the engine
        return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="a few seconds; no timing is asserted")
    p.add_argument("--rates", type=float, nargs="+", help="request rates to step through (default: 5 ... 400)")
    p.add_argument("--step-s", type=float, default=8.0, help="seconds per rate step (default %(default)s)")
    p.add_argument("--all-rates", action="store_true",
                   help="run every rate, also after one failed (the figure stays the last rate before it)")
    p.add_argument("--profile", metavar="FILE", help="run the front under cProfile, writing FILE")
    p.add_argument("--light-requests", type=int, default=20, help="light-load streams (0: skip that part)")
    p.add_argument("--tokens", type=int, default=OUTPUT_TOKENS, help="output tokens per stream (default %(default)s)")
    args = p.parse_args()
    rates = args.rates
    if args.smoke:
        args.rates, args.step_s, args.tokens, args.pause_s = [5.0], 1.0, 32, 0.0
        args.light_requests, args.light_tokens = 2, 16
    else:
        args.rates = rates or [5.0, 10.0, 25.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 400.0]
        args.pause_s = 3.0
        args.light_tokens = 128
    floor = args.floor = send_floor(2000 if args.smoke else 20000)
    print(f"host floor: one 160-byte loopback TCP send costs {floor * 1e6:.1f} us of CPU, so 200 req/s of "
          f"{args.tokens} tokens need {200 * args.tokens * floor:.2f} cores for the sends alone")
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "fleet-load.yaml"
        spec_path.write_text(yaml.safe_dump(SPEC))
        front = Front(spec_path, args.profile)
        probe = HostProbe()
        try:
            print(f"front: {len(front.urls)} instances ({SPEC['clients'][0]['hardware']}, "
                  f"{SPEC['clients'][0]['model']}), time scale 1, {args.tokens} output tokens per stream")
            best = asyncio.run(main_async(args, front, probe))
        finally:
            probe.stop()
            front.stop()
    print(f"fleet_max_requests_per_s={best:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
