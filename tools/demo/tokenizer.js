#!/usr/bin/env node
// Train the demo model's tokenizer and tokenize the corpus.
//
// What it is for: step 2 of tools/demo/retrain.sh. It trains a
// SentencePiece-style (Llama-2 layout) BPE tokenizer with the official
// Hugging Face `tokenizers` node binding, writes tokenizer.json, and encodes
// the corpus splits into uint16 token streams for tools/demo/train.py.
//
// How: the node binding can only train with the default BpeTrainer
// (vocabulary 30000), so we train that, then keep the alphabet plus the
// first merges (merge rank = training order) until the vocabulary holds
// VOCAB_SIZE entries with the 3 special tokens and the 256 byte-fallback
// tokens <0x00>..<0xFF> in front, exactly like Llama-2's tokenizer.json:
//   0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then characters, then
//   merged pieces in merge order.
// A prefix of a BPE merge list is itself a valid BPE model.
// Training sees one document per line with "\n" replaced by U+2029 (the
// line reader would split on "\n"); U+2029 never occurs in the corpus
// (corpus.py checks) and is renamed to "\n" in the result. Training
// pre-tokenizes at "\n" runs and at "▁" (Metaspace, split) so that no merge
// crosses a word or line boundary (the trailing "\n" that the trainer's
// file reader keeps is removed by a Split); the final tokenizer has no pre-tokenizer
// (as Llama-2), which gives identical results because no merge can join
// pieces across those boundaries.
//
// Each document is encoded as <s> text </s> (the post-processor adds <s>;
// we append </s>), so the model learns where a passage ends.
//
// Invariants: deterministic for a given corpus (the trainer breaks ties by
// pair ids; checked by the retrain script comparing hashes); every document
// decodes back to its exact text (checked here, the script fails if not).
//
// Usage: node tools/demo/tokenizer.js CORPUS_DIR OUT_DIR [--vocab N]
// Outputs in OUT_DIR: tokenizer.json, train.bin, valid.bin (uint16 LE),
// tokenizer_stats.json. Single-threaded script (the binding may use threads).

'use strict';
const fs = require('fs');
const path = require('path');
const repoRoot = path.resolve(__dirname, '..', '..');
const tk = require(path.join(repoRoot, 'node_modules', 'tokenizers'));

const SPM = '\u2581';
const LINE_SUB = '\u2029';

function readJsonl(file) {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
}

function byteToken(b) {
  return '<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>';
}

function trainRaw(docs, workDir) {
  const lines = path.join(workDir, 'tok_lines.txt');
  fs.writeFileSync(lines, docs.map((d) => d.text.split('\n').join(LINE_SUB)).join('\n') + '\n');
  const tok = new tk.Tokenizer(tk.BPE.empty());
  tok.setNormalizer(tk.sequenceNormalizer([tk.prependNormalizer(SPM), tk.replace(' ', SPM)]));
  tok.setPreTokenizer(tk.sequencePreTokenizer([
    tk.splitPreTokenizer('\n', 'removed'), // the file reader keeps line ends
    tk.splitPreTokenizer(LINE_SUB, 'contiguous'),
    tk.metaspacePreTokenizer(SPM, 'never', true),
  ]));
  tok.train([lines]);
  const rawFile = path.join(workDir, 'tokenizer_raw.json');
  tok.save(rawFile, false);
  return JSON.parse(fs.readFileSync(rawFile, 'utf8'));
}

function splitMerge(m) {
  if (Array.isArray(m)) return m;
  const i = m.indexOf(' ');
  return [m.slice(0, i), m.slice(i + 1)];
}

