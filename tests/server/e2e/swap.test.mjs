// swap.test.mjs - model hot-swap over HTTP (issue 7), with the official
// OpenAI and Anthropic SDKs against a real `semantic serve`:
//   - two agents chat on model A; a swap to B (another geometry) starts
//     while a stream is active, and the stream completes before the unload
//     (the drain waits for it); the agents chat on B (B never sees A's
//     caches); a swap brings A back; A's agents continue with cached tokens
//     > 0 and the same greedy output as a cold run without any swap;
//   - concurrency: two simultaneous swaps give exactly one 409; a request
//     sent during the swap waits and succeeds on the new model; one with a
//     shorter own timeout (X-Queue-Timeout-Ms) gets 503 with Retry-After;
//   - drain timeout: during a long generation, a swap with
//     timeout_seconds 1 is abandoned (504), the generation completes, the
//     server keeps serving A;
//   - 404 for an unknown model, 400 for a bad body, 401 without the key.
// "Long" generations are sized from the measured token rate (the tests
// assert orders of events, never timings).
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, openai, anthropic, chat, call, admin, swap, current, metrics, sample, agentFile, tmpdir,
  killAll, waitFor, tokensFor, startLongStream, sleep,
} from './harness.mjs';

after(killAll);

const cachedOf = (r) => r.usage.prompt_tokens_details.cached_tokens;
const ALPHA1 = [{ role: 'user', content: 'Alpha here: list three colours of the rainbow.' }];
const ALPHA_REPLY = 'Red, orange and yellow.';
const ALPHA2 = [...ALPHA1, { role: 'assistant', content: ALPHA_REPLY }, { role: 'user', content: 'Now three more, please.' }];
const BETA1 = [{ role: 'user', content: 'Beta speaking: name a large planet of the solar system.' }];
const BETA_REPLY = 'Jupiter is the largest.';
const BETA2 = [...BETA1, { role: 'assistant', content: BETA_REPLY }, { role: 'user', content: 'And the smallest one?' }];

let s;
let cacheDir;

async function betaTurn(url, messages, extra = {}) {
  const r = await anthropic(url).messages.create({ model: 'default', max_tokens: 8, temperature: 0, messages, ...extra },
    { headers: { 'X-Session-ID': 'beta' } });
  return { text: r.content.map((b) => b.text ?? '').join(''), usage: r.usage, model: r.model };
}

