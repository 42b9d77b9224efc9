#!/usr/bin/env node
// A HERMES co-simulation client in Node.js: @grpc/grpc-js + @grpc/proto-loader on
// proto/hermes/v1/*.proto at run time (no generated code).
//
// It creates a session, injects requests, advances the session to the end,
// answers routing decisions (round robin over the candidates) when the session
// uses external routing, runs a small external batcher (--batcher: the first
// client's scheduler.batching is `external`), and prints the number of completed
// requests.
//
//   node client.js --target 127.0.0.1:50051 [--preset NAME] [--requests 20]
//                  [--external] [--batcher] [--injection-only] [--seed 7] [--keep]
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_ROOT = process.env.HERMES_PROTO_ROOT || path.resolve(__dirname, "..", "..", "proto");

function parseArgs(argv) {
  const opts = {
    target: "127.0.0.1:50051", preset: "", requests: 20, external: false, batcher: false,
    injectionOnly: false, seed: null, keep: false, token: process.env.HERMES_TOKEN || "",
    promptTokens: 256, outputTokens: 64, gapMs: 50,
  };
  const flags = { "--external": "external", "--batcher": "batcher", "--injection-only": "injectionOnly", "--keep": "keep" };
  const values = {
    "--target": ["target", String], "--preset": ["preset", String], "--requests": ["requests", Number],
    "--seed": ["seed", Number], "--token": ["token", String], "--prompt-tokens": ["promptTokens", Number],
    "--output-tokens": ["outputTokens", Number], "--gap-ms": ["gapMs", Number],
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-h" || arg === "--help") {
      console.log("usage: node client.js [--target HOST:PORT] [--preset NAME] [--requests N] [--external]\n" +
        "                      [--batcher]\n" +
        "                      [--injection-only] [--seed N] [--prompt-tokens N] [--output-tokens N]\n" +
        "                      [--gap-ms MS] [--token TOKEN] [--keep]");
      process.exit(0);
    } else if (flags[arg]) {
      opts[flags[arg]] = true;
    } else if (values[arg] && i + 1 < argv.length) {
      const [key, conv] = values[arg];
      opts[key] = conv(argv[++i]);
    } else {
      throw new Error(`unknown or incomplete argument: ${arg}`);
    }
  }
  return opts;
}

// A JS value as a google.protobuf.Value message. proto-loader does no JSON mapping for
// Struct/Value, and protobufjs' bundled well-known types keep camelCase field names
// (keepCase applies only to our .proto files).
function toValue(v) {
  if (v === null || v === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (typeof v === "string") return { stringValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: { fields: Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toValue(x)])) } };
}

// A small external batcher (scheduler.batching: external), FCFS with chunked prefill:
// when the running decodes' next KV blocks do not fit, preempt the newest request; every
// running decode takes 1 token; partly prefilled, then waiting requests get chunks in
// order within the token budget, max_seqs and the free blocks; decode-only steps repeat
// until something arrives or finishes. int64 fields arrive as strings (longs: String).
function batchStep(d) {
  const bs = Number(d.block_size);
  let free = Number(d.free_blocks);
  const running = d.running.slice();
  const preempt = [];
  const decodes = () => running.filter((r) => r.decoding);
  const growth = () => decodes().reduce((n, r) => n + Number(r.next_decode_blocks), 0);
  while (decodes().length && growth() > free) {
    const victim = running.pop();
    preempt.push(victim.request_id);
    free += Number(victim.kv_blocks);
  }
  free -= growth();
  let budget = Number(d.token_budget) - decodes().reduce((n, r) => n + Number(r.sequences), 0);
  let seqs = running.reduce((n, r) => n + Number(r.sequences), 0);
  const schedule = decodes().map((r) => ({ request_id: r.request_id, tokens: "1" }));
  let chunks = 0;
  const chunk = (r, take) => {
    schedule.push({ request_id: r.request_id, tokens: String(take) });
    budget -= take;
    chunks++;
  };
  for (const r of running.filter((x) => !x.decoding)) {
    if (budget <= 0) break;
    const done = Number(r.computed_tokens);
    const held = Number(r.kv_blocks);
    const take = Math.min(Number(r.prefill_tokens) - done, budget, (held + free) * bs - done);
    if (take <= 0) continue;
    free -= Math.ceil((done + take) / bs) - held;
    chunk(r, take);
  }
  for (const r of d.waiting) {
    if (seqs >= Number(d.max_seqs) || budget <= 0) break;
    const done = Number(r.computed_tokens);
    const take = Math.min(Number(r.prefill_tokens) - done, budget);
    const need = Math.ceil((done + take) / bs);
    if (need > free) break;
    free -= need;
    seqs++;
    chunk(r, take);
  }
  if (!schedule.length && running.length) preempt.push(running[running.length - 1].request_id); // stuck prefills
  return { decision_id: d.decision_id, schedule, preempt, repeat_decodes: chunks === 0 && schedule.length > 0 };
}

