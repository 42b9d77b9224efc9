"""Network: latency + fluid max-min fair sharing of link bandwidth, in integer nanoseconds."""

from __future__ import annotations

import numpy as np
import pytest

from sim_engine.kernel import Kernel
from sim_engine.network import Network


def run(kernel: Kernel) -> None:
    while len(kernel):
        kernel.pop_and_run()


def make(links: dict[str, tuple[float, float]]) -> tuple[Kernel, Network, dict]:
    k = Kernel()
    net = Network(k)
    for lid, (bw, lat) in links.items():
        net.add_link(lid, bw, lat)
    return k, net, {}


def record(done: dict, k: Kernel):
    def cb(arg):
        done[arg] = k.now
    return cb


def test_single_transfer_latency_plus_size_over_bandwidth():
    k, net, done = make({"l": (10.0, 5.0)})  # 10 GB/s = 10 B/ns, 5 us
    net.start(["l"], 1_000_000, record(done, k), "a")
    assert net.active() == 1
    run(k)
    assert done == {"a": 5_000 + 100_000}
    assert net.active() == 0


def test_latencies_add_along_path_and_bottleneck_sets_rate():
    k, net, done = make({"a": (100.0, 1.0), "b": (4.0, 2.5)})
    net.start(["a", "b"], 4_000, record(done, k), "x")
    run(k)
    assert done["x"] == 1_000 + 2_500 + 1_000


def test_two_equal_transfers_contend():
    k, net, done = make({"l": (10.0, 0.0)})
    net.start(["l"], 1_000_000, record(done, k), "a")
    net.start(["l"], 1_000_000, record(done, k), "b")
    run(k)
    assert done == {"a": 200_000, "b": 200_000}  # each twice its solo time


def test_max_min_share_across_shared_and_private_links():
    # A crosses shared S (10 B/ns) and private P (2 B/ns): bottlenecked at 2 on P.
    # B crosses only S: max-min gives it the rest, 8 B/ns (not the equal 5).
    k, net, done = make({"S": (10.0, 0.0), "P": (2.0, 0.0)})
    net.start(["S", "P"], 2_000, record(done, k), "A")
    net.start(["S"], 8_000, record(done, k), "B")
    run(k)
    assert done == {"A": 1_000, "B": 1_000}


def test_max_min_freed_capacity_goes_to_the_survivor():
    k, net, done = make({"S": (10.0, 0.0), "P": (2.0, 0.0)})
    net.start(["S", "P"], 2_000, record(done, k), "A")  # 2 B/ns for 1000 ns
    net.start(["S"], 12_000, record(done, k), "B")  # 8 B/ns -> 8000 B by 1000 ns, then 10 B/ns
    run(k)
    assert done["A"] == 1_000
    assert done["B"] == 1_000 + 400


def test_late_starter_slows_earlier_only_from_its_start():
    k, net, done = make({"l": (10.0, 0.0)})
    net.start(["l"], 1_000, record(done, k), "early")  # alone: 100 ns

    def late(_):
        net.start(["l"], 1_000, record(done, k), "late")

    k.schedule(50, 1, late, None)
    run(k)
    # early: 500 B alone in 50 ns, remaining 500 B at 5 B/ns -> 150 ns.
    # late: 500 B at 5 B/ns by 150, remaining 500 B alone at 10 B/ns -> 200 ns.
    assert done == {"early": 150, "late": 200}


def test_bytes_moved_busy_time_and_utilization():
    k, net, done = make({"S": (10.0, 1.0), "P": (2.0, 0.0), "idle": (1.0, 0.0)})
    net.start(["S", "P"], 2_000, record(done, k), "A")
    net.start(["S"], 12_345, record(done, k), "B")
    run(k)
    st = net.link_stats(k.now)
    assert st["S"]["bytes_moved"] == 2_000 + 12_345
    assert st["P"]["bytes_moved"] == 2_000
    assert st["idle"]["bytes_moved"] == 0 and st["idle"]["busy_ns"] == 0
    assert st["P"]["busy_ns"] == 1_000  # data phase only: 1000..2000
    assert st["S"]["busy_ns"] == k.now - 1_000
    assert st["S"]["utilization"] == pytest.approx(14_345 / (10.0 * k.now))


