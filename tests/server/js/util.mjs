// util.mjs - shared helpers for the server's node tests: where the server
// is (SEM_URL, set by tests/server/serve.test.sh), SDK clients with retries
// off, raw HTTP over a socket (for requests fetch refuses to send), and a
// strict Prometheus text-format parser.
import net from 'node:net';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

export const URL_ = process.env.SEM_URL ?? 'http://127.0.0.1:8000';
export const KEY = process.env.SEM_API_KEY ?? 'sk-test-a';
/** Under the ASan build the suite uses shorter generations. */
export const QUICK = process.env.SEM_QUICK === '1';
export const ADMIN_KEY = process.env.SEM_ADMIN_KEY ?? 'adm-secret';
const u = new URL(URL_);
export const HOST = u.hostname;
export const PORT = Number(u.port);

let counter = 0;
/** A fresh agent id per call, so per-agent rate limits never collide. */
export function agent(tag = 'a') {
  return `${tag}-${process.pid}-${Date.now()}-${counter++}`;
}

export function openai(opts = {}) {
  return new OpenAI({ baseURL: `${URL_}/v1`, apiKey: KEY, maxRetries: 0, timeout: 60000, ...opts });
}

export function anthropic(opts = {}) {
  return new Anthropic({ baseURL: URL_, apiKey: KEY, maxRetries: 0, timeout: 60000, ...opts });
}

export const USER = [{ role: 'user', content: 'Hello there' }];

