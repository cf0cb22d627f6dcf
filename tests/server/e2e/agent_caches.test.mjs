// agent_caches.test.mjs - persistent agent caches over HTTP (issue 6), with
// the official OpenAI SDK against real `semantic serve` processes:
//   - restart: a conversation continued after SIGTERM and a new start
//     reuses its disk cache (cached tokens == the agent's stored tokens,
//     all of them a prefix of the new prompt) and gives the same greedy
//     output as an uninterrupted run and as a cold run;
//   - corruption: a flipped byte, a truncated file and a file of another
//     model's geometry are each quarantined (<cache_dir>/quarantine/),
//     counted, and a miss; a junk file is quarantined at startup; the
//     server keeps serving;
//   - the agents API: list, get, delete, evict_only keeping the file,
//     DELETE /admin/caches.
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  startServer, openai, chat, call, admin, metrics, sample, agentFile, quarantined, tmpdir, killAll, waitFor,
} from './harness.mjs';

after(killAll); // servers of a failed test

const cachedOf = (r) => r.usage.prompt_tokens_details.cached_tokens;

/* After DELETE ?evict_only=true the RAM copy goes as soon as the agent's
 * file is durable (a write may still be in flight): the agent turns warm. */
async function warmSoon(url, agent) {
  return waitFor(async () => {
    const r = await call(url, 'GET', `/v1/agents/${agent}`);
    assert.equal(r.status, 200, `${agent} is still known after evict_only`);
    return r.json.tier === 'warm' && r.json;
  }, 10000, `${agent} to turn warm`);
}

const SEA = [{ role: 'user', content: 'Tell me about the sea, please.' }];
const SEA_REPLY = 'The sea is wide and deep.';
const SEA2 = [...SEA, { role: 'assistant', content: SEA_REPLY }, { role: 'user', content: 'And what about the sky?' }];

test('restart: the conversation continues from the disk cache, same greedy tokens', async () => {
  const dir = tmpdir('restart');
  let s = await startServer({ cacheDir: dir });
  const t1 = await chat(openai(s.url), 'rita', SEA, { forced: SEA_REPLY, max_tokens: 32 });
  assert.equal(cachedOf(t1), 0);
  const file = await agentFile(dir, 'rita');
  assert.equal(await s.stop('SIGTERM'), 0, 'graceful shutdown exits 0');
  assert.match(s.logText(), /agent caches persisted/);
  // a junk file in the namespace: the startup index must quarantine it
  fs.writeFileSync(path.join(path.dirname(file), 'junk.safetensors'), 'this is not a safetensors file');

  s = await startServer({ cacheDir: dir });
  const c = openai(s.url);
  const m0 = await metrics(s.url);
  assert.equal(sample(m0, 'semantic_agent_cache_quarantined_total'), 1);
  assert.ok(quarantined(dir).some((q) => q.startsWith('junk.safetensors')));
  const stored = await call(s.url, 'GET', '/v1/agents/rita');
  assert.equal(stored.status, 200);
  assert.equal(stored.json.tier, 'warm');
  assert.ok(stored.json.tokens > t1.usage.prompt_tokens);
  const r2 = await chat(c, 'rita', SEA2);
  // the reused prefix is everything the agent had stored
  assert.equal(cachedOf(r2), stored.json.tokens);
  assert.ok(r2.usage.prompt_tokens > cachedOf(r2));
  const m1 = await metrics(s.url);
  assert.equal(sample(m1, 'semantic_agent_cache_hits_total', { tier: 'warm' }), 1);
  assert.equal(sample(m1, 'semantic_cache_lookups_total', { tier: 'warm' }), 1);
  assert.ok(sample(m1, 'semantic_agent_cache_read_bytes_total') > 0);

  // the same conversation without a restart, then cold (no cache at all)
  await chat(c, 'uma', SEA, { forced: SEA_REPLY, max_tokens: 32 });
  const u2 = await chat(c, 'uma', SEA2);
  assert.equal(u2.text, r2.text);
  assert.equal(u2.usage.completion_tokens, r2.usage.completion_tokens);
  assert.equal((await admin(s.url, 'DELETE', '/admin/caches')).status, 200);
  const cold = await chat(c, 'carl', SEA2);
  assert.equal(cachedOf(cold), 0);
  assert.equal(cold.text, r2.text);
  assert.equal(await s.stop('SIGTERM'), 0);
});

