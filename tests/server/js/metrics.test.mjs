// metrics.test.mjs - GET /metrics parses with a strict Prometheus text-format
// parser (util.mjs: syntax, TYPE before samples, no duplicate series,
// cumulative histogram buckets ending in +Inf == _count), has the series the
// server promises, and keeps label cardinality bounded: requests to odd
// paths show up under their route template or "other", never raw.
import test from 'node:test';
import assert from 'node:assert/strict';
import { get, post, metrics, sample, parseProm, USER } from './util.mjs';

const ROUTES = new Set(['/v1/chat/completions', '/v1/completions', '/v1/messages', '/v1/messages/count_tokens',
  '/v1/models', '/v1/models/{id}', '/health', '/health/live', '/health/startup', '/health/ready', '/metrics',
  '/admin/models/current', '/admin/models/available', '/admin/models/swap', '/admin/caches', '/v1/agents',
  '/v1/agents/{id}', 'other']);

test('the strict parser itself rejects broken expositions', () => {
  assert.throws(() => parseProm('a 1'), /newline/);
  assert.throws(() => parseProm('a{b="c} 1\n'), /label/);
  assert.throws(() => parseProm('a 1\na 2\n'), /duplicate/);
  assert.throws(() => parseProm('a 1\n# TYPE a counter\n'), /TYPE after samples/);
  assert.throws(() => parseProm('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'), /cumulative/);
  assert.throws(() => parseProm('# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'), /\+Inf/);
  assert.throws(() => parseProm('# TYPE c counter\nc -1\n'), /negative/);
  assert.throws(() => parseProm('0bad 1\n'), /bad sample/);
  assert.ok(parseProm('# HELP a x\n# TYPE a gauge\na{b="q\\"\\n"} 1.5e3\n').get('a'));
});

test('/metrics parses and has every promised series', async () => {
  await post('/v1/chat/completions', { model: 'm', messages: USER, max_tokens: 3 });
  await get('/v1/models/some/odd/path');
  await get('/v1/models/unknown-model', { authorization: `Bearer ${process.env.SEM_API_KEY ?? 'sk-test-a'}` });
  await get('/not/a/route?x=1');
  const r = await get('/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const f = parseProm(r.text);
  const want = {
    semantic_http_requests_total: 'counter',
    semantic_http_request_duration_seconds: 'histogram',
    semantic_time_to_first_token_seconds: 'histogram',
    semantic_inter_token_seconds: 'histogram',
    semantic_prompt_tokens_total: 'counter',
    semantic_completion_tokens_total: 'counter',
    semantic_cached_prompt_tokens_total: 'counter',
    semantic_cache_lookups_total: 'counter',
    semantic_batch_size: 'gauge',
    semantic_queue_depth: 'gauge',
    semantic_requests_running: 'gauge',
    semantic_requests_inflight: 'gauge',
    semantic_pool_blocks_used: 'gauge',
    semantic_pool_blocks_total: 'gauge',
    semantic_kv_bytes_used: 'gauge',
    semantic_kv_bytes_total: 'gauge',
    semantic_swaps_total: 'counter',
    semantic_swap_duration_seconds: 'histogram',
    semantic_model_info: 'gauge',
    semantic_state: 'gauge',
    semantic_client_disconnects_total: 'counter',
    semantic_rate_limited_total: 'counter',
    process_resident_memory_bytes: 'gauge',
  };
  for (const [name, type] of Object.entries(want)) {
    assert.ok(f.has(name), `missing ${name}`);
    assert.equal(f.get(name).type, type, `${name} type`);
    assert.ok(f.get(name).help, `${name} HELP`);
  }
  for (const s of f.get('semantic_http_requests_total').samples) {
    assert.ok(ROUTES.has(s.labels.route), `raw path leaked into a label: ${s.labels.route}`);
    assert.match(s.labels.status, /^(\d{3}|other)$/);
  }
  assert.ok(sample(f, 'semantic_http_requests_total', { route: '/v1/chat/completions', status: '200' }) >= 1);
  assert.ok(sample(f, 'semantic_http_requests_total', { route: '/v1/models/{id}', status: '404' }) >= 1);
  assert.ok(sample(f, 'semantic_http_requests_total', { route: 'other', status: '404' }) >= 1);
  assert.ok(sample(f, 'semantic_time_to_first_token_seconds_count') >= 1);
  assert.ok(sample(f, 'semantic_completion_tokens_total') >= 3);
  assert.ok(sample(f, 'semantic_pool_blocks_total') > 0);
  // Llama's pool has no ring: every block is whole, so bytes are blocks x block bytes
  const blockBytes = sample(f, 'semantic_kv_bytes_total') / sample(f, 'semantic_pool_blocks_total');
  assert.ok(Number.isInteger(blockBytes) && blockBytes > 0);
  assert.equal(sample(f, 'semantic_kv_bytes_used'), sample(f, 'semantic_pool_blocks_used') * blockBytes);
  assert.equal(sample(f, 'semantic_state', { state: 'serving' }), 1);
  const info = f.get('semantic_model_info').samples[0];
  assert.equal(info.labels.model, 'tiny-qwen3');
  assert.equal(info.labels.arch, 'LlamaForCausalLM');
  assert.ok(sample(f, 'process_resident_memory_bytes') > 1e6);
});

test('counters move with traffic', async () => {
  const a = await metrics();
  await post('/v1/chat/completions', { model: 'm', messages: USER, max_tokens: 4, semantic_test_completion: 'one two three four five six' });
  const b = await metrics();
  const key = { route: '/v1/chat/completions', status: '200' };
  assert.equal(sample(b, 'semantic_http_requests_total', key), (sample(a, 'semantic_http_requests_total', key) ?? 0) + 1);
  assert.equal(sample(b, 'semantic_completion_tokens_total'), sample(a, 'semantic_completion_tokens_total') + 4);
  assert.ok(sample(b, 'semantic_prompt_tokens_total') > sample(a, 'semantic_prompt_tokens_total'));
});

test('health probes', async () => {
  assert.equal((await get('/health/live')).status, 200);
  assert.equal((await get('/health/startup')).status, 200);
  const ready = await get('/health/ready');
  assert.equal(ready.status, 200);
  assert.equal(ready.json.status, 'ready');
  const h = await get('/health');
  assert.equal(h.status, 200);
  assert.equal(h.json.state, 'serving');
  assert.equal(h.json.model, 'tiny-qwen3');
});