def test_link_stats_include_partial_progress():
    k, net, _ = make({"l": (10.0, 0.0)})
    net.start(["l"], 1_000, lambda _: None, None)
    k.schedule(30, 1, lambda _: None, None)
    k.pop_and_run()  # begin data at 0
    k.pop_and_run()  # t = 30
    st = net.link_stats(30)
    assert st["l"]["bytes_moved"] == pytest.approx(300.0)
    assert st["l"]["busy_ns"] == 30


def test_zero_bytes_and_empty_path():
    k, net, done = make({"l": (10.0, 7.0)})
    net.start(["l"], 0, record(done, k), "zero")
    net.start([], 10_000, record(done, k), "local")
    assert net.active() == 2
    run(k)
    assert done == {"zero": 7_000, "local": 0}
    assert net.link_stats(k.now)["l"]["busy_ns"] == 0


def test_never_early_integer_ceil():
    k, net, done = make({"l": (3.0, 0.0)})
    net.start(["l"], 10, record(done, k), "a")  # 3.33 ns -> 4 ns
    run(k)
    assert done["a"] == 4


def test_callback_may_chain_transfers_and_ties_follow_start_order():
    k, net, _ = make({"l": (1.0, 0.0)})
    order: list[str] = []

    def cb(arg):
        order.append(arg)
        if arg == "a":
            net.start(["l"], 10, cb, "c")

    net.start(["l"], 10, cb, "a")
    net.start(["l"], 10, cb, "b")
    run(k)
    assert order == ["a", "b", "c"]
    assert k.now == 30


def test_stale_events_do_not_fire_extra_completions():
    k, net, done = make({"l": (1.0, 0.0)})
    for i in range(20):
        k.schedule(i * 3, 1, lambda i: net.start(["l"], 50 + i, record(done, k), i), i)
    run(k)
    assert sorted(done) == list(range(20))
    assert net.link_stats(k.now)["l"]["bytes_moved"] == sum(50 + i for i in range(20))
    # work-conserving: the link never idles between the first start and the last finish;
    # rounding each finish up to whole ns costs at most 1 ns per completion
    total = sum(50 + i for i in range(20))
    assert total <= k.now <= total + 20


def test_bad_inputs():
    k, net, _ = make({"l": (1.0, 0.0)})
    with pytest.raises(ValueError):
        net.add_link("l", 2.0, 0.0)
    with pytest.raises(ValueError):
        net.add_link("m", 0.0, 0.0)
    with pytest.raises(ValueError):
        net.start(["nope"], 1, lambda _: None, None)
    with pytest.raises(ValueError):
        net.start(["l", "l"], 1, lambda _: None, None)
    with pytest.raises(ValueError):
        net.start(["l"], -1, lambda _: None, None)


def test_random_mix_respects_capacity_and_bounds():
    rng = np.random.default_rng(11)
    k = Kernel()
    net = Network(k)
    bws = {f"l{i}": float(rng.uniform(1, 20)) for i in range(6)}
    lats = {lid: round(float(rng.uniform(0, 2)), 3) for lid in bws}  # whole ns
    for lid, bw in bws.items():
        net.add_link(lid, bw, lats[lid])
    started: dict[int, tuple[int, list[str], int]] = {}
    done: dict[int, int] = {}

    def launch(i):
        path = sorted(rng.choice(list(bws), size=int(rng.integers(1, 4)), replace=False).tolist())
        nbytes = int(rng.integers(0, 50_000))
        started[i] = (k.now, path, nbytes)
        net.start(path, nbytes, lambda i: done.__setitem__(i, k.now), i)

    for i in range(200):
        k.schedule(int(rng.integers(0, 100_000)), 1, launch, i)
    run(k)
    assert sorted(done) == list(range(200)) and net.active() == 0
    for i, (t0, path, nbytes) in started.items():
        lat = sum(lats[p] * 1000 for p in path)
        assert done[i] >= t0 + lat + nbytes / min(bws[p] for p in path) - 1e-6
    st = net.link_stats(k.now)
    for lid, bw in bws.items():
        sent = sum(n for _, path, n in started.values() if lid in path)
        assert st[lid]["bytes_moved"] == sent
        assert sent <= bw * st[lid]["busy_ns"] + 1e-6  # never above capacity while busy