test('A -> B during a stream -> A: caches survive, same greedy output; one 409; waiting and impatient requests', async () => {
  cacheDir = tmpdir('swap');
  s = await startServer({ cacheDir });
  const c = openai(s.url);
  // two agents on A
  const a1 = await chat(c, 'alpha', ALPHA1, { forced: ALPHA_REPLY, max_tokens: 32 });
  const b1 = await betaTurn(s.url, BETA1, { semantic_test_completion: BETA_REPLY, max_tokens: 32 });
  assert.equal(a1.model, 'org/model-a');
  assert.equal(b1.model, 'org/model-a');
  await agentFile(cacheDir, 'alpha');
  await agentFile(cacheDir, 'beta');
  const alphaStored = (await call(s.url, 'GET', '/v1/agents/alpha')).json.tokens;

  // a stream is running on A when two swaps to B arrive together
  const n = await tokensFor(c, 1.5);
  const stream = await startLongStream(c, n, 'streamer');
  const swaps = [swap(s.url, 'org/model-b'), swap(s.url, 'org/model-b')];
  await waitFor(async () => (await current(s.url)).state === 'draining', 30000, 'the drain');
  // sent during the swap: one waits, one gives up after its own 300 ms
  const waiter = chat(c, 'gamma', [{ role: 'user', content: 'I arrive during the swap.' }], { max_tokens: 3 });
  const impatient = await call(s.url, 'POST', '/v1/chat/completions',
    { model: 'default', messages: [{ role: 'user', content: 'I cannot wait.' }], max_tokens: 3 },
    { 'X-Queue-Timeout-Ms': '300' });
  assert.equal(impatient.status, 503);
  assert.ok(Number(impatient.headers.get('retry-after')) >= 1);
  assert.equal(impatient.json.error.code, 'model_swapping');
  const streamed = await stream.done;
  const [r1, r2] = await Promise.all(swaps);
  // the stream ran to its end on A: the unload came after it
  assert.equal(streamed.finish, 'length');
  assert.equal(streamed.words, n);
  assert.equal(streamed.model, 'org/model-a');
  const statuses = [r1.status, r2.status].sort();
  assert.deepEqual(statuses, [200, 409], 'exactly one 409');
  const ok = r1.status === 200 ? r1.json : r2.json;
  const busy = r1.status === 409 ? r1.json : r2.json;
  assert.equal(busy.error.code, 'swap_in_progress');
  assert.equal(ok.status, 'success');
  assert.equal(ok.old_model_id, 'org/model-a');
  assert.equal(ok.new_model_id, 'org/model-b');
  assert.deepEqual(ok.steps.map((x) => x.name),
    ['drain', 'evict', 'shutdown', 'unload', 'load', 'reconfigure', 'update_tag', 'reinit']);
  assert.ok(ok.steps.every((x) => typeof x.ms === 'number' && x.ms >= 0));
  assert.ok(ok.duration_ms >= ok.steps[0].ms);
  const w = await waiter;
  assert.equal(w.model, 'org/model-b', 'the waiting request ran on the new model');
  assert.equal(w.usage.completion_tokens, 3);

  // on B: another geometry, and A's caches are not B's
  const cur = await current(s.url);
  assert.equal(cur.model_id, 'org/model-b');
  assert.equal(cur.state, 'serving');
  assert.equal(cur.n_layers, 3);
  assert.equal(cur.n_kv_heads, 2);
  assert.equal(cur.head_dim, 16);
  assert.equal(cur.block_tokens, 16);
  assert.equal(cur.kv_format, 'f16');
  assert.equal(cur.architecture, 'Qwen2ForCausalLM');
  const onB = await chat(c, 'alpha', ALPHA2);
  assert.equal(onB.model, 'org/model-b');
  assert.equal(cachedOf(onB), 0, 'B never loads A\'s cache');
  const betaOnB = await betaTurn(s.url, BETA2);
  assert.equal(betaOnB.usage.cache_read_input_tokens, 0);
  assert.equal((await call(s.url, 'GET', '/v1/agents/alpha')).json.model, 'org/model-b');

  // back to A: A's agents continue from their files
  const back = await swap(s.url, 'org/model-a', 60);
  assert.equal(back.status, 200, back.text);
  assert.equal(back.json.old_model_id, 'org/model-b');
  const a2 = await chat(c, 'alpha', ALPHA2);
  assert.equal(a2.model, 'org/model-a');
  assert.equal(cachedOf(a2), alphaStored, 'alpha reuses everything it had stored on A');
  const b2 = await betaTurn(s.url, BETA2);
  assert.ok(b2.usage.cache_read_input_tokens > 0, 'beta reuses its cache on A');
  // the same greedy output as a cold run without any swap
  assert.equal((await admin(s.url, 'DELETE', '/admin/caches')).status, 200);
  const coldA = await chat(c, 'cold-alpha', ALPHA2);
  assert.equal(cachedOf(coldA), 0);
  assert.equal(a2.text, coldA.text);
  const coldB = await anthropic(s.url).messages.create({ model: 'default', max_tokens: 8, temperature: 0, messages: BETA2 },
    { headers: { 'X-Session-ID': 'cold-beta' } });
  assert.equal(coldB.usage.cache_read_input_tokens, 0);
  assert.equal(coldB.content.map((x) => x.text ?? '').join(''), b2.text);

  const m = await metrics(s.url);
  assert.equal(sample(m, 'semantic_swaps_total', { result: 'ok' }), 2);
  assert.equal(m.get('semantic_model_info').samples[0].labels.model, 'org/model-a');
  assert.ok(sample(m, 'semantic_swap_last_step_seconds', { step: 'load' }) > 0);
  assert.equal(sample(m, 'semantic_swap_duration_seconds_count'), 2);
});

