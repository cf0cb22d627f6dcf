// openai.test.mjs - the OpenAI API of `semantic serve` through the official
// `openai` SDK: models, chat (plain and streaming), usage, stop sequences,
// seeds, logprobs, tool-call round trips (forced completions), legacy
// completions, the context limit, and the SDK's typed errors.
import test from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { openai, agent, USER, hermesCall, post, URL_, QUICK } from './util.mjs';

const client = openai();
const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

test('models: list and retrieve', async () => {
  const list = await client.models.list();
  assert.equal(list.data.length, 1);
  assert.equal(list.data[0].id, 'tiny-qwen3');
  const m = await client.models.retrieve('tiny-qwen3');
  assert.equal(m.id, 'tiny-qwen3');
  assert.equal(m.object, 'model');
});

test('chat: non-streaming with usage and a request id', async () => {
  const { data, response } = await client.chat.completions
    .create({ model: 'tiny-qwen3', messages: USER, max_tokens: 5, temperature: 0 })
    .withResponse();
  assert.equal(data.object, 'chat.completion');
  assert.match(data.id, /^chatcmpl-/);
  assert.equal(data.model, 'tiny-qwen3');
  assert.equal(data.choices.length, 1);
  assert.equal(data.choices[0].message.role, 'assistant');
  assert.equal(typeof data.choices[0].message.content, 'string');
  assert.equal(data.choices[0].finish_reason, 'length');
  assert.equal(data.usage.completion_tokens, 5);
  assert.ok(data.usage.prompt_tokens > 3);
  assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + 5);
  assert.equal(typeof data.usage.prompt_tokens_details.cached_tokens, 'number');
  assert.match(response.headers.get('x-request-id'), /^[A-Za-z0-9._-]{1,128}$/);
});

test('chat: a sane X-Request-ID is echoed, an insane one replaced', async () => {
  const ok = await post('/v1/chat/completions', { model: 'm', messages: USER, max_tokens: 1 },
    { 'x-request-id': 'trace.42_a-b' });
  assert.equal(ok.headers.get('x-request-id'), 'trace.42_a-b');
  const bad = await post('/v1/chat/completions', { model: 'm', messages: USER, max_tokens: 1 },
    { 'x-request-id': 'bad id"<script>' });
  assert.notEqual(bad.headers.get('x-request-id'), 'bad id"<script>');
  assert.match(bad.headers.get('x-request-id'), /^[A-Za-z0-9._-]+$/);
});

test('chat: streaming gives the same text as non-streaming (greedy), then usage', async () => {
  const params = { model: 'tiny-qwen3', messages: USER, max_tokens: 8, temperature: 0 };
  const whole = await client.chat.completions.create(params);
  const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish = null;
  let usage = null;
  let first = true;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) { usage = chunk.usage; assert.equal(chunk.choices.length, 0); continue; }
    if (first) { assert.equal(chunk.choices[0].delta.role, 'assistant'); first = false; }
    text += chunk.choices[0].delta.content ?? '';
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 8);
  assert.equal(usage.prompt_tokens, whole.usage.prompt_tokens);
});

test('chat: stop sequences, plain and streaming', async () => {
  const forced = 'Hello there STOP and more';
  const params = { model: 'm', messages: USER, stop: ['STOP', 'never'], semantic_test_completion: forced };
  const r = await client.chat.completions.create(params);
  assert.equal(r.choices[0].message.content, 'Hello there ');
  assert.equal(r.choices[0].finish_reason, 'stop');
  let text = '';
  for await (const c of await client.chat.completions.create({ ...params, stream: true })) {
    text += c.choices[0]?.delta?.content ?? '';
  }
  assert.equal(text, 'Hello there ');
  const single = await client.chat.completions.create({ ...params, stop: 'there' });
  assert.equal(single.choices[0].message.content, 'Hello ');
});

test('chat: the same seed gives the same sample', async () => {
  const p = { model: 'm', messages: USER, max_tokens: QUICK ? 4 : 12, temperature: 1.0, top_p: 1 };
  const a = await client.chat.completions.create({ ...p, seed: 1234 });
  const b = await client.chat.completions.create({ ...p, seed: 1234 });
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  const others = await Promise.all([1, 2, 3].map((s) => client.chat.completions.create({ ...p, seed: s })));
  assert.ok(others.some((o) => o.choices[0].message.content !== a.choices[0].message.content),
    'different seeds should sample differently');
});

