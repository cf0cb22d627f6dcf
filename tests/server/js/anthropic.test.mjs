// anthropic.test.mjs - the Anthropic Messages API of `semantic serve`
// through the official `@anthropic-ai/sdk`: messages (plain and streaming,
// in the documented event order), usage with cache fields, stop sequences,
// tool use round trips (forced completions), count_tokens against the
// tokens generation used, models, and the SDK's typed errors.
import test from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { anthropic, agent, hermesCall, post } from './util.mjs';

const client = anthropic();
const MSGS = [{ role: 'user', content: 'Hello there' }];
const TOOL = {
  name: 'get_weather',
  description: 'Weather for a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

test('messages: non-streaming shape and usage', async () => {
  const m = await client.messages.create({ model: 'tiny-qwen3', max_tokens: 5, messages: MSGS, temperature: 0 });
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.match(m.id, /^msg_/);
  assert.equal(m.model, 'tiny-qwen3');
  assert.equal(m.content[0].type, 'text');
  assert.equal(m.stop_reason, 'max_tokens');
  assert.equal(m.stop_sequence, null);
  assert.equal(m.usage.output_tokens, 5);
  // every prompt token is either new input, read from a cache or written
  // to one (the server caches every conversation, anonymous ones included)
  assert.equal(typeof m.usage.cache_read_input_tokens, 'number');
  assert.equal(typeof m.usage.cache_creation_input_tokens, 'number');
  assert.ok(m.usage.input_tokens >= 0);
  assert.ok(m.usage.input_tokens + m.usage.cache_read_input_tokens + m.usage.cache_creation_input_tokens > 3);
});

test('messages: streaming follows the documented event order', async () => {
  const params = { model: 'm', max_tokens: 6, messages: MSGS, temperature: 0, system: 'Be brief.' };
  const whole = await client.messages.create(params);
  const stream = await client.messages.create({ ...params, stream: true });
  const types = [];
  let text = '';
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'content_block_delta') text += ev.delta.text;
  }
  // (the SDK drops ping events; the raw stream below has them)
  assert.deepEqual(types.slice(0, 2), ['message_start', 'content_block_start']);
  assert.deepEqual(types.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
  assert.ok(types.slice(2, -3).every((t) => t === 'content_block_delta'));
  const rawSse = await post('/v1/messages', { ...params, stream: true }, { 'anthropic-version': '2023-06-01' });
  assert.match(rawSse.headers.get('content-type'), /^text\/event-stream/);
  const names = [...rawSse.text.matchAll(/^event: (\S+)$/gm)].map((x) => x[1]);
  assert.deepEqual(names.slice(0, 3), ['message_start', 'content_block_start', 'ping']);
  assert.deepEqual(names.slice(3), types.slice(2));
  assert.equal(text, whole.content[0].text);
  // the helper stream assembles the same message
  const final = await client.messages.stream(params).finalMessage();
  assert.equal(final.content[0].text, whole.content[0].text);
  assert.equal(final.stop_reason, 'max_tokens');
  assert.equal(final.usage.output_tokens, 6);
  assert.equal(final.usage.input_tokens, whole.usage.input_tokens);
});

test('messages: stop sequences fill stop_reason and stop_sequence', async () => {
  const params = { model: 'm', max_tokens: 50, messages: MSGS, stop_sequences: ['###', 'END'], semantic_test_completion: 'alpha beta END gamma' };
  const m = await client.messages.create(params);
  assert.equal(m.content[0].text, 'alpha beta ');
  assert.equal(m.stop_reason, 'stop_sequence');
  assert.equal(m.stop_sequence, 'END');
  const final = await client.messages.stream(params).finalMessage();
  assert.equal(final.stop_reason, 'stop_sequence');
  assert.equal(final.stop_sequence, 'END');
  assert.equal(final.content[0].text, 'alpha beta ');
  const natural = await client.messages.create({ ...params, stop_sequences: [], semantic_test_completion: 'done.' });
  assert.equal(natural.stop_reason, 'end_turn');
  assert.equal(natural.stop_sequence, null);
});