function loadSimulator() {
  const def = protoLoader.loadSync("hermes/v1/simulator.proto", {
    includeDirs: [PROTO_ROOT], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
  });
  return grpc.loadPackageDefinition(def).hermes.v1.Simulator;
}

// Promise wrappers around the unary calls, with the optional bearer token. A scaled-out
// server names its sessions SHARD.LOCAL: every call for such a session carries the header
// `x-hermes-shard: SHARD`, so a gateway in front of the replicas sends it to the owner
// (deploy/k8s-scale-out/grpcroute.yaml); a single server ignores it.
function makeApi(stub, token) {
  const api = {};
  for (const name of ["GetInfo", "CreateSession", "Inject", "Advance", "GetDecisions", "Decide",
    "GetState", "CloseSession"]) {
    api[name] = (req) => new Promise((resolve, reject) => {
      const md = new grpc.Metadata();
      if (token) md.set("authorization", `Bearer ${token}`);
      const sid = req.session_id || "";
      if (sid.includes(".")) md.set("x-hermes-shard", sid.slice(0, sid.indexOf(".")));
      stub[name](req, md, { deadline: Date.now() + 120000 }, (err, reply) => (err ? reject(err) : resolve(reply)));
    });
  }
  return api;
}

async function run(opts) {
  const Simulator = loadSimulator();
  const stub = new Simulator(opts.target, grpc.credentials.createInsecure());
  const api = makeApi(stub, opts.token);

  const info = await api.GetInfo({});
  const preset = opts.preset || (info.presets[0] && info.presets[0].name);
  if (!preset) throw new Error("the server offers no spec preset; pass --preset");

  const overrides = {};
  if (opts.external) overrides.router = toValue("external");
  if (opts.batcher) overrides["clients[0].scheduler.batching"] = toValue("external");
  if (opts.injectionOnly) overrides["workload.arrival"] = toValue({ process: "none" });
  const create = { spec: { preset }, overrides };
  if (opts.seed !== null) create.seed = String(opts.seed);
  const { session } = await api.CreateSession(create);
  const sid = session.session_id;
  console.error(`session ${sid} (preset ${preset}, router ${session.router_policy}) on ${opts.target}`);

  const requests = [];
  for (let i = 0; i < opts.requests; i++) {
    requests.push({
      arrival_ns: String(Number(session.now_ns) + Math.round(i * opts.gapMs * 1e6)),
      prompt_tokens: String(opts.promptTokens), output_tokens: String(opts.outputTokens),
    });
  }
  const injected = requests.length ? (await api.Inject({ session_id: sid, requests })).request_ids.length : 0;

  let completions = 0;
  let dropped = 0;
  let decisions = 0;
  let batches = 0;
  let rr = 0;
  let now = session.now_ns;
  for (let step = 0; step < 1000000; step++) {
    const reply = await api.Advance({ session_id: sid });
    now = reply.time_ns;
    for (const ev of reply.events) {
      if (ev.kind === "EVENT_KIND_COMPLETED") completions++;
      else if (ev.kind === "EVENT_KIND_DROPPED") dropped++;
    }
    if (reply.reason === "STOP_REASON_DECISION_NEEDED") {
      const answers = reply.decisions.map((d) => ({
        decision_id: d.decision_id, action: "DECISION_ACTION_ROUTE", client_id: d.candidates[rr++ % d.candidates.length],
      }));
      const batch_answers = reply.batch_decisions.map(batchStep);
      decisions += answers.length;
      batches += batch_answers.length;
      await api.Decide({ session_id: sid, answers, batch_answers });
    } else if (reply.reason === "STOP_REASON_IDLE") {
      break;
    }
  }

  if (!opts.keep) await api.CloseSession({ session_id: sid });
  stub.close();
  const result = { session_id: sid, preset, injected, completions, dropped, decisions, batches, sim_time_ns: now };
  console.log(JSON.stringify(result));
  console.log(`completions=${completions}`);
  return result;
}

if (require.main === module) {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(err.message);
    process.exit(2);
  }
  run(opts).catch((err) => {
    console.error(`hermes node client failed: ${err.code !== undefined ? `${grpc.status[err.code]}: ` : ""}${err.details || err.message}`);
    process.exit(1);
  });
}

module.exports = { run, parseArgs, toValue };
