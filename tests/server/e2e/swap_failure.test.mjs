// swap_failure.test.mjs - failed swaps and memory over HTTP (issue 7):
//   - a swap to a model with a corrupt safetensors file rolls back: 500
//     with rolled_back: true, the old model serves again and the agent
//     caches are intact (the agent continues from its cache);
//   - the same through the test hook (--test-fail-load-id);
//   - a swap whose rollback fails too ends degraded: /health/ready 503,
//     /admin/models/current state "degraded", inference 503 with an
//     explanation, /v1/models empty; a good swap afterwards recovers;
//   - memory: after a large model is unloaded (the swap's
//     rss_after_unload), the server's RSS is back within 8 MB or 2% of
//     its RSS before the first load; /proc/<pid>/status is read along the
//     way and the figures printed.
//
// The models live in a private models dir: org/a-copy (a copy of A whose
// weights file is later replaced, by rename, with a broken one: the old
// inode stays mapped while A serves, and the rollback's reload fails),
// org/broken (A with a truncated safetensors file), org/hooked (made to
// fail by the test hook), and links to B and the big model.
import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  MODELS, QUICK, startServer, openai, chat, call, swap, current, metrics, sample, agentFile, tmpdir, killAll,
  rssBytes,
} from './harness.mjs';

after(killAll);

const cachedOf = (r) => r.usage.prompt_tokens_details.cached_tokens;
const MiB = (b) => (b / 1048576).toFixed(1);

function copyDir(from, to) {
  fs.mkdirSync(to, { recursive: true });
  for (const f of fs.readdirSync(from)) fs.copyFileSync(path.join(from, f), path.join(to, f));
}

/** A private models dir for this file. */
function models() {
  const dir = tmpdir('models');
  fs.mkdirSync(path.join(dir, 'org'));
  copyDir(path.join(MODELS, 'org/model-a'), path.join(dir, 'org/a-copy'));
  copyDir(path.join(MODELS, 'org/model-a'), path.join(dir, 'org/broken'));
  const st = path.join(dir, 'org/broken/model.safetensors');
  fs.truncateSync(st, Math.floor(fs.statSync(st).size / 3));
  fs.symlinkSync(path.join(MODELS, 'org/model-b'), path.join(dir, 'org/hooked'));
  fs.symlinkSync(path.join(MODELS, 'org/model-b'), path.join(dir, 'org/model-b'));
  fs.symlinkSync(path.join(MODELS, 'org/model-big'), path.join(dir, 'org/model-big'));
  return dir;
}

const KEEP1 = [{ role: 'user', content: 'Keep this conversation: what is a lighthouse for?' }];
const KEEP_REPLY = 'It guides ships at night.';
const KEEP2 = [...KEEP1, { role: 'assistant', content: KEEP_REPLY }, { role: 'user', content: 'Who keeps it?' }];

