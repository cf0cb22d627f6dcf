#!/usr/bin/env node
// load.mjs - a load bench for `semantic serve` (a bench, not a test: it
// prints figures and asserts nothing about speed).
//
// N concurrent clients each run streaming chat completions back to back for
// D seconds over loopback, through the OpenAI streaming wire format. It
// reports requests/s, generated tokens/s, time to first token (p50/p99),
// whole-request latency (p50/p99), errors (any non-200, a stream without
// [DONE], a broken connection), and the server's resident memory from
// /metrics (process_resident_memory_bytes): after the warm-up and at the
// end, so growth under sustained load shows.
//
// Usage: node tools/load/load.mjs --url http://127.0.0.1:8000 [--clients 64]
//        [--duration 60] [--warmup 10] [--max-tokens 32] [--api-key K] [--json]
// Exit status: 0 when there were no errors, 1 otherwise.

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]?.startsWith('--') || all[i + 1] === undefined ? 'true' : all[i + 1]]);
  return acc;
}, []));
const URL_ = args.url ?? 'http://127.0.0.1:8000';
const CLIENTS = Number(args.clients ?? 64);
const DURATION_S = Number(args.duration ?? 60);
const WARMUP_S = Number(args.warmup ?? 10);
const MAX_TOKENS = Number(args['max-tokens'] ?? 32);
const KEY = args['api-key'] ?? process.env.SEMANTIC_API_KEY ?? '';

const now = () => performance.now() / 1000;
const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function rss() {
  try {
    const t = await (await fetch(`${URL_}/metrics`)).text();
    const m = /^process_resident_memory_bytes (\S+)$/m.exec(t);
    return m ? Number(m[1]) : NaN;
  } catch { return NaN; }
}

const stats = { ok: 0, errors: 0, tokens: 0, ttft: [], latency: [], errorKinds: {} };
let measuring = false;

function fail(kind) {
  stats.errors++;
  stats.errorKinds[kind] = (stats.errorKinds[kind] ?? 0) + 1;
}

/** One streaming request; returns when the stream ends. */
async function oneRequest(client, i) {
  const body = {
    model: 'default',
    stream: true,
    max_tokens: MAX_TOKENS,
    temperature: 0.8,
    seed: client * 100003 + i,
    messages: [
      { role: 'system', content: 'You are a load-test agent.' },
      { role: 'user', content: `Client ${client}, request ${i}: tell me something.` },
    ],
  };
  const t0 = now();
  let first = NaN;
  let tokens = 0;
  let done = false;
  const headers = { 'content-type': 'application/json', 'x-session-id': `load-${client}` };
  if (KEY) headers.authorization = `Bearer ${KEY}`;
  const r = await fetch(`${URL_}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify(body) });
  if (r.status !== 200) {
    await r.text();
    return fail(`http_${r.status}`);
  }
  const dec = new TextDecoder();
  let buf = '';
  for await (const chunk of r.body) {
    buf += dec.decode(chunk, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ')) continue;
      const data = ev.slice(6);
      if (data === '[DONE]') { done = true; continue; }
      const j = JSON.parse(data);
      if (j.error) return fail('stream_error');
      const c = j.choices?.[0]?.delta?.content;
      if (c) {
        if (Number.isNaN(first)) first = now();
        tokens++;
      }
    }
  }
  if (!done) return fail('no_done');
  if (!measuring) return;
  stats.ok++;
  stats.tokens += tokens;
  if (!Number.isNaN(first)) stats.ttft.push(first - t0);
  stats.latency.push(now() - t0);
}

async function client(id, until) {
  for (let i = 0; now() < until; i++) {
    try { await oneRequest(id, i); } catch (e) { fail(e.cause?.code ?? e.name ?? 'exception'); }
  }
}

const start = now();
const end = start + WARMUP_S + DURATION_S;
const workers = Array.from({ length: CLIENTS }, (_, i) => client(i, end));
await new Promise((r) => setTimeout(r, WARMUP_S * 1000));
const rssWarm = await rss();
measuring = true;
const tMeasure = now();
const rssSamples = [];
const sampler = setInterval(async () => rssSamples.push(await rss()), 5000);
await Promise.all(workers);
clearInterval(sampler);
const elapsed = now() - tMeasure;
const rssEnd = await rss();

const out = {
  clients: CLIENTS,
  duration_s: Number(elapsed.toFixed(1)),
  requests: stats.ok,
  errors: stats.errors,
  error_kinds: stats.errorKinds,
  requests_per_s: Number((stats.ok / elapsed).toFixed(2)),
  tokens_per_s: Number((stats.tokens / elapsed).toFixed(1)),
  ttft_p50_ms: Number((pct(stats.ttft, 50) * 1e3).toFixed(1)),
  ttft_p99_ms: Number((pct(stats.ttft, 99) * 1e3).toFixed(1)),
  latency_p50_ms: Number((pct(stats.latency, 50) * 1e3).toFixed(1)),
  latency_p99_ms: Number((pct(stats.latency, 99) * 1e3).toFixed(1)),
  rss_after_warmup_mib: Number((rssWarm / 1048576).toFixed(1)),
  rss_max_mib: Number((Math.max(rssEnd, ...rssSamples.filter((x) => !Number.isNaN(x))) / 1048576).toFixed(1)),
  rss_end_mib: Number((rssEnd / 1048576).toFixed(1)),
};
if (args.json) console.log(JSON.stringify(out));
else {
  console.log(`clients ${out.clients}, ${out.duration_s} s measured after ${WARMUP_S} s warm-up, max_tokens ${MAX_TOKENS}`);
  console.log(`requests ${out.requests} (${out.requests_per_s}/s), generated tokens ${out.tokens_per_s}/s, errors ${out.errors}`,
    out.errors ? JSON.stringify(out.error_kinds) : '');
  console.log(`TTFT p50 ${out.ttft_p50_ms} ms, p99 ${out.ttft_p99_ms} ms; latency p50 ${out.latency_p50_ms} ms, p99 ${out.latency_p99_ms} ms`);
  console.log(`server RSS: ${out.rss_after_warmup_mib} MiB after warm-up, max ${out.rss_max_mib} MiB, ${out.rss_end_mib} MiB at the end`);
}
process.exit(stats.errors ? 1 : 0);
