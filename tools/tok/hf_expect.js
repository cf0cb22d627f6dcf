#!/usr/bin/env node
// hf_expect.js - the reference side of the tokenizer parity tests: encodes
// every corpus line with the official HF `tokenizers` binding and writes
// what Semantic must reproduce, one JSON object per line:
//   {"t": text, "n": ids without special tokens, "s": ids with them,
//    "d": decode(s, skip=false), "k": decode(s, skip=true)}
// ("s" only for the first --special lines, "d"/"k" for the first --decode
// lines: HF is slow, and the ids without special tokens are what chat
// prompts use), then --random seeded random id sequences (byte tokens,
// specials, any id):
//   {"r": ids, "d": decode(r, false), "k": decode(r, true)}
// and, with --pairs, {"a": text, "b": text, "p": pair ids with specials}.
//
// usage: node tools/tok/hf_expect.js --corpus FILE [--limit N] [--special 400]
//          [--decode 600] [--random 300] [--seed 7] [--pairs 50]
//          NAME=TOKENIZER_JSON=OUT ...
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '..', '..', 'node_modules', 'tokenizers'));

function mulberry32(seed) {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

const argv = process.argv.slice(2);
let corpus = null, nRandom = 300, seed = 7, nPairs = 0, limit = Infinity, nSpecial = 400, nDecode = 600;
const jobs = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--corpus') corpus = argv[++i];
  else if (argv[i] === '--random') nRandom = Number(argv[++i]);
  else if (argv[i] === '--seed') seed = Number(argv[++i]);
  else if (argv[i] === '--pairs') nPairs = Number(argv[++i]);
  else if (argv[i] === '--limit') limit = Number(argv[++i]);
  else if (argv[i] === '--special') nSpecial = Number(argv[++i]);
  else if (argv[i] === '--decode') nDecode = Number(argv[++i]);
  else {
    const [name, file, out] = argv[i].split('=');
    if (!out) throw new Error('expected NAME=TOKENIZER_JSON=OUT, got ' + argv[i]);
    jobs.push({ name, file, out });
  }
}
if (!corpus) throw new Error('--corpus FILE is required');
const texts = fs.readFileSync(corpus, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l))
  .slice(0, limit);

function randomIds(rnd, tok) {
  const vs = tok.getVocabSize(true);
  const specials = [];
  for (let id = 0; id < Math.min(vs, 300); id++) specials.push(id); // byte and control tokens live low
  const n = 1 + Math.floor(rnd() * 24);
  const ids = [];
  for (let i = 0; i < n; i++) {
    const r = rnd();
    if (r < 0.35) ids.push(specials[Math.floor(rnd() * specials.length)]);
    else if (r < 0.45) ids.push(vs - 1 - Math.floor(rnd() * 300)); // added tokens live high
    else if (r < 0.47) ids.push(vs + Math.floor(rnd() * 10)); // out of range: skipped
    else ids.push(Math.floor(rnd() * vs));
  }
  return ids;
}

async function run(job) {
  const tok = Tokenizer.fromFile(job.file);
  const lines = [];
  for (let i = 0; i < texts.length; i++) {
    const t = texts[i];
    const o = { t, n: (await tok.encode(t, null, { addSpecialTokens: false })).getIds() };
    if (i < nSpecial) o.s = (await tok.encode(t, null, { addSpecialTokens: true })).getIds();
    if (i < nDecode) {
      const ids = o.s || o.n;
      o.d = await tok.decode(ids, false);
      o.k = await tok.decode(ids, true);
    }
    lines.push(JSON.stringify(o));
  }
  const rnd = mulberry32(seed);
  for (let i = 0; i < nRandom; i++) {
    const r = randomIds(rnd, tok);
    lines.push(JSON.stringify({ r, d: await tok.decode(r, false), k: await tok.decode(r, true) }));
  }
  for (let i = 0; i < nPairs && texts.length > 1; i++) {
    const a = texts[Math.floor(rnd() * texts.length)], b = texts[Math.floor(rnd() * texts.length)];
    lines.push(JSON.stringify({ a, b, p: (await tok.encode(a, b, { addSpecialTokens: true })).getIds() }));
  }
  fs.writeFileSync(job.out, lines.join('\n') + '\n');
}

(async () => {
  for (const j of jobs) await run(j);
})().catch((e) => {
  console.error('hf_expect: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
