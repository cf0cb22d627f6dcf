// bad_input.test.mjs - a table of malformed and hostile requests against
// `semantic serve`. Each one must get its status and the right API's error
// envelope (when the server, not libmicrohttpd's parser, answers), and after
// each one the server must keep serving: /health/live stays 200. Then the
// slow ones: a body that never completes (closed at the idle timeout while
// others are served), and a client that disconnects mid-stream (its request
// is cancelled: counted, and nothing keeps running).
import test from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { post, get, raw, rawPost, KEY, PORT, HOST, metrics, sample, sleep, USER, QUICK } from './util.mjs';

const CHAT = '/v1/chat/completions';
const MSG = '/v1/messages';
const ok = { model: 'm', messages: USER, max_tokens: 1 };
const anth = { model: 'm', max_tokens: 1, messages: USER };
const A = { 'anthropic-version': '2023-06-01' };
const deep = (n) => '{"model":"m","messages":' + '['.repeat(n) + ']'.repeat(n) + '}';

// [name, request thunk, expected status(es), envelope: 'openai' | 'anthropic' | null]
const cases = [
  ['invalid JSON', () => post(CHAT, '{"model":'), 400, 'openai'],
  ['top level is an array', () => post(CHAT, '[1,2,3]'), 400, 'openai'],
  ['top level is a string', () => post(CHAT, '"hello"'), 400, 'openai'],
  ['empty body', () => post(CHAT, ''), 400, 'openai'],
  ['trailing garbage after JSON', () => post(CHAT, JSON.stringify(ok) + ' xyz'), 400, 'openai'],
  ['model is a number', () => post(CHAT, { ...ok, model: 42 }), 400, 'openai'],
  ['messages missing', () => post(CHAT, { model: 'm' }), 400, 'openai'],
  ['messages empty', () => post(CHAT, { model: 'm', messages: [] }), 400, 'openai'],
  ['messages is an object', () => post(CHAT, { model: 'm', messages: { role: 'user' } }), 400, 'openai'],
  ['unknown role', () => post(CHAT, { model: 'm', messages: [{ role: 'hacker', content: 'x' }] }), 400, 'openai'],
  ['message without content', () => post(CHAT, { model: 'm', messages: [{ role: 'user' }] }), 400, 'openai'],
  ['content is a number', () => post(CHAT, { model: 'm', messages: [{ role: 'user', content: 7 }] }), 400, 'openai'],
  ['image content part', () => post(CHAT, { model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }), 400, 'openai'],
  ['max_tokens zero', () => post(CHAT, { ...ok, max_tokens: 0 }), 400, 'openai'],
  ['max_tokens negative', () => post(CHAT, { ...ok, max_tokens: -7 }), 400, 'openai'],
  ['max_tokens huge real', () => post(CHAT, '{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1e30}'), 400, 'openai'],
  ['max_tokens beyond int64', () => post(CHAT, '{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":92233720368547758070}'), 400, 'openai'],
  ['max_tokens as a string', () => post(CHAT, { ...ok, max_tokens: '5' }), 400, 'openai'],
  ['max_tokens over the context', () => post(CHAT, { ...ok, max_tokens: 1e6 }), 400, 'openai'],
  ['temperature overflowing a double', () => post(CHAT, '{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":1e999}'), 400, 'openai'],
  ['temperature negative', () => post(CHAT, { ...ok, temperature: -1 }), 400, 'openai'],
  ['n = 5', () => post(CHAT, { ...ok, n: 5 }), 400, 'openai'],
  ['stop with a number', () => post(CHAT, { ...ok, stop: ['a', 1] }), 400, 'openai'],
  ['top_logprobs 50', () => post(CHAT, { ...ok, logprobs: true, top_logprobs: 50 }), 400, 'openai'],
  ['tool with a bad name', () => post(CHAT, { ...ok, tools: [{ type: 'function', function: { name: 'rm -rf /' } }] }), 400, 'openai'],
  ['test hook of the wrong type', () => post(CHAT, { ...ok, semantic_test_completion: 5 }), 400, 'openai'],
  ['leading-zero number', () => post(CHAT, '{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":01}'), 400, 'openai'],
  ['invalid UTF-8 in a string', () => rawPost(CHAT, Buffer.concat([Buffer.from('{"model":"m","messages":[{"role":"user","content":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}]}')])), 400, 'openai'],
  ['NUL inside a string', () => post(CHAT, '{"model":"m","messages":[{"role":"user","content":"a\\u0000b"}]}'), 400, 'openai'],
  ['deep nesting', () => post(CHAT, deep(20000)), 400, 'openai'],
  ['10 MB body', () => rawPost(CHAT, Buffer.alloc(10 * 1024 * 1024, 0x20)), 413, 'openai'],
  ['200 MB Content-Length, no body', () => raw(`POST ${CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: 209715200\r\n\r\n`), 413, 'openai'],
  ['chunked upload over the limit', () => {
    const chunk = Buffer.alloc(256 * 1024, 0x20);
    const parts = [Buffer.from(`POST ${CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`)];
    for (let i = 0; i < 8; i++) parts.push(Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n'));
    parts.push(Buffer.from('0\r\n\r\n'));
    return raw(Buffer.concat(parts));
  }, 413, 'openai'],
  ['session id with ../', () => post(CHAT, ok, { 'x-session-id': '../../etc/passwd' }), 400, 'openai'],
  ['session id starting with a dot', () => post(CHAT, ok, { 'x-session-id': '.ssh' }), 400, 'openai'],
  ['session id of 200 bytes', () => post(CHAT, ok, { 'x-session-id': 'a'.repeat(200) }), 400, 'openai'],
  ['session id with NUL', () => raw(`POST ${CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nX-Session-ID: ab\0cd\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`), 400, null],
  ['body session_id with a slash', () => post(CHAT, { ...ok, session_id: 'a/b' }), 400, 'openai'],
  ['body agent_id with NUL', () => post(CHAT, '{"model":"m","messages":[{"role":"user","content":"x"}],"agent_id":"a\\u0000b"}'), 400, 'openai'],
  ['no API key', () => post(CHAT, ok, { authorization: '' }), 401, 'openai'],
  ['Basic auth instead of Bearer', () => post(CHAT, ok, { authorization: 'Basic c2stdGVzdC1hOg==' }), 401, 'openai'],
  ['unknown route', () => post('/v1/engines/davinci', ok), 404, 'openai'],
  ['unknown route without /v1', () => get('/wp-admin/setup.php'), 404, 'openai'],
  ['wrong method', () => get(CHAT, { authorization: `Bearer ${KEY}` }), 405, 'openai'],
  ['admin without a key', () => get('/admin/models/current'), 401, 'openai'],
  ['completions: token id outside the vocabulary', () => post('/v1/completions', { model: 'm', prompt: [1, 999999999] }), 400, 'openai'],
  ['completions: echo', () => post('/v1/completions', { model: 'm', prompt: 'x', echo: true }), 400, 'openai'],
  ['anthropic: invalid JSON', () => post(MSG, '{"model"', A), 400, 'anthropic'],
  ['anthropic: missing max_tokens', () => post(MSG, { model: 'm', messages: USER }, A), 400, 'anthropic'],
  ['anthropic: system role in messages', () => post(MSG, { ...anth, messages: [{ role: 'system', content: 'x' }] }, A), 400, 'anthropic'],
  ['anthropic: image block', () => post(MSG, { ...anth, messages: [{ role: 'user', content: [{ type: 'image', source: {} }] }] }, A), 400, 'anthropic'],
  ['anthropic: stop_sequences as a string', () => post(MSG, { ...anth, stop_sequences: 'x' }, A), 400, 'anthropic'],
  ['anthropic: temperature 2', () => post(MSG, { ...anth, temperature: 2 }, A), 400, 'anthropic'],
  ['anthropic: count_tokens with messages as a string', () => post('/v1/messages/count_tokens', { model: 'm', messages: 'hi' }, A), 400, 'anthropic'],
  ['anthropic: wrong key', () => post(MSG, anth, { ...A, authorization: '', 'x-api-key': 'nope' }), 401, 'anthropic'],
  ['a sane request still works', () => post(CHAT, ok), 200, null],
];

async function live() {
  const r = await get('/health/live');
  assert.equal(r.status, 200, '/health/live must stay 200');
}

function checkEnvelope(kind, json, name) {
  assert.ok(json, `${name}: JSON body expected`);
  if (kind === 'openai') {
    assert.equal(typeof json.error?.message, 'string', `${name}: error.message`);
    assert.equal(typeof json.error?.type, 'string', `${name}: error.type`);
    assert.ok('param' in json.error && 'code' in json.error, `${name}: error.param and error.code`);
  } else {
    assert.equal(json.type, 'error', `${name}: type`);
    assert.equal(typeof json.error?.type, 'string', `${name}: error.type`);
    assert.equal(typeof json.error?.message, 'string', `${name}: error.message`);
  }
}

test(`bad-input table (${cases.length} requests)`, async () => {
  assert.ok(cases.length >= 40);
  for (const [name, send, status, envelope] of cases) {
    const r = await send();
    let json = r.json;
    if (json === undefined) { // a raw response: de-chunk-free body (Content-Length)
      try { json = JSON.parse(r.body); } catch { json = null; }
    }
    assert.equal(r.status, status, `${name}: status ${r.status}, body ${String(r.text ?? r.body).slice(0, 200)}`);
    if (envelope) checkEnvelope(envelope, json, name);
    const rid = r.headers ? r.headers.get('x-request-id') : /\r\nX-Request-ID: (\S+)/i.exec(r.head)?.[1];
    if (r.status >= 400 && envelope) assert.match(rid ?? '', /^[A-Za-z0-9._-]{1,128}$/, `${name}: X-Request-ID on errors`);
    await live();
  }
});

test('header injection: hostile X-Request-ID is never echoed', async () => {
  const r = await raw(`GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc def"<x>\r\nConnection: close\r\n\r\n`);
  assert.equal(r.status, 200);
  assert.ok(!r.head.includes('abc def'));
  assert.match(r.head, /\r\nX-Request-ID: req_[0-9a-f]{24}\r\n/);
  const lf = await raw(`GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\nX-Injected: 1\r\nConnection: close\r\n\r\n`);
  assert.ok([200, 400].includes(lf.status));
  assert.ok(!/\r\nX-Injected:/i.test(lf.head), 'no injected response header');
  const garbage = await raw('GARBAGE\r\n\r\n', { idleMs: 2000 });
  assert.ok(garbage.status === 400 || garbage.status === 0, `garbage got ${garbage.status}`);
  const huge = await raw(`GET /health/live?${'a'.repeat(200000)} HTTP/1.1\r\nHost: x\r\n\r\n`, { idleMs: 2000 });
  assert.ok([0, 400, 413, 414, 431].includes(huge.status), `huge URL got ${huge.status}`);
  await live();
});

test('a body that never completes is closed at the idle timeout; others are served meanwhile', async () => {
  const closed = raw(`POST ${CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: 1000\r\n\r\n{"model":`, { idleMs: 20000 });
  const r = await post(CHAT, ok);
  assert.equal(r.status, 200);
  await live();
  const res = await closed;
  assert.equal(res.closed, true, 'the server must close the stalled upload');
  await live();
});

test('a client that disconnects mid-stream cancels its request', async () => {
  const before = sample(await metrics(), 'semantic_client_disconnects_total') ?? 0;
  const body = JSON.stringify({ model: 'm', messages: USER, stream: true, semantic_test_completion: 'word '.repeat(QUICK ? 200 : 12000) });
  await new Promise((resolve, reject) => {
    const s = net.connect(PORT, HOST, () => {
      s.write(`POST ${CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
    let got = '';
    s.on('data', (d) => {
      got += d.toString();
      if ((got.match(/data: /g) ?? []).length >= 3) { s.destroy(); resolve(); }
    });
    s.on('error', reject);
    setTimeout(() => reject(new Error('no stream data')), 30000).unref();
  });
  let m;
  for (let i = 0; i < 100; i++) {
    m = await metrics();
    if ((sample(m, 'semantic_client_disconnects_total') ?? 0) > before && sample(m, 'semantic_requests_inflight') === 0 &&
        sample(m, 'semantic_requests_running') === 0) break; /* the engine frees it at its next step */
    await sleep(100);
  }
  assert.ok(sample(m, 'semantic_client_disconnects_total') > before, 'the disconnect is counted');
  assert.equal(sample(m, 'semantic_requests_inflight'), 0, 'nothing keeps generating');
  assert.equal(sample(m, 'semantic_requests_running'), 0);
  await live();
  const r = await post(CHAT, ok);
  assert.equal(r.status, 200);
});

test('a suspended non-streaming client that hangs up is cancelled too', async () => {
  const before = sample(await metrics(), 'semantic_client_disconnects_total') ?? 0;
  /* Long enough to outlast the wait below even on a fast host; once the
   * hang-up is seen the rest is never generated. */
  const body = JSON.stringify({ model: 'm', messages: USER, semantic_test_completion: 'word '.repeat(12000) });
  const s = net.connect(PORT, HOST, () => {
    s.write(`POST ${CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  });
  /* Hang up only once the generation runs (its connection is suspended
   * then): on a loaded host a fixed delay could end the upload instead. */
  for (let i = 0; i < 500 && !(sample(await metrics(), 'semantic_requests_running') > 0); i++) await sleep(20);
  s.destroy();
  let m;
  for (let i = 0; i < 100; i++) {
    m = await metrics();
    if ((sample(m, 'semantic_client_disconnects_total') ?? 0) > before && sample(m, 'semantic_requests_inflight') === 0 &&
        sample(m, 'semantic_requests_running') === 0) break; /* the engine frees it at its next step */
    await sleep(100);
  }
  assert.ok(sample(m, 'semantic_client_disconnects_total') > before);
  assert.equal(sample(m, 'semantic_requests_inflight'), 0);
});