test('drain timeout: a 1 s swap during a long generation is abandoned; the generation completes', async () => {
  const c = openai(s.url);
  const n = await tokensFor(c, 3);
  const stream = await startLongStream(c, n, 'long');
  const r = await swap(s.url, 'org/model-b', 1);
  assert.equal(r.status, 504, r.text);
  assert.equal(r.json.status, 'abandoned');
  assert.equal(r.json.abandoned, true);
  assert.equal(r.json.rolled_back, false);
  assert.equal(r.json.error.code, 'swap_abandoned');
  assert.equal((await current(s.url)).model_id, 'org/model-a');
  const streamed = await stream.done;
  assert.equal(streamed.finish, 'length');
  assert.equal(streamed.words, n);
  assert.equal(streamed.model, 'org/model-a');
  const cur = await current(s.url);
  assert.equal(cur.state, 'serving');
  assert.equal(cur.model_id, 'org/model-a');
  const after1 = await chat(c, 'after-abandon', [{ role: 'user', content: 'Still serving?' }], { max_tokens: 2 });
  assert.equal(after1.model, 'org/model-a');
  assert.equal(sample(await metrics(s.url), 'semantic_swaps_total', { result: 'abandoned' }), 1);
});

test('refusals: unknown model 404, bad bodies 400, no key 401; nothing touched', async () => {
  const before = await current(s.url);
  const r404 = await swap(s.url, 'org/no-such-model');
  assert.equal(r404.status, 404);
  assert.equal(r404.json.error.code, 'model_not_found');
  assert.equal((await swap(s.url, '../etc')).status, 400);
  assert.equal((await swap(s.url, 'org/model-b', 0)).status, 400);
  assert.equal((await swap(s.url, 'org/model-b', 601)).status, 400);
  assert.equal((await admin(s.url, 'POST', '/admin/models/swap', { timeout_seconds: 5 })).status, 400);
  assert.equal((await admin(s.url, 'POST', '/admin/models/swap', { model_id: 7 })).status, 400);
  assert.equal((await call(s.url, 'POST', '/admin/models/swap', { model_id: 'org/model-b' })).status, 401);
  assert.equal((await call(s.url, 'POST', '/admin/models/swap', { model_id: 'org/model-b' }, { 'X-Admin-Key': 'nope' })).status, 401);
  const after1 = await current(s.url);
  assert.equal(after1.model_id, before.model_id);
  assert.equal(after1.loaded_at_ms, before.loaded_at_ms);
  // the registry
  const av = await admin(s.url, 'GET', '/admin/models/available');
  assert.equal(av.status, 200);
  const ids = av.json.data.map((m) => m.id).sort();
  assert.ok(['org/model-a', 'org/model-b', 'org/model-big'].every((id) => ids.includes(id)), ids.join());
  const a = av.json.data.find((m) => m.id === 'org/model-a');
  assert.equal(a.loaded, true);
  assert.deepEqual(a.quantization, { bits: 4, group_size: 64 });
  assert.deepEqual(a.geometry, { n_layers: 2, n_kv_heads: 1, head_dim: 32, v_head_dim: 32 });
  assert.ok(a.bytes_on_disk > 0);
  assert.equal(av.json.data.find((m) => m.id === 'org/model-b').loaded, false);
  // OpenAI's models.retrieve with an org/name id
  const got = await openai(s.url).models.retrieve('org/model-a');
  assert.equal(got.id, 'org/model-a');
  assert.equal(await s.stop(), 0);
  await sleep(0);
});