// Build the final Llama-2-layout tokenizer.json object from the raw training.
function buildTokenizer(raw, vocabSize) {
  const fix = (s) => s.split(LINE_SUB).join('\n');
  const vocab = {};
  let next = 0;
  const add = (s) => {
    if (!(s in vocab)) vocab[s] = next++;
  };
  ['<unk>', '<s>', '</s>'].forEach(add);
  for (let b = 0; b < 256; b++) add(byteToken(b));
  const rawVocab = Object.entries(raw.model.vocab).sort((a, b) => a[1] - b[1]);
  const rawMerges = raw.model.merges.map(splitMerge);
  // Alphabet: the single characters of the raw vocabulary, in raw order.
  for (const [s] of rawVocab) if ([...s].length === 1) add(fix(s));
  const merges = [];
  for (const [a, b] of rawMerges) {
    if (next >= vocabSize) break;
    const fa = fix(a), fb = fix(b);
    if (fa.includes(' ') || fb.includes(' ')) throw new Error('space inside a token');
    if (!(fa in vocab) || !(fb in vocab)) throw new Error('merge of unknown pieces');
    merges.push(fa + ' ' + fb);
    add(fa + fb);
  }
  if (next !== vocabSize) throw new Error('vocabulary too small: ' + next);
  const special = (id, content) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  });
  const seq = (id, typeId) => ({ Sequence: { id, type_id: typeId } });
  const bos = (typeId) => ({ SpecialToken: { id: '<s>', type_id: typeId } });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SPM },
        { type: 'Replace', pattern: { String: ' ' }, content: SPM },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [bos(0), seq('A', 0)],
      pair: [bos(0), seq('A', 0), bos(1), seq('B', 1)],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPM }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

async function encodeSplit(tok, docs, file) {
  const ids = [];
  let chars = 0;
  const batch = 256;
  for (let i = 0; i < docs.length; i += batch) {
    const texts = docs.slice(i, i + batch).map((d) => d.text);
    const encs = await tok.encodeBatch(texts, { addSpecialTokens: true });
    const idLists = encs.map((e) => e.getIds());
    const back = await tok.decodeBatch(idLists, true);
    for (let j = 0; j < texts.length; j++) {
      if (back[j] !== texts[j]) {
        throw new Error('round trip failed for document ' + (i + j) + ': ' + JSON.stringify(back[j].slice(0, 80)));
      }
      if (idLists[j][0] !== 1) throw new Error('post-processor did not add <s>');
      for (const id of idLists[j]) ids.push(id);
      ids.push(2);
      chars += texts[j].length;
    }
  }
  const buf = Buffer.alloc(ids.length * 2);
  ids.forEach((id, k) => buf.writeUInt16LE(id, 2 * k));
  fs.writeFileSync(file, buf);
  const content = ids.length - 2 * docs.length; // without <s> and </s>
  return { documents: docs.length, tokens: ids.length, chars, chars_per_token: chars / content };
}

async function main() {
  const args = process.argv.slice(2);
  let vocabSize = 4096;
  const vi = args.indexOf('--vocab');
  if (vi >= 0) {
    vocabSize = parseInt(args[vi + 1], 10);
    args.splice(vi, 2);
  }
  if (args.length !== 2) {
    console.error('usage: node tools/demo/tokenizer.js CORPUS_DIR OUT_DIR [--vocab N]');
    process.exit(2);
  }
  const [corpusDir, outDir] = args;
  fs.mkdirSync(outDir, { recursive: true });
  const train = readJsonl(path.join(corpusDir, 'train.jsonl'));
  const valid = readJsonl(path.join(corpusDir, 'valid.jsonl'));
  const t0 = Date.now();
  const raw = trainRaw(train, outDir);
  const json = buildTokenizer(raw, vocabSize);
  const tokFile = path.join(outDir, 'tokenizer.json');
  fs.writeFileSync(tokFile, JSON.stringify(json, null, 2) + '\n');
  const tok = tk.Tokenizer.fromFile(tokFile);
  if (tok.getVocabSize(true) !== vocabSize) throw new Error('reloaded vocabulary size differs');
  const stats = {
    vocab_size: vocabSize,
    merges: json.model.merges.length,
    train: await encodeSplit(tok, train, path.join(outDir, 'train.bin')),
    valid: await encodeSplit(tok, valid, path.join(outDir, 'valid.bin')),
    seconds: (Date.now() - t0) / 1000,
  };
  fs.writeFileSync(path.join(outDir, 'tokenizer_stats.json'), JSON.stringify(stats, null, 1) + '\n');
  console.log('tokenizer: vocab %d, %d merges; train %d tokens (%s chars/token), valid %d tokens (%s chars/token), %ss',
    vocabSize, stats.merges, stats.train.tokens, stats.train.chars_per_token.toFixed(3),
    stats.valid.tokens, stats.valid.chars_per_token.toFixed(3), stats.seconds.toFixed(1));
}

main().catch((e) => {
  console.error('tokenizer: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
