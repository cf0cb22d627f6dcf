// harness.mjs - helpers for the end-to-end tests of agent caches and model
// swaps: each test file starts its own `semantic serve` processes (it needs
// their pids for SIGTERM, restarts and /proc/<pid>/status), on the tiny
// generated models that tests/server/e2e.test.sh writes under
// SEM_E2E_MODELS (org/model-a, org/model-b of another geometry,
// org/model-big), and talks to them through the official SDKs and fetch.
//
// Every server listens on a free port (--port 0 --port-file), runs one
// compute thread, 16-token KV blocks and test hooks (forced completions),
// and is killed when the test process exits.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { parseProm, sample } from '../js/util.mjs';

export { parseProm, sample };
export const BIN = process.env.SEM_BIN;
export const MODELS = process.env.SEM_E2E_MODELS;
/** Under the ASan build: shorter generations, no RSS assertion (ASan keeps freed memory). */
export const QUICK = process.env.SEM_QUICK === '1';
export const ADMIN_KEY = 'adm-e2e';
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const live = new Set();
/** Kills every server still running (call from each file's after()). */
export function killAll() {
  for (const p of live) try { p.kill('SIGKILL'); } catch { /* gone */ }
  live.clear();
}
process.on('exit', killAll);

/** A fresh directory under the test's temporary root. */
export function tmpdir(tag) {
  const root = process.env.SEM_E2E_TMP ?? os.tmpdir();
  return fs.mkdtempSync(path.join(root, `${tag}-`));
}

/**
 * Starts `semantic serve` and waits until /health/ready says 200.
 * Returns {url, pid, log, stop(signal) -> exit code, logText()}.
 */
export async function startServer({ modelsDir = MODELS, model = 'org/model-a', cacheDir, extra = [], env = {} } = {}) {
  const dir = tmpdir('srv');
  const portFile = path.join(dir, 'port');
  const log = path.join(dir, 'server.log');
  const args = ['serve', '--models-dir', modelsDir, '--model', model, '--cache-dir', cacheDir ?? 'none',
    '--hf-cache', '/nonexistent', '--port', '0', '--port-file', portFile, '--threads', '1', '--test-hooks',
    '--block-tokens', '16', '--kv-budget-mb', '32', '--max-batch', '4', ...extra];
  const fd = fs.openSync(log, 'a');
  const proc = spawn(BIN, args, { env: { ...process.env, SEMANTIC_ADMIN_KEY: ADMIN_KEY, ...env }, stdio: ['ignore', 'ignore', fd] });
  fs.closeSync(fd);
  live.add(proc);
  let exitCode = null;
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => { live.delete(proc); exitCode = code ?? sig; resolve(exitCode); }));
  const logText = () => fs.readFileSync(log, 'utf8');
  const deadline = Date.now() + 240000;
  let url = null;
  while (Date.now() < deadline) {
    if (exitCode !== null) throw new Error(`server exited early (${exitCode}):\n${logText()}`);
    if (!url && fs.existsSync(portFile)) {
      const port = fs.readFileSync(portFile, 'utf8').trim();
      if (port) url = `http://127.0.0.1:${port}`;
    }
    if (url) {
      const r = await fetch(`${url}/health/ready`).catch(() => null);
      if (r && r.status === 200) break;
    }
    await sleep(50);
  }
  if (!url) throw new Error(`server never listened:\n${logText()}`);
  return {
    url, pid: proc.pid, log, logText,
    /** Sends sig and waits for the exit; returns the exit code (or signal name). */
    async stop(sig = 'SIGTERM') {
      if (exitCode === null) proc.kill(sig);
      return exited;
    },
  };
}

export function openai(url, opts = {}) {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 300000, ...opts });
}

export function anthropic(url, opts = {}) {
  return new Anthropic({ baseURL: url, apiKey: 'none', maxRetries: 0, timeout: 300000, ...opts });
}