test('tools: tool_use blocks, streamed as input_json_delta, and a round trip', async () => {
  const forced = 'Let me look.\n' + hermesCall('get_weather', { city: 'Paris', when: ['today'] });
  const params = { model: 'm', max_tokens: 200, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [TOOL], semantic_test_completion: forced };
  const m = await client.messages.create(params);
  assert.equal(m.stop_reason, 'tool_use');
  assert.equal(m.content.length, 2);
  assert.equal(m.content[0].type, 'text');
  assert.equal(m.content[0].text, 'Let me look.\n');
  const use = m.content[1];
  assert.equal(use.type, 'tool_use');
  assert.equal(use.name, 'get_weather');
  assert.match(use.id, /^toolu_/);
  assert.deepEqual(use.input, { city: 'Paris', when: ['today'] });

  const events = [];
  const stream = client.messages.stream(params);
  stream.on('streamEvent', (e) => events.push(e));
  const final = await stream.finalMessage();
  const starts = events.filter((e) => e.type === 'content_block_start');
  assert.deepEqual(starts.map((e) => [e.index, e.content_block.type]), [[0, 'text'], [1, 'tool_use']]);
  const jsonDeltas = events.filter((e) => e.type === 'content_block_delta' && e.delta.type === 'input_json_delta');
  assert.ok(jsonDeltas.length >= 1);
  assert.ok(jsonDeltas.every((e) => e.index === 1));
  assert.deepEqual(final.content[1].input, { city: 'Paris', when: ['today'] });
  assert.equal(final.stop_reason, 'tool_use');

  const back = await client.messages.create({
    model: 'm', max_tokens: 3, tools: [TOOL],
    messages: [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: m.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '21 C, sunny' }] },
    ],
  });
  const total = (u) => u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
  assert.ok(total(back.usage) > total(m.usage));
});

test('count_tokens: exactly the tokens generation prefills', async () => {
  const req = { model: 'm', system: 'You are terse.', messages: [{ role: 'user', content: 'Count me, please.' }], tools: [TOOL] };
  const c = await client.messages.countTokens(req);
  const m = await client.messages.create({ ...req, max_tokens: 1 });
  assert.equal(c.input_tokens, m.usage.input_tokens + m.usage.cache_read_input_tokens + m.usage.cache_creation_input_tokens);
  const plain = await client.messages.countTokens({ model: 'm', messages: [{ role: 'user', content: 'Count me, please.' }] });
  assert.ok(plain.input_tokens < c.input_tokens);
});

test('cache: cache_read_input_tokens while a request shares the prefix', async () => {
  const long = 'Pack my box with five dozen liquor jugs. '.repeat(80);
  const params = { model: 'm', max_tokens: 400, temperature: 0, system: long, messages: [{ role: 'user', content: 'Go.' }] };
  const first = await client.messages.create({ ...params, stream: true });
  const it = first[Symbol.asyncIterator]();
  await it.next();
  await it.next();
  const second = await client.messages.create({ ...params, max_tokens: 2 });
  first.controller.abort();
  assert.ok(second.usage.cache_read_input_tokens > 0);
  assert.ok(second.usage.input_tokens >= 0);
});

test('models: the Anthropic shape with anthropic-version', async () => {
  const page = await client.models.list();
  assert.equal(page.data[0].id, 'tiny-qwen3');
  assert.equal(page.data[0].type, 'model');
  await assert.rejects(client.models.retrieve('claude-nope'),
    (e) => e instanceof Anthropic.NotFoundError && e.error?.type === 'error' && e.error.error.type === 'not_found_error');
});

test('errors: the SDK raises its typed errors with Anthropic envelopes', async () => {
  const wrong = anthropic({ apiKey: 'sk-wrong' });
  await assert.rejects(wrong.messages.create({ model: 'm', max_tokens: 1, messages: MSGS }),
    (e) => e instanceof Anthropic.AuthenticationError && e.error.error.type === 'authentication_error' &&
      !!e.headers.get('request-id'));
  await assert.rejects(client.messages.create({ model: 'm', max_tokens: 0, messages: MSGS }),
    (e) => e instanceof Anthropic.BadRequestError && e.error.type === 'error' &&
      e.error.error.type === 'invalid_request_error');
  await assert.rejects(client.messages.create({ model: 'm', max_tokens: 1, messages: [{ role: 'tool', content: 'x' }] }),
    (e) => e instanceof Anthropic.BadRequestError && /role/.test(e.message));
  const id = agent('arl');
  const call = () => client.messages.create({ model: 'm', max_tokens: 1, messages: MSGS, metadata: { user_id: 'u' } }, { headers: { 'X-Session-ID': id } });
  await call();
  await call();
  await assert.rejects(call(), (e) => e instanceof Anthropic.RateLimitError && e.error.error.type === 'rate_limit_error' &&
    Number(e.headers.get('retry-after')) >= 1);
  await assert.rejects(client.post('/v1/no-such-route', { body: {} }),
    (e) => e instanceof Anthropic.NotFoundError);
});
