#!/usr/bin/env node
// bench_hf.js - the HF side of tools/tok/bench.sh: times the official
// `tokenizers` binding encoding a text file (no special tokens), best of N:
// as one string, line by line (one awaited encode per line), and as one
// encodeBatch of the lines. Run it with RAYON_NUM_THREADS=1 (bench.sh does)
// so the batch is single-threaded. Prints one JSON object.
//
// usage: node tools/tok/bench_hf.js TOKENIZER_JSON TEXT_FILE [REPEAT]
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '..', '..', 'node_modules', 'tokenizers'));

(async () => {
  const [file, textFile, rep] = process.argv.slice(2);
  const repeat = Number(rep || 3);
  const text = fs.readFileSync(textFile, 'utf8');
  const lines = text.split(/(?<=\n)/); // keep the newline on each line, as the C side does
  const tok = Tokenizer.fromFile(file);
  const now = () => Number(process.hrtime.bigint()) / 1e6;
  let whole = Infinity, byLine = Infinity, batch = Infinity, nWhole = 0, nLines = 0, nBatch = 0;
  for (let r = 0; r < repeat; r++) {
    let t0 = now();
    nWhole = (await tok.encode(text, null, { addSpecialTokens: false })).getIds().length;
    whole = Math.min(whole, now() - t0);
    t0 = now();
    let n = 0;
    for (const l of lines) n += (await tok.encode(l, null, { addSpecialTokens: false })).getIds().length;
    byLine = Math.min(byLine, now() - t0);
    nLines = n;
    t0 = now();
    const encs = await tok.encodeBatch(lines, { addSpecialTokens: false });
    batch = Math.min(batch, now() - t0);
    nBatch = encs.reduce((a, e) => a + e.getIds().length, 0);
  }
  console.log(JSON.stringify({ bytes: Buffer.byteLength(text), whole_ms: +whole.toFixed(2), whole_tokens: nWhole,
    lines_ms: +byLine.toFixed(2), lines_tokens: nLines, batch_ms: +batch.toFixed(2), batch_tokens: nBatch }));
})();