/** POST JSON with fetch; returns {status, headers, json, text}. */
export async function post(path, body, headers = {}) {
  const r = await fetch(`${URL_}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, json, text };
}

export async function get(path, headers = {}) {
  const r = await fetch(`${URL_}${path}`, { headers });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, json, text };
}

/**
 * Sends raw bytes and collects the response until the server closes or
 * `idleMs` passes without data. Returns {status, head, body, raw, closed}.
 */
export function raw(bytes, { idleMs = 3000, endAfterWrite = false } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(PORT, HOST);
    const chunks = [];
    let timer = null;
    let closed = false;
    const finish = () => {
      clearTimeout(timer);
      s.destroy();
      const rawText = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(rawText);
      const split = rawText.indexOf('\r\n\r\n');
      resolve({
        status: m ? Number(m[1]) : 0,
        head: split >= 0 ? rawText.slice(0, split) : rawText,
        body: split >= 0 ? rawText.slice(split + 4) : '',
        raw: rawText,
        closed,
      });
    };
    const arm = () => { clearTimeout(timer); timer = setTimeout(finish, idleMs); };
    s.on('data', (d) => { chunks.push(d); arm(); });
    s.on('end', () => { closed = true; finish(); });
    s.on('error', () => { closed = true; finish(); });
    s.on('connect', () => {
      s.write(bytes, () => { if (endAfterWrite) s.end(); });
      arm();
    });
  });
}

/** A raw POST with a JSON body (Content-Length set). */
export function rawPost(path, body, extraHeaders = '') {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const head = `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${b.length}\r\nConnection: close\r\n${extraHeaders}\r\n`;
  return raw(Buffer.concat([Buffer.from(head, 'latin1'), b]));
}

/** The body of a chunked HTTP/1.1 response, de-chunked. */
export function dechunk(body) {
  let out = '';
  let i = 0;
  for (;;) {
    const nl = body.indexOf('\r\n', i);
    if (nl < 0) break;
    const n = parseInt(body.slice(i, nl), 16);
    if (!(n > 0)) break;
    out += body.slice(nl + 2, nl + 2 + n);
    i = nl + 2 + n + 2;
  }
  return out;
}

// ---- Prometheus text format, strictly ------------------------------------

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(s, line) {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`bad value '${s}' in: ${line}`);
  return Number(s);
}

function parseLabels(s, line) {
  // s is the text between { and } with escapes \\ \" \n in values
  const labels = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`bad labels in: ${line}`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name)) throw new Error(`bad label name '${name}' in: ${line}`);
    if (s[eq + 1] !== '"') throw new Error(`label value not quoted in: ${line}`);
    let j = eq + 2;
    let v = '';
    for (;;) {
      if (j >= s.length) throw new Error(`unterminated label value in: ${line}`);
      const c = s[j];
      if (c === '\\') {
        const n = s[j + 1];
        if (n === '\\') v += '\\'; else if (n === '"') v += '"'; else if (n === 'n') v += '\n';
        else throw new Error(`bad escape in: ${line}`);
        j += 2;
      } else if (c === '"') { j++; break; } else { v += c; j++; }
    }
    if (name in labels) throw new Error(`duplicate label '${name}' in: ${line}`);
    labels[name] = v;
    if (j < s.length) {
      if (s[j] !== ',') throw new Error(`expected ',' in: ${line}`);
      j++;
    }
    i = j;
  }
  return labels;
}

/**
 * Parses exposition text. Returns Map name -> {type, help, samples:
 * [{name, labels, value}]}. Throws on any syntax or consistency error:
 * unknown line shapes, TYPE after samples, a TYPE given twice, duplicate
 * series, histogram buckets not cumulative or without +Inf == _count,
 * negative counters.
 */
export function parseProm(text) {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map();
  const seen = new Set();
  const family = (n) => {
    if (!families.has(n)) families.set(n, { type: 'untyped', help: null, samples: [], typed: false });
    return families.get(n);
  };
  const baseOf = (n) => {
    for (const suf of ['_bucket', '_sum', '_count']) {
      if (n.endsWith(suf) && families.has(n.slice(0, -suf.length)) &&
          families.get(n.slice(0, -suf.length)).type === 'histogram') return n.slice(0, -suf.length);
    }
    return n;
  };
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) { if (/^# (HELP|TYPE)/.test(line)) throw new Error(`bad comment: ${line}`); continue; }
      if (!NAME.test(m[2])) throw new Error(`bad metric name in: ${line}`);
      const f = family(m[2]);
      if (m[1] === 'TYPE') {
        if (!TYPES.has(m[3])) throw new Error(`bad type in: ${line}`);
        if (f.typed) throw new Error(`TYPE given twice: ${line}`);
        if (f.samples.length) throw new Error(`TYPE after samples: ${line}`);
        f.type = m[3];
        f.typed = true;
      } else {
        if (f.help !== null) throw new Error(`HELP given twice: ${line}`);
        f.help = m[3];
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const labels = m[3] !== undefined ? parseLabels(m[3], line) : {};
    const value = parseValue(m[4], line);
    const key = m[1] + JSON.stringify(Object.entries(labels).sort());
    if (seen.has(key)) throw new Error(`duplicate series: ${line}`);
    seen.add(key);
    const f = family(baseOf(m[1]));
    if (f.type === 'counter' && !(value >= 0)) throw new Error(`negative counter: ${line}`);
    f.samples.push({ name: m[1], labels, value });
  }
  for (const [name, f] of families) {
    if (f.type !== 'histogram') continue;
    const groups = new Map();
    for (const s of f.samples) {
      const { le, ...rest } = s.labels;
      const k = JSON.stringify(Object.entries(rest).sort());
      if (!groups.has(k)) groups.set(k, { buckets: [], count: null, sum: null });
      const g = groups.get(k);
      if (s.name === `${name}_bucket`) {
        if (le === undefined) throw new Error(`${name}: bucket without le`);
        g.buckets.push([parseValue(le, name), s.value]);
      } else if (s.name === `${name}_count`) g.count = s.value;
      else if (s.name === `${name}_sum`) g.sum = s.value;
      else throw new Error(`${name}: stray sample ${s.name}`);
    }
    for (const g of groups.values()) {
      if (!g.buckets.length || g.count === null || g.sum === null) throw new Error(`${name}: incomplete histogram`);
      for (let i = 1; i < g.buckets.length; i++) {
        if (!(g.buckets[i][0] > g.buckets[i - 1][0])) throw new Error(`${name}: le not increasing`);
        if (g.buckets[i][1] < g.buckets[i - 1][1]) throw new Error(`${name}: buckets not cumulative`);
      }
      const last = g.buckets[g.buckets.length - 1];
      if (last[0] !== Infinity) throw new Error(`${name}: no +Inf bucket`);
      if (last[1] !== g.count) throw new Error(`${name}: +Inf bucket != _count`);
    }
  }
  return families;
}

/** The value of one series (labels must match exactly), or undefined. */
export function sample(families, name, labels = {}) {
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name !== name) continue;
      const a = Object.entries(s.labels).sort(), b = Object.entries(labels).sort();
      if (JSON.stringify(a) === JSON.stringify(b)) return s.value;
    }
  }
  return undefined;
}

export async function metrics() {
  const r = await get('/metrics');
  if (r.status !== 200) throw new Error(`/metrics: ${r.status}`);
  return parseProm(r.text);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A Qwen/Hermes-style tool call, as the model would write it. */
export function hermesCall(name, args) {
  return `<tool_call>\n${JSON.stringify({ name, arguments: args })}\n</tool_call>`;
}