test('chat: logprobs with top alternatives', async () => {
  const r = await client.chat.completions.create({
    model: 'm', messages: USER, max_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 2,
  });
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, 3);
  for (const t of lp) {
    assert.equal(typeof t.token, 'string');
    assert.ok(t.logprob <= 0);
    assert.ok(Array.isArray(t.bytes));
    assert.equal(t.top_logprobs.length, 2);
    assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
  }
});

test('tools: a forced tool call is parsed, then the result goes back', async () => {
  const messages = [{ role: 'user', content: 'Weather in Paris?' }];
  const r = await client.chat.completions.create({
    model: 'm', messages, tools: [WEATHER_TOOL],
    semantic_test_completion: hermesCall('get_weather', { city: 'Paris' }),
  });
  const msg = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(msg.tool_calls.length, 1);
  const call = msg.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
  assert.match(call.id, /^call_/);
  // round trip: the assistant's call and the tool's answer render and generate
  const r2 = await client.chat.completions.create({
    model: 'm', tools: [WEATHER_TOOL], max_tokens: 4,
    messages: [...messages, msg, { role: 'tool', tool_call_id: call.id, content: '{"temp": 21}' }],
  });
  assert.equal(r2.choices[0].message.role, 'assistant');
  assert.ok(r2.usage.completion_tokens <= 4);
  assert.ok(r2.usage.prompt_tokens > r.usage.prompt_tokens);
});

test('tools: streaming deltas carry each call index, id and name once', async () => {
  const forced = 'Checking both.\n' + hermesCall('get_weather', { city: 'Paris' }) + '\n' +
    hermesCall('get_weather', { city: 'Oslo', days: [1, 2] });
  const stream = await client.chat.completions.create({
    model: 'm', messages: USER, tools: [WEATHER_TOOL], stream: true, semantic_test_completion: forced,
  });
  const calls = [];
  let content = '';
  let finish = null;
  for await (const c of stream) {
    const d = c.choices[0]?.delta ?? {};
    content += d.content ?? '';
    for (const tc of d.tool_calls ?? []) {
      if (tc.id) {
        assert.equal(tc.index, calls.length, 'a new call takes the next index');
        calls.push({ id: tc.id, name: tc.function.name, args: tc.function.arguments ?? '' });
      } else {
        assert.ok(tc.index < calls.length);
        assert.equal(tc.function.name, undefined);
        calls[tc.index].args += tc.function.arguments ?? '';
      }
    }
    if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
  }
  assert.equal(finish, 'tool_calls');
  assert.equal(content, 'Checking both.\n');
  assert.equal(calls.length, 2);
  assert.deepEqual(JSON.parse(calls[0].args), { city: 'Paris' });
  assert.deepEqual(JSON.parse(calls[1].args), { city: 'Oslo', days: [1, 2] });
  assert.notEqual(calls[0].id, calls[1].id);
});

test('tools: tool_choice none leaves the text alone', async () => {
  const forced = hermesCall('get_weather', { city: 'Paris' });
  const r = await client.chat.completions.create({
    model: 'm', messages: USER, tools: [WEATHER_TOOL], tool_choice: 'none', semantic_test_completion: forced,
  });
  assert.equal(r.choices[0].message.tool_calls, undefined);
  assert.equal(r.choices[0].message.content, forced);
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('completions: text, streaming, logprobs, token-id prompts', async () => {
  const r = await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 4, temperature: 0, logprobs: 1 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 4);
  assert.equal(r.choices[0].logprobs.tokens.length, 4);
  assert.equal(r.choices[0].logprobs.tokens.join(''), r.choices[0].text);
  let text = '';
  for await (const c of await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 4, temperature: 0, stream: true })) {
    text += c.choices[0]?.text ?? '';
  }
  assert.equal(text, r.choices[0].text);
  const ids = await client.completions.create({ model: 'm', prompt: [9707, 1879], max_tokens: 2 });
  assert.equal(ids.usage.prompt_tokens, 2);
});