/** fetch with a JSON body; returns {status, headers, json, text}. */
export async function call(url, method, p, body, headers = {}) {
  const r = await fetch(`${url}${p}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, json, text };
}

export const admin = (url, method, p, body) => call(url, method, p, body, { 'X-Admin-Key': ADMIN_KEY });

export async function swap(url, model_id, timeout_seconds) {
  return admin(url, 'POST', '/admin/models/swap', timeout_seconds === undefined ? { model_id } : { model_id, timeout_seconds });
}

export async function current(url) {
  return (await admin(url, 'GET', '/admin/models/current')).json;
}

/** Polls fn() until it returns a truthy value (or throws after ms). */
export async function waitFor(fn, ms = 30000, what = 'condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export async function metrics(url) {
  const r = await fetch(`${url}/metrics`);
  return parseProm(await r.text());
}

/** Resident set size of a process, bytes (VmRSS of /proc/<pid>/status). */
export function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Every file under root named name (recursively). */
export function findFiles(root, name) {
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === name) out.push(p);
    }
  };
  if (fs.existsSync(root)) walk(root);
  return out;
}

/** The quarantined files (<cache_dir>/quarantine/*). */
export function quarantined(cacheDir) {
  const q = path.join(cacheDir, 'quarantine');
  return fs.existsSync(q) ? fs.readdirSync(q) : [];
}

/** An agent's cache file in the namespace of the model, once written. */
export async function agentFile(cacheDir, agent) {
  return waitFor(() => findFiles(cacheDir, `${agent}.safetensors`).find((p) => !p.includes('quarantine')),
    30000, `${agent}'s cache file`);
}

/** Chat through the OpenAI SDK as agent; returns {text, usage, model, finish}. */
export async function chat(client, agent, messages, { max_tokens = 8, forced, headers = {} } = {}) {
  const body = { model: 'default', messages, max_tokens, temperature: 0 };
  if (forced) body.semantic_test_completion = forced;
  const r = await client.chat.completions.create(body, { headers: agent ? { 'X-Session-ID': agent, ...headers } : headers });
  return { text: r.choices[0].message.content, usage: r.usage, model: r.model, finish: r.choices[0].finish_reason };
}

/** A long forced completion's text: n words. */
export const words = (n) => Array.from({ length: n }, (_, i) => (i % 7 ? 'word' : 'wave')).join(' ');

/**
 * Tokens per second the server generates now (a forced 160-token
 * completion), so that "a long generation" lasts about the wanted seconds
 * whatever the build and the load; the tests assert no timings. The
 * calibration is long enough that the request's fixed cost (HTTP, prefill)
 * does not hide the decode rate: with 48 tokens, a fixed cost that is a
 * large part of the request makes the rate look low, and a "3 s"
 * generation may end before the 1 s drain timeout it must outlast.
 */
export async function tokensFor(client, seconds) {
  const t0 = performance.now();
  const r = await client.chat.completions.create({
    model: 'default', max_tokens: 160, messages: [{ role: 'user', content: 'calibrate' }],
    semantic_test_completion: words(300),
  });
  const rate = r.usage.completion_tokens / ((performance.now() - t0) / 1000);
  return Math.max(32, Math.min(30000, Math.round(rate * seconds)));
}

/**
 * Starts a streaming forced completion of n tokens and returns once its
 * first chunk has arrived: {done: Promise<{chunks, finish, model}>}.
 */
export async function startLongStream(client, n, agent) {
  const stream = await client.chat.completions.create({
    model: 'default', max_tokens: n, stream: true,
    messages: [{ role: 'user', content: `Keep going, ${agent ?? 'anonymous'}.` }],
    semantic_test_completion: words(n + 50),
  }, agent ? { headers: { 'X-Session-ID': agent } } : {});
  const it = stream[Symbol.asyncIterator]();
  const first = await it.next();
  const done = (async () => {
    let text = '';
    let finish = null;
    let model = first.value?.model;
    for (let x = first; !x.done; x = await it.next()) {
      const c = x.value.choices[0];
      if (c?.delta?.content) text += c.delta.content;
      if (c?.finish_reason) finish = c.finish_reason;
      model = x.value.model;
    }
    return { words: text.trim().split(/\s+/).length, finish, model };
  })();
  return { done };
}
