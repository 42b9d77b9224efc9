"""Case study 2: where the time of a RAG request goes (HERMES paper, section IV-B, Fig. 9).

Llama-3.1-8B on one H100. Before it, a RAG stage: the query (the Azure conversation prompt)
is embedded with e5-base or e5-mistral-7b, searched in an IVF-PQ index of 4M centroids
with 5,000 vectors per list (20G vectors), 50 probes, 64-byte PQ codes, and the top 20
documents of 512 tokens (10,240 tokens) join the prompt. Three hardware setups:
Grace CPU for embedding and search, Sapphire Rapids CPU for both, or an A100 for the
embedding with search on Grace. Every device sits in one server whose links are PCIe 4.0 x4
(8 GB/s), so the retrieved context crosses that link to the H100.

Sweeps the request rate and breaks TTFT down by stage: embedding, search, the context
transfer to the LLM, LLM queueing and prefill.

    PYTHONPATH=. python examples/case_studies/rag.py [--out DIR] [--procs 2] [--smoke]
"""

from __future__ import annotations

import numpy as np
from common import H100, completed, parse_args, pct, plt, run, save, say, sweep, trace_prompts, write_csv

from sim_engine.hardware import get_hardware
from sim_engine.vector_search import index_bytes, parse_index

EMBEDDERS = {"e5-base": 768, "e5-mistral-7b": 4096}  # model -> embedding dimension
SEARCH_MEM_GB = 2000  # the paper's 20G-vector index is ~1.5 TB: more than one Grace holds
SETUPS = {"Grace": ("Grace", "Grace"), "SapphireRapids": ("Sapphire-Rapids", "Sapphire-Rapids"),
          "A100+Grace": ("A100-80GB", "Grace")}  # name -> (embedding device, search device)
CENTROIDS, PER_LIST, PROBES, PQ_M, DOCS, DOC_TOKENS = 4_000_000, 5000, 50, 64, 20, 512
PCIE4_X4 = {"bandwidth_gbs": 8.0, "latency_us": 2.0}
RATES = [0.02, 0.1, 0.25, 0.5, 1.0, 2.0]
PARTS = ["embed_queue", "embed", "search_queue", "search", "transfer_to_llm", "llm_queue", "prefill"]


def index(dim: int) -> dict:
    return {"kind": "ivf_pq", "vectors": CENTROIDS * PER_LIST, "dim": dim, "centroids": CENTROIDS,
            "probes": PROBES, "pq_m": PQ_M, "k": DOCS}


def spec(embedder: str, setup: str, rate: float, n: int) -> dict:
    embed_hw, search_hw = SETUPS[setup]
    server = {"node": "server", "rack": "r0"}
    return {
        "name": f"rag-{embedder}-{setup}", "seed": 2,
        "clients": [
            {"id": "embed", "role": "embedding", "hardware": embed_hw, "model": embedder, "placement": server},
            {"id": "search", "role": "retrieval", "hardware": {"preset": search_hw, "mem_gb": SEARCH_MEM_GB},
             "placement": server},
            {"id": "llm", "hardware": H100, "model": "Llama-3.1-8B", "placement": server},
        ],
        "topology": {"intra_node": PCIE4_X4},
        "router": "least_loaded",
        "pipelines": {"rag": [{"kind": "rag", "embed": {"model": embedder}, "index": index(EMBEDDERS[embedder]),
                               "docs": DOCS, "doc_tokens": DOC_TOKENS}, {"kind": "llm"}]},
        "workload": {"arrival": {"process": "poisson", "rate": rate}, "pipeline": "rag",
                     "model": "Llama-3.1-8B", "prompt_tokens": trace_prompts("azure_conv"),
                     "output_tokens": {"dist": "empirical", "trace": "azure_conv", "column": "num_decode_tokens"},
                     "num_requests": n},
    }


def breakdown(sim, m: dict) -> dict[str, np.ndarray]:
    """Per request (same order as ``m``), the seconds each part adds to its TTFT.

    The stage records (embed = stage 0, search = 1, llm = 2) give each stage's ready, enqueue,
    start and end times; a stage is ready when the previous one ends, so the parts add up
    exactly to TTFT. The LLM part ends at the first token, not at the stage end.
    """
    st = sim.stage_records.arrays()
    pos = {int(i): k for k, i in enumerate(m["idx"])}
    out = {p: np.zeros(len(pos)) for p in PARTS}
    for i in range(len(st["idx"])):
        k = pos.get(int(st["idx"][i]))
        if k is None:
            continue
        ready, enq, start, end = (st[c][i] / 1e9 for c in ("ready_ns", "enqueue_ns", "start_ns", "end_ns"))
        stage = int(st["stage"][i])
        if stage == 2:  # the LLM: context transfer, queueing, prefill until the first token
            out["transfer_to_llm"][k] = enq - ready
            out["llm_queue"][k] = start - enq
            out["prefill"][k] = m["first"][k] - start
        else:  # embed / search; the few bytes moved between them count as queueing
            name = "embed" if stage == 0 else "search"
            out[f"{name}_queue"][k] = start - ready
            out[name][k] = end - start
    return out


def point(p: tuple) -> dict:
    embedder, setup, rate, n = p
    sim = run(spec(embedder, setup, rate, n))
    m = completed(sim, warmup=0.1)
    parts = breakdown(sim, m)
    ttft = m["ttft"]
    row = {"embedder": embedder, "setup": setup, "rate": rate, "requests": n, "completed": int(ttft.size),
           "ttft_mean_s": float(ttft.mean()), "ttft_p50_s": pct(ttft, 50), "ttft_p90_s": pct(ttft, 90)}
    for part in PARTS:
        row[f"{part}_s"] = float(parts[part].mean())
    row["transfer_share"] = row["transfer_to_llm_s"] / row["ttft_mean_s"]
    row["embed_share"] = (row["embed_s"] + row["embed_queue_s"]) / row["ttft_mean_s"]
    row["context_bytes"] = int(sim.summary()["stages"]["decode"]["bytes_in"] / max(sim.completed, 1))
    return row