test('agents: X-Session-ID and body ids are accepted; bad ones are 400', async () => {
  const id = agent('ok');
  const r = await client.chat.completions.create({ model: 'm', messages: USER, max_tokens: 1 },
    { headers: { 'X-Session-ID': id } });
  assert.equal(r.choices.length, 1);
  const r2 = await client.chat.completions.create({ model: 'm', messages: USER, max_tokens: 1, session_id: agent('b') });
  assert.equal(r2.choices.length, 1);
  await assert.rejects(
    client.chat.completions.create({ model: 'm', messages: USER, max_tokens: 1 }, { headers: { 'X-Session-ID': '../../etc' } }),
    (e) => e instanceof OpenAI.BadRequestError && /X-Session-ID/.test(e.message));
  await assert.rejects(
    client.chat.completions.create({ model: 'm', messages: USER, max_tokens: 1, agent_id: '.git' }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'agent_id');
});

test('cache: a request sharing a running prefix reports cached tokens', async () => {
  const long = 'The quick brown fox jumps over the lazy dog. '.repeat(70); // > 2 blocks
  const messages = [{ role: 'system', content: long }, { role: 'user', content: 'Summarize.' }];
  const first = await client.chat.completions.create({ model: 'm', messages, max_tokens: 400, temperature: 0, stream: true });
  const it = first[Symbol.asyncIterator]();
  await it.next(); // the first request holds its blocks while it streams
  await it.next();
  const second = await client.chat.completions.create({ model: 'm', messages, max_tokens: 2, temperature: 0 });
  first.controller.abort();
  assert.ok(second.usage.prompt_tokens > 512);
  assert.ok(second.usage.prompt_tokens_details.cached_tokens > 0,
    `cached_tokens = ${second.usage.prompt_tokens_details.cached_tokens}`);
  assert.ok(second.usage.prompt_tokens_details.cached_tokens <= second.usage.prompt_tokens);
});

test('limits: prompt + max_tokens over the context is a 400 with the numbers', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'm', messages: USER, max_tokens: 100000 }),
    (e) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded' &&
      /maximum context length is \d+ tokens; you requested \d+ tokens \(\d+ in the prompt, 100000 for the completion\)/.test(e.message));
});

test('errors: the SDK raises its typed errors', async () => {
  const wrong = openai({ apiKey: 'sk-wrong' });
  await assert.rejects(wrong.chat.completions.create({ model: 'm', messages: USER }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401 && !!e.headers.get('x-request-id'));
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: USER, n: 2 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'n' &&
      e.error.type === 'invalid_request_error');
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: [] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'messages');
  await assert.rejects(client.models.retrieve('no-such-model'),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404);
  // per-agent rate limit: burst 2, then 429 with Retry-After
  const id = agent('rl');
  const call = () => client.chat.completions.create({ model: 'm', messages: USER, max_tokens: 1 }, { headers: { 'X-Session-ID': id } });
  await call();
  await call();
  await assert.rejects(call(), (e) => e instanceof OpenAI.RateLimitError && e.status === 429 &&
    Number(e.headers.get('retry-after')) >= 1 && !!e.headers.get('x-request-id'));
  // other agents are not affected
  await client.chat.completions.create({ model: 'm', messages: USER, max_tokens: 1 }, { headers: { 'X-Session-ID': agent('rl2') } });
});

test('admin: key required, constant answers', async () => {
  const noKey = await fetch(`${URL_}/admin/models/current`);
  assert.equal(noKey.status, 401);
  const wrong = await fetch(`${URL_}/admin/models/current`, { headers: { 'X-Admin-Key': 'adm-secreT' } });
  assert.equal(wrong.status, 401);
  const ok = await fetch(`${URL_}/admin/models/current`, { headers: { 'X-Admin-Key': 'adm-secret' } });
  assert.equal(ok.status, 200);
  const j = await ok.json();
  assert.equal(j.model_id, 'tiny-qwen3');
  assert.equal(j.state, 'serving');
  assert.equal(j.tool_format, 'hermes');
  const unknown = await fetch(`${URL_}/admin/nothing`, { headers: { 'X-Admin-Key': 'adm-secret' } });
  assert.equal(unknown.status, 404);
});

test('cors: allowed origins get headers; preflight answers', async () => {
  const r = await fetch(`${URL_}/health/live`, { headers: { Origin: 'https://app.example' } });
  assert.equal(r.headers.get('access-control-allow-origin'), 'https://app.example');
  const other = await fetch(`${URL_}/health/live`, { headers: { Origin: 'https://evil.example' } });
  assert.equal(other.headers.get('access-control-allow-origin'), null);
  const pre = await fetch(`${URL_}/v1/chat/completions`, {
    method: 'OPTIONS',
    headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' },
  });
  assert.equal(pre.status, 204);
  assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
  assert.equal(pre.headers.get('access-control-allow-headers'), 'authorization, content-type');
});