test('corruption: flipped byte, truncation, other geometry -> quarantined, a miss, still serving', async () => {
  const dir = tmpdir('corrupt');
  // a cache file of model B (another geometry), to copy into A's namespace
  let s = await startServer({ model: 'org/model-b', cacheDir: dir });
  await chat(openai(s.url), 'bee', [{ role: 'user', content: 'Buzz about flowers.' }], { forced: 'Flowers are bright.', max_tokens: 16 });
  const beeFile = await agentFile(dir, 'bee');
  assert.equal(await s.stop(), 0);

  s = await startServer({ model: 'org/model-a', cacheDir: dir });
  const c = openai(s.url);
  const kinds = [
    ['flipped byte', (f) => { const b = fs.readFileSync(f); b[b.length - 3] ^= 0x5a; fs.writeFileSync(f, b); }],
    ['truncated', (f) => fs.truncateSync(f, Math.floor(fs.statSync(f).size / 2))],
    ['other geometry', (f) => fs.copyFileSync(beeFile, f)],
  ];
  for (const [i, [kind, damage]] of kinds.entries()) {
    const agent = `k${i}`;
    const conv = [{ role: 'user', content: `Case ${i}, ${kind}: describe mountain number ${i} in detail.` }];
    const reply = `Mountain number ${i} is tall and cold.`;
    await chat(c, agent, conv, { forced: reply, max_tokens: 32 });
    const f = await agentFile(dir, agent);
    const ev = await call(s.url, 'DELETE', `/v1/agents/${agent}?evict_only=true`);
    assert.equal(ev.status, 200, kind);
    await warmSoon(s.url, agent);
    damage(f);
    const before = await metrics(s.url);
    const next = await chat(c, agent, [...conv, { role: 'assistant', content: reply }, { role: 'user', content: 'More.' }]);
    assert.equal(cachedOf(next), 0, `${kind}: a miss`);
    const after = await metrics(s.url);
    assert.equal(sample(after, 'semantic_agent_cache_quarantined_total'),
      sample(before, 'semantic_agent_cache_quarantined_total') + 1, `${kind}: counted`);
    assert.equal(sample(after, 'semantic_agent_cache_misses_total'),
      sample(before, 'semantic_agent_cache_misses_total') + 1, `${kind}: a miss in the metrics`);
    assert.ok(quarantined(dir).some((q) => q.startsWith(`${agent}.safetensors`)), `${kind}: in quarantine/`);
  }
  assert.match(s.logText(), /cache quarantine agent=k2/);
  assert.equal((await fetch(`${s.url}/health/ready`)).status, 200);
  const ok = await chat(c, 'after', [{ role: 'user', content: 'Still there?' }], { max_tokens: 3 });
  assert.equal(ok.usage.completion_tokens, 3);
  assert.equal(await s.stop(), 0);
});

test('agents API: list, get, delete, evict_only keeps the file, DELETE /admin/caches', async () => {
  const dir = tmpdir('agents');
  const s = await startServer({ cacheDir: dir });
  const c = openai(s.url);
  const t0 = Math.floor(Date.now() / 1000);
  await chat(c, 'ann', [{ role: 'user', content: 'Ann asks about rivers and lakes.' }], { forced: 'Rivers flow into lakes.', max_tokens: 16 });
  await chat(c, 'ben', [{ role: 'user', content: 'Ben asks about deserts and dunes.' }], { forced: 'Deserts are dry.', max_tokens: 16 });
  const annFile = await agentFile(dir, 'ann');
  const benFile = await agentFile(dir, 'ben');

  const list = await call(s.url, 'GET', '/v1/agents');
  assert.equal(list.status, 200);
  assert.equal(list.json.object, 'list');
  assert.equal(list.json.model, 'org/model-a');
  const ann = list.json.data.find((a) => a.id === 'ann');
  assert.ok(ann && list.json.data.find((a) => a.id === 'ben'));
  assert.equal(ann.object, 'agent');
  assert.equal(ann.tier, 'hot');
  assert.equal(ann.model, 'org/model-a');
  assert.equal(ann.anonymous, false);
  assert.ok(ann.tokens > 8 && ann.bytes > 0);
  assert.ok(ann.last_used_at >= t0 - 1 && ann.last_used_at <= Date.now() / 1000 + 1);
  const one = await call(s.url, 'GET', '/v1/agents/ann');
  assert.equal(one.status, 200);
  assert.equal(one.json.tokens, ann.tokens);
  assert.equal((await call(s.url, 'GET', '/v1/agents/nobody')).status, 404);
  assert.equal((await call(s.url, 'GET', '/v1/agents/.hidden')).status, 400);
  assert.equal((await call(s.url, 'DELETE', '/v1/agents/ann?evict_only=maybe')).status, 400);

  // evict_only: the RAM copy goes, the file stays, the agent is warm
  const ev = await call(s.url, 'DELETE', '/v1/agents/ann?evict_only=true');
  assert.equal(ev.status, 200);
  assert.deepEqual(ev.json, { id: 'ann', object: 'agent.deleted', deleted: true, evict_only: true });
  assert.ok(fs.existsSync(annFile));
  const warm = await warmSoon(s.url, 'ann');
  assert.equal(warm.tokens, ann.tokens);
  // a full delete removes the file too
  assert.equal((await call(s.url, 'DELETE', '/v1/agents/ann')).status, 200);
  await waitFor(() => !fs.existsSync(annFile), 10000, 'the file to go (the persistence thread unlinks it)');
  assert.equal((await call(s.url, 'GET', '/v1/agents/ann')).status, 404);
  assert.equal((await call(s.url, 'DELETE', '/v1/agents/ann')).status, 404);
  const back = await chat(c, 'ann', [{ role: 'user', content: 'Ann asks about rivers and lakes.' }], { max_tokens: 2 });
  assert.equal(cachedOf(back), 0);

  // admin: all caches of the current model
  assert.equal((await call(s.url, 'DELETE', '/admin/caches')).status, 401);
  const cleared = await admin(s.url, 'DELETE', '/admin/caches');
  assert.equal(cleared.status, 200);
  assert.ok(cleared.json.dropped >= 2);
  assert.deepEqual((await call(s.url, 'GET', '/v1/agents')).json.data, []);
  await waitFor(() => !fs.existsSync(benFile), 10000, "ben's file to go");
  assert.equal(await s.stop(), 0);
});