def findings(rows: list[dict], rates: list[float]) -> list[str]:
    low = min(rates)
    out = [f"RAG case study (Llama-3.1-8B on one H100; IVF-PQ {CENTROIDS:,} centroids x {PER_LIST} vectors, "
           f"{PROBES} probes; {DOCS} x {DOC_TOKENS} tokens added; links PCIe 4.0 x4, 8 GB/s).",
           f"TTFT breakdown at {low:g} req/s (mean seconds):",
           "  embedder       setup            TTFT   embed  search  ->LLM    LLM queue+prefill  embed share"]
    for r in (r for r in rows if r["rate"] == low):
        out.append(f"  {r['embedder']:14s} {r['setup']:15s} {r['ttft_mean_s']:6.3f}  {r['embed_s']:6.3f}  "
                   f"{r['search_s']:6.3f}  {r['transfer_to_llm_s'] * 1e3:5.2f}ms  "
                   f"{r['llm_queue_s'] + r['prefill_s']:6.3f}             {r['embed_share']:6.1%}")
    big_cpu = [r for r in rows if r["rate"] == low and r["embedder"] == "e5-mistral-7b" and r["setup"] != "A100+Grace"]
    big_gpu = next(r for r in rows if r["rate"] == low and r["embedder"] == "e5-mistral-7b"
                   and r["setup"] == "A100+Grace")
    dominates = all(r["embed_share"] > 0.5 for r in big_cpu) and big_gpu["embed_share"] < 0.5
    out.append("  paper: a large embedding model on a CPU dominates TTFT (an A100 removes it) -> "
               + ("AGREES" if dominates else "DIFFERS")
               + " (e5-mistral-7b embedding share: " + ", ".join(f"{r['setup']} {r['embed_share']:.0%}" for r in big_cpu)
               + f", A100 {big_gpu['embed_share']:.0%})")
    worst = max(rows, key=lambda r: r["transfer_share"])
    out.append("  paper: moving the context over PCIe 4.0 x4 costs under 1% -> "
               + ("AGREES" if worst["transfer_share"] < 0.01 else "DIFFERS")
               + f" (largest share {worst['transfer_share']:.4%}: {worst['context_bytes'] / 1e3:.0f} KB of text "
               f"per request, at {worst['rate']:g} req/s with {worst['embedder']} on {worst['setup']})")
    sat = {}
    for emb in EMBEDDERS:
        for setup in SETUPS:
            ok = [r["rate"] for r in rows if r["embedder"] == emb and r["setup"] == setup
                  and r["ttft_p90_s"] < 2 * next(x["ttft_p90_s"] for x in rows if x["embedder"] == emb
                                                  and x["setup"] == setup and x["rate"] == low)]
            sat[(emb, setup)] = max(ok)
    out.append("  highest rate whose p90 TTFT stays within 2x of the light-load value: "
               + ", ".join(f"{e}/{s} {v:g}" for (e, s), v in sat.items()))
    for emb, dim in EMBEDDERS.items():
        size = index_bytes(parse_index(index(dim), "index"))
        if size > get_hardware("Grace").mem_gb * 1e9:
            out.append(f"  note: the {emb} index ({dim} dims) needs {size / 1e12:.2f} TB, more than Grace's "
                       f"{get_hardware('Grace').mem_gb:.0f} GB: the search hosts are given {SEARCH_MEM_GB} GB "
                       "of memory (their bandwidth and compute unchanged) so the paper's index fits")
    return out


def plot(rows: list[dict], rates: list[float], path) -> None:
    low = min(rates)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5))
    sel = [r for r in rows if r["rate"] == low]
    labels = [f"{r['embedder']}\n{r['setup']}" for r in sel]
    bottom = np.zeros(len(sel))
    for part in PARTS:
        vals = np.array([r[f"{part}_s"] for r in sel])
        ax1.bar(labels, vals, bottom=bottom, label=part.replace("_", " "))
        bottom += vals
    ax1.set_ylabel("mean seconds to first token", fontsize=8)
    ax1.set_title(f"TTFT breakdown at {low:g} req/s", fontsize=9)
    ax1.tick_params(labelsize=7)
    ax1.legend(fontsize=7)
    for emb in EMBEDDERS:
        for setup in SETUPS:
            pts = sorted((r["rate"], r["ttft_p50_s"]) for r in rows if r["embedder"] == emb and r["setup"] == setup)
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"{emb} / {setup}")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("rate (req/s)", fontsize=8)
    ax2.set_ylabel("p50 TTFT (s)", fontsize=8)
    ax2.set_title("p50 TTFT versus load", fontsize=9)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    fig.suptitle("RAG: Llama-3.1-8B on H100 with IVF-PQ retrieval (4M centroids, 50 probes, 20 x 512 tokens)",
                 fontsize=10)
    save(fig, path)


def main() -> None:
    args = parse_args("rag", __doc__)
    rates = [0.1, 1.0] if args.smoke else RATES
    n = 12 if args.smoke else 200
    points = [(e, s, r, n) for e in EMBEDDERS for s in SETUPS for r in rates]
    rows = sweep(point, points, args.procs)
    write_csv(args.out / "rag.csv", rows)
    plot(rows, rates, args.out / "rag.png")
    lines = findings(rows, rates)
    lines.append(f"\n{len(points)} points, {n} requests each (metrics leave out the first 10% of arrivals); "
                 f"results in {args.out}")
    say(lines, args.out)


if __name__ == "__main__":
    main()