test('rollback, degraded, recovery, and RSS back to the baseline', async () => {
  const dir = models();
  const cacheDir = tmpdir('failcache');
  const s = await startServer({ modelsDir: dir, model: 'org/a-copy', cacheDir, extra: ['--test-fail-load-id', 'org/hooked'] });
  const c = openai(s.url);
  const rssLoaded = rssBytes(s.pid);
  await chat(c, 'keep', KEEP1, { forced: KEEP_REPLY, max_tokens: 32 });
  await agentFile(cacheDir, 'keep');
  const stored = (await call(s.url, 'GET', '/v1/agents/keep')).json.tokens;

  // 1. a corrupt safetensors file: rolled back, old model serving, caches intact
  const bad = await swap(s.url, 'org/broken');
  assert.equal(bad.status, 500, bad.text);
  assert.equal(bad.json.status, 'rolled_back');
  assert.equal(bad.json.rolled_back, true);
  assert.equal(bad.json.degraded, false);
  assert.equal(bad.json.error.code, 'swap_failed_rolled_back');
  assert.match(bad.json.message, /broken/);
  assert.deepEqual(bad.json.steps.slice(0, 4).map((x) => x.name), ['drain', 'evict', 'shutdown', 'unload']);
  let cur = await current(s.url);
  assert.equal(cur.state, 'serving');
  assert.equal(cur.model_id, 'org/a-copy');
  assert.equal((await fetch(`${s.url}/health/ready`)).status, 200);
  const k2 = await chat(c, 'keep', KEEP2);
  assert.equal(cachedOf(k2), stored, 'the agent continues from its cache after the rollback');

  // 2. the test hook: the same path
  const hooked = await swap(s.url, 'org/hooked');
  assert.equal(hooked.status, 500, hooked.text);
  assert.equal(hooked.json.rolled_back, true);
  assert.match(hooked.json.message, /test hook/);
  assert.equal((await current(s.url)).model_id, 'org/a-copy');

  // 3. the old model's weights go bad on disk (replaced by rename: the
  //    serving mapping keeps the old inode), so the rollback fails too
  const st = path.join(dir, 'org/a-copy/model.safetensors');
  fs.copyFileSync(path.join(dir, 'org/broken/model.safetensors'), `${st}.tmp`);
  fs.renameSync(`${st}.tmp`, st);
  const deg = await swap(s.url, 'org/broken');
  assert.equal(deg.status, 503, deg.text);
  assert.equal(deg.json.status, 'degraded');
  assert.equal(deg.json.degraded, true);
  assert.equal(deg.json.rolled_back, false);
  const ready = await fetch(`${s.url}/health/ready`);
  assert.equal(ready.status, 503);
  assert.equal((await ready.json()).reason, 'degraded');
  cur = await current(s.url);
  assert.equal(cur.state, 'degraded');
  assert.equal(cur.model_id, null);
  const rssDegraded = rssBytes(s.pid); /* nothing is loaded now: read from outside the process */
  const inf = await call(s.url, 'POST', '/v1/chat/completions', { model: 'default', messages: KEEP1, max_tokens: 2 });
  assert.equal(inf.status, 503);
  assert.equal(inf.json.error.code, 'model_degraded');
  assert.match(inf.json.error.message, /swap/);
  const anth = await call(s.url, 'POST', '/v1/messages', { model: 'default', messages: KEEP1, max_tokens: 2 });
  assert.equal(anth.status, 503);
  assert.equal(anth.json.type, 'error');
  assert.deepEqual((await call(s.url, 'GET', '/v1/models')).json.data, []);
  let m = await metrics(s.url);
  assert.equal(sample(m, 'semantic_state', { state: 'degraded' }), 1);
  assert.equal(sample(m, 'semantic_swaps_total', { result: 'degraded' }), 1);
  assert.equal(sample(m, 'semantic_swaps_total', { result: 'rolled_back' }), 2);

  // 4. a good swap recovers
  const fix = await swap(s.url, 'org/model-b');
  assert.equal(fix.status, 200, fix.text);
  assert.equal(fix.json.old_model_id, '');
  assert.equal((await fetch(`${s.url}/health/ready`)).status, 200);
  assert.equal((await current(s.url)).state, 'serving');
  const onB = await chat(c, 'keep', KEEP2, { max_tokens: 3 });
  assert.equal(onB.model, 'org/model-b');

  // 5. memory: load the big model, use it, unload it
  const baseline = (await current(s.url)).rss_baseline_bytes;
  const toBig = await swap(s.url, 'org/model-big');
  assert.equal(toBig.status, 200, toBig.text);
  await chat(c, null, [{ role: 'user', content: 'Touch every weight.' }], { max_tokens: 2 });
  const rssBig = rssBytes(s.pid);
  const back = await swap(s.url, 'org/model-b');
  assert.equal(back.status, 200, back.text);
  const afterUnload = back.json.rss_after_unload_bytes;
  const rssB = rssBytes(s.pid);
  const slack = Math.max(8 * 1048576, 0.02 * baseline);
  console.log(`rss (VmRSS of pid ${s.pid}): before the first load ${MiB(baseline)} MiB, ` +
    `first model loaded ${MiB(rssLoaded)} MiB, degraded (no model) ${MiB(rssDegraded)} MiB, ` +
    `big model loaded ${MiB(rssBig)} MiB, ` +
    `right after unloading it ${MiB(afterUnload)} MiB (+${MiB(afterUnload - baseline)}), ` +
    `B loaded again ${MiB(rssB)} MiB; slack ${MiB(slack)} MiB${QUICK ? ' (ASan: not asserted)' : ''}`);
  assert.ok(rssBig > baseline + 60 * 1048576, 'the big model was resident');
  if (!QUICK) {
    assert.ok(afterUnload <= baseline + slack, `RSS after unload ${afterUnload} > baseline ${baseline} + ${slack}`);
    assert.ok(rssDegraded <= baseline + slack, `RSS with no model ${rssDegraded} > baseline ${baseline} + ${slack}`);
  }
  m = await metrics(s.url);
  assert.equal(sample(m, 'semantic_swaps_total', { result: 'ok' }), 3);
  assert.equal(await s.stop(), 0);
});
